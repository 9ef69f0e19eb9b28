"""The ``physics:`` profile section: residual models referenced by import path.

Each entry names a model (``package.module:function``), which signals feed its array
arguments (``inputs``), under which names its results become derived signals (``outputs``)
and its numeric parameters (``params``). The function is imported and its call checked
against the inputs and parameters when the profile is read, so a typo fails at start-up
with the file and field named. :func:`run_models` applies a type's models to a frame.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from twinflow.core.config import Part, Schema, Section, Text

#: ``package.module:function``.
IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*\Z")

#: A residual model: arrays by argument name and numbers as keywords in, arrays by name out.
Model = Callable[..., Mapping[str, np.ndarray]]

MODEL = Schema(
    "physics.<name>",
    "A residual model: a plain function of a frame's signals (numpy arrays) that returns "
    "derived signals.",
    (
        Text("model", "Import path `package.module:function`.", "", required=True),
        Part("inputs", "Argument -> signal of this type.", kind="mapping"),
        Part("outputs", "Result key -> derived signal name (results not listed are dropped).",
             kind="mapping"),
        Part("params", "Keyword -> number, passed to the function.", kind="mapping"),
    ),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ResidualModel:
    """One configured model of a type."""

    name: str
    function: Model
    inputs: Mapping[str, str]
    outputs: Mapping[str, str]
    params: Mapping[str, float]

    def apply(self, signals: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The derived signals of one frame; none when an input signal is absent."""
        if not all(s in signals for s in self.inputs.values()):
            return {}
        args = {arg: signals[s] for arg, s in self.inputs.items()}
        result = self.function(**args, **self.params)
        return {name: result[key] for key, name in self.outputs.items() if key in result}


def read_names(s: Section, key: str) -> dict[str, str]:
    """A mapping of names to non-empty names (``inputs``, ``outputs``)."""
    part = s.section(key)
    out = {}
    for k, v in part.data.items():
        if not isinstance(v, str) or not v:
            raise part.fail(str(k), "a signal name")
        out[str(k)] = v
    return out


def import_model(s: Section, path: str) -> Model:
    """The function at ``path`` (``package.module:function``); errors name ``model``."""
    if not IMPORT_PATH.match(path):
        raise s.fail("model", "an import path 'package.module:function'")
    module, _, name = path.partition(":")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise s.error("model", f" = {path!r}: cannot import it ({exc})") from None
    if not callable(function):
        raise s.error("model", f" = {path!r} is not a function")
    model: Model = function
    return model


def read_physics(s: Section) -> tuple[ResidualModel, ...]:
    """``physics:``: model name -> model, applied in file order."""
    out = []
    for name, raw in s.data.items():
        e = Section(raw, s.path(str(name)), s.file)
        function, inputs, outputs, params = read_model(e, MODEL)
        out.append(ResidualModel(str(name), function, inputs, outputs, params))
    return tuple(out)


def read_model(
    e: Section, schema: Schema
) -> tuple[Model, dict[str, str], dict[str, str], dict[str, float]]:
    """One model entry: its function, inputs, outputs and params, the call checked."""
    e.check_keys(schema)
    function = import_model(e, e.get(schema["model"]))
    inputs, outputs = read_names(e, "inputs"), read_names(e, "outputs")
    if not outputs:
        raise e.error("outputs", " is required: result key -> derived name")
    p = e.section("params")
    params = {}
    for k, v in p.data.items():
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise p.fail(str(k), "a number")
        params[str(k)] = float(v)
    try:
        inspect.signature(function).bind(**dict.fromkeys(inputs), **params)
    except TypeError as exc:
        raise e.error("params", f": inputs and params do not fit the model: {exc}") from None
    return function, inputs, outputs, params


__all__ = [
    "MODEL",
    "Model",
    "ResidualModel",
    "import_model",
    "read_model",
    "read_names",
    "read_physics",
]

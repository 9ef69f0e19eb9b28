"""Physics residuals of a whole batch of frames: each element-wise model called once.

:func:`~twinflow.operators.residuals.add_residuals` calls a type's residual models on every
frame, and a bundled model is a dozen numpy operations: on a frame of ten readings that is
their fixed cost, paid per frame (about as much as the frame's window statistics). A model
that is *element-wise* (each output reading depends only on the same reading of its inputs)
gives the same numbers on the readings of many frames joined end to end, so
:func:`add_residuals_batch` joins the inputs of all frames of a batch that a model applies to,
calls it once and hands each frame its slice.

Only the bundled models are known to be element-wise (:data:`ELEMENTWISE`); a frame whose type
has another model, lacks a model's input or carries inputs that are not one-dimensional float64
arrays of its length takes :func:`add_residuals` as before. Either way each frame comes out as
``add_residuals`` makes it: the same signals in the same order with the same values (numpy's
element-wise kernels do not depend on the array's length), the same object when nothing is
added.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from twinflow.core.records import Frame, TelemetryFrame
from twinflow.models.curves import centrifugal_efficiency_residual, power_curve_residual
from twinflow.operators.physics import ResidualModel
from twinflow.operators.residuals import add_residuals
from twinflow.operators.rulebook import section_of
from twinflow.operators.twin_type import TwinType

#: Residual models whose outputs are element-wise in their inputs.
ELEMENTWISE: frozenset[Callable[..., object]] = frozenset(
    {power_curve_residual, centrifugal_efficiency_residual}
)

#: A frame's type by twin id and type name (``TypeOf`` of the flow's steps).
KindOf = Callable[[str, str], TwinType | None]


def add_residuals_batch(frames: Sequence[Frame], kind_of: KindOf) -> list[Frame]:
    """Each frame with its type's residual signals added, as ``add_residuals`` would (frames
    that are not telemetry, or of an unknown type, pass unchanged)."""
    out = list(frames)
    #: per model (by identity): the model, and the frames it joins (index, its place among
    #: the frame's models)
    groups: dict[int, tuple[ResidualModel, list[tuple[int, int]]]] = {}
    parts: dict[int, list[dict[str, np.ndarray]]] = {}
    for i, frame in enumerate(frames):
        if not isinstance(frame, TelemetryFrame):
            continue
        kind = kind_of(frame.twin_id, frame.twin_type)
        if kind is None:
            continue
        models: tuple[ResidualModel, ...] = section_of(kind, "physics", ())
        if not models:
            continue
        if not all(_joinable(m, frame) for m in models):
            out[i] = add_residuals(frame, kind)
            continue
        parts[i] = [{} for _ in models]
        for place, model in enumerate(models):
            groups.setdefault(id(model), (model, []))[1].append((i, place))
    for model, members in groups.values():
        _apply(model, frames, members, parts)
    for i, added in parts.items():
        merged: dict[str, np.ndarray] = {}
        for one in added:
            merged.update(one)
        if merged:
            frame = out[i]
            assert isinstance(frame, TelemetryFrame)
            out[i] = replace(frame, signals={**frame.signals, **merged})
    return out


def _joinable(model: ResidualModel, frame: TelemetryFrame) -> bool:
    """Whether the model is element-wise and the frame has each of its inputs as a 1-D
    float64 array of one reading per timestamp."""
    if model.function not in ELEMENTWISE:
        return False
    n = len(frame.times)
    for name in model.inputs.values():
        arr = frame.signals.get(name)
        if not (isinstance(arr, np.ndarray) and arr.dtype == np.float64 and arr.shape == (n,)):
            return False
    return True


def _apply(
    model: ResidualModel,
    frames: Sequence[Frame],
    members: list[tuple[int, int]],
    parts: dict[int, list[dict[str, np.ndarray]]],
) -> None:
    """One call of ``model`` on the joined inputs of its frames; each frame's slice of every
    output goes to its place in ``parts``."""
    joined = [f for f in (frames[i] for i, _ in members) if isinstance(f, TelemetryFrame)]
    signals = [f.signals for f in joined]
    args = {arg: np.concatenate([s[name] for s in signals]) for arg, name in model.inputs.items()}
    result = model.function(**args, **model.params)
    outputs = [(name, result[key]) for key, name in model.outputs.items() if key in result]
    start = 0
    for (i, place), frame in zip(members, joined, strict=True):
        end = start + len(frame.times)
        parts[i][place] = {name: values[start:end] for name, values in outputs}
        start = end


__all__ = ["ELEMENTWISE", "add_residuals_batch"]

"""Physics residuals: how far a machine is from what its physics model says it should do.

:func:`add_residuals` appends the derived signals of the type's ``physics:`` models
(:mod:`twinflow.operators.physics`) to a :class:`TelemetryFrame`, vectorised over the whole
frame (it runs on every frame, so a model should be a handful of numpy operations). A model
whose input signals the frame lacks adds nothing. The bundled models are in
:mod:`twinflow.models.curves`; each type's constants are in its profile.

Residual signals are derived, not reported: they are not in the catalogue and sensor-fault
rules never judge them (a ``NaN`` here is not a dropout).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from twinflow.core.records import TelemetryFrame
from twinflow.operators.catalog import CATALOG
from twinflow.operators.physics import ResidualModel
from twinflow.operators.rulebook import section_of
from twinflow.operators.twin_type import TwinType


def add_residuals(frame: TelemetryFrame, kind: TwinType | None = None) -> TelemetryFrame:
    """Return ``frame`` with its type's residual signals added (``kind`` ``None``: the
    bundled type of ``frame.twin_type``).

    Frames of a type without models, or lacking every model's inputs, come back unchanged
    (the same object).
    """
    kind = kind if kind is not None else CATALOG.get(frame.twin_type)
    if kind is None:
        return frame
    models: tuple[ResidualModel, ...] = section_of(kind, "physics", ())
    added: dict[str, np.ndarray] = {}
    for model in models:
        added.update(model.apply(frame.signals))
    if not added:
        return frame
    return replace(frame, signals={**frame.signals, **added})

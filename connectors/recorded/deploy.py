"""``protocol: replay``: twins whose telemetry comes only from recorded files.

Such a twin has no binding section, no service and no actuator: ``twinflow replay`` reads its
data from CSV or Parquet files (:mod:`twinflow.connectors.recorded`), and ``twinflow run``
has nothing to read for it.
"""

from __future__ import annotations

from twinflow.connectors.spec import ConnectorSpec


class RecordedSpec(ConnectorSpec):
    """Recorded data: no binding, no service, no source of its own, no actuator."""

    name = "replay"
    doc = "Recorded data only: telemetry comes from `twinflow replay` (no binding, no commands)."


SPEC = RecordedSpec()

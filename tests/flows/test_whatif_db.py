"""What-if from PostgreSQL: the same twin's telemetry stored by the sink's tables gives the
same state and the same prediction as the run's output folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.flows.test_whatif import CONFIG, INDEX, TWIN
from tests.services.postgres import Postgres
from twinflow.connectors.postgres import migrate
from twinflow.connectors.postgres.connection import connect
from twinflow.connectors.simulator import Plant
from twinflow.core.errors import ConfigError
from twinflow.core.records import TelemetryFrame
from twinflow.core.times import utc
from twinflow.flows.outputs import telemetry_columns
from twinflow.flows.whatif import read_whatif, what_if
from twinflow.flows.whatif_state import state_from_db, state_from_outputs
from twinflow.operators.catalog import CATALOG

SCENARIOS = {
    "twin": TWIN,
    "horizon": "30m",
    "fault": {"kind": "overheating", "severity": 0.3, "failure_in": "1h"},
    "scenarios": [
        {"name": "derate", "steps": [{"command": "derate", "params": {"fraction": 0.6}}]}
    ],
}


def history(minutes: int) -> list[TelemetryFrame]:
    part = Plant(CONFIG).partition(INDEX, CONFIG.n_twins)
    frames: list[TelemetryFrame] = []
    while part.chunk < minutes:
        frames += [i for i in part.next_chunk() if isinstance(i, TelemetryFrame)]
    return frames


@pytest.mark.services
@pytest.mark.timeout(180)
def test_a_whatif_from_postgresql_matches_the_one_from_files(tmp_path: Path) -> None:
    frames = history(90)
    folder = tmp_path / "out" / "telemetry" / "twin_type=motor"
    folder.mkdir(parents=True)
    pl.concat([pl.DataFrame(telemetry_columns(f)) for f in frames]).write_parquet(
        folder / "part-0-0.parquet"
    )
    with Postgres() as pg:
        url = pg.create_database("whatif")
        migrate(url, use_timescaledb=False)
        with connect(url) as conn:
            with conn.cursor().copy(
                "COPY twinflow.telemetry (twin_id, signal, time, value) FROM STDIN"
            ) as copy:
                for f in frames:
                    for signal, values in f.signals.items():
                        for t, v in zip(f.times, values, strict=True):
                            if np.isfinite(v):
                                copy.write_row((TWIN, signal, utc(float(t)), float(v)))
            conn.execute(
                "INSERT INTO twinflow.twin_state (twin_id, twin_type, time, status, signals) "
                "VALUES (%s, 'motor', %s, 'synchronized', '{}')",
                (TWIN, utc(float(frames[-1].times[-1]))),
            )
        from_db = state_from_db(url, TWIN, dict(CATALOG), history_s=3600.0)
        whatif = read_whatif(SCENARIOS, Path("s.yaml"))
        by_db = what_if(url, whatif, history_s=3600.0)
        with pytest.raises(ConfigError, match="twin 'nobody' has no state"):
            state_from_db(url, "nobody", dict(CATALOG))
    from_files = state_from_outputs(tmp_path / "out", TWIN, dict(CATALOG), history_s=3600.0)
    assert from_db.time == from_files.time
    assert from_db.last == pytest.approx(from_files.last)
    assert sum(f.readings for f in from_db.history) == sum(f.readings for f in from_files.history)
    by_files = what_if(tmp_path / "out", whatif, history_s=3600.0)
    for db, files in zip(by_db.outcomes, by_files.outcomes, strict=True):
        assert db.signals == files.signals
        assert db.alerts == files.alerts
    base, derate = by_db.outcomes
    t0 = by_db.time
    assert derate.mean("winding_temp", 900, 1800, t0) < base.mean("winding_temp", 900, 1800, t0)  # type: ignore[operator]

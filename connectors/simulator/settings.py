"""What ``twinflow simulate`` simulates: the ``simulator:`` section of a deployment file.

The protocol sections take their defaults from it (an OPC UA twin's endpoint is the simulated
server's unless set), so it sits below the connectors rather than in the flows.
"""

from __future__ import annotations

from dataclasses import dataclass

from twinflow.core.config import Duration, Number, Schema, Section, Text, Whole, fields_of, setting


@dataclass(frozen=True)
class SimulatorSettings:
    """What ``twinflow simulate`` simulates: the plant's size, seed and pace."""

    twins: int = setting(
        Whole("twins", "Twins in the simulated plant (types round-robin).", 6, 1, 100_000)
    )
    seed: int = setting(Whole("seed", "Seed of the plant's randomness (faults, noise).", 7))
    speed: float = setting(
        Number("speed", "Simulated seconds per wall-clock second (1 = real time).", 1.0, 0.001)
    )
    duration_s: float = setting(
        Duration(
            "duration_s",
            "Simulated time the plant runs for; injected faults develop within it.",
            6 * 3600.0,
            shown="`6h`",
        )
    )
    opcua_endpoint: str = setting(
        Text(
            "opcua_endpoint",
            "Endpoint of the simulated OPC UA server (OPC UA twins' default endpoint).",
            "opc.tcp://127.0.0.1:4840/twinflow/",
        )
    )
    modbus_host: str = setting(
        Text("modbus_host", "Host the simulated Modbus server listens on.", "127.0.0.1")
    )
    modbus_port: int = setting(
        Whole("modbus_port", "Port of the simulated Modbus server.", 5020, 1, 65535)
    )


def _schema() -> Schema:
    # The file says ``duration``; the settings object keeps seconds in ``duration_s``.
    fields = tuple(
        Duration("duration", f.doc, f.default, shown=f.shown) if f.key == "duration_s" else f
        for f in fields_of(SimulatorSettings)
    )
    return Schema("simulator", "What `twinflow simulate` simulates.", fields)


SIMULATOR = _schema()


def simulator_settings(s: Section) -> SimulatorSettings:
    """The ``simulator:`` section, checked; every field has a default."""
    s.check_keys(SIMULATOR)
    values = {f.key: s.get(f) for f in SIMULATOR.fields}
    values["duration_s"] = values.pop("duration")
    return SimulatorSettings(**values)


__all__ = ["SIMULATOR", "SimulatorSettings", "simulator_settings"]

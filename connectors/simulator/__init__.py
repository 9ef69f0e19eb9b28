"""The built-in simulated plant: wind turbines, pumps and motors with injected faults.

Deterministic per seed and much faster than real time. :class:`Plant` holds the twins, the
fault ground truth and the command inbox; :class:`SimulatedPlantSource` runs it as a Bytewax
input and :class:`SimulatorCommandSink` closes the loop by delivering the flow's commands.

>>> plant = Plant(PlantConfig(n_twins=6, duration_s=3600, seed=7))
>>> source, sink = SimulatedPlantSource(plant, partitions=2), SimulatorCommandSink(plant)
"""

from twinflow.connectors.simulator.config import PlantConfig
from twinflow.connectors.simulator.plant import Plant
from twinflow.connectors.simulator.source import SimulatedPlantSource, SimulatorCommandSink

__all__ = ["Plant", "PlantConfig", "SimulatedPlantSource", "SimulatorCommandSink"]

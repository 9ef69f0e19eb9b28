"""How fast the simulator generates data on one core.

Run ``python -m twinflow.connectors.simulator.bench``.

Prints readings per second (telemetry values plus waveform samples) and the speed-up over
real time; it asserts nothing (figures depend on the machine).
"""

from __future__ import annotations

import argparse
import time

from twinflow.connectors.simulator.config import PlantConfig
from twinflow.connectors.simulator.plant import Plant


def measure(n_twins: int, duration_s: float, seed: int = 7) -> dict[str, float]:
    """Generate a whole run in one partition and return the figures."""
    plant = Plant(PlantConfig(n_twins=n_twins, duration_s=duration_s, seed=seed))
    part = plant.partition(0, 1)
    part.next_chunk()  # warm-up: caches, first allocations
    began = time.perf_counter()
    while not part.done:
        part.next_chunk()
    elapsed = time.perf_counter() - began
    stats = part.stats
    simulated = duration_s - plant.config.chunk_s
    return {
        "readings": float(stats["readings"]),
        "seconds": elapsed,
        "readings_per_s": stats["readings"] / elapsed,
        "speedup": simulated / elapsed,
        "items": float(stats["frames"] + stats["raw"] + stats["waveforms"] + stats["bad"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--twins", type=int, default=50)
    parser.add_argument("--hours", type=float, default=1.0)
    args = parser.parse_args()
    r = measure(args.twins, args.hours * 3600.0)
    print(
        f"{args.twins} twins, {args.hours:g} h simulated in {r['seconds']:.2f} s: "
        f"{r['readings_per_s'] / 1e6:.2f} M readings/s, {r['items'] / r['seconds']:.0f} items/s, "
        f"{r['speedup']:.0f}x real time"
    )


if __name__ == "__main__":
    main()

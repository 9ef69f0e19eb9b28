"""The window statistics computed the plain numpy way: the oracle the feature tests compare to."""

from __future__ import annotations

import numpy as np


def numpy_stats(times: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """mean, std, min, max, rms, peak, slope (per hour) and missing fraction of one signal."""
    ok = np.isfinite(values)
    t, x = times[ok], values[ok]
    out = {"missing": 1.0 - ok.mean() if values.size else 1.0}
    if x.size:
        out.update(
            mean=x.mean(),
            std=x.std(),
            min=x.min(),
            max=x.max(),
            rms=np.sqrt(np.mean(x * x)),
            peak=np.abs(x).max(),
        )
        if np.ptp(t) > 0:
            out["slope"] = np.polyfit(t - t[0], x, 1)[0] * 3600.0
    return out

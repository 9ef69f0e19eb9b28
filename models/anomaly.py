"""What "normal" looks like for one twin: a window anomaly detector and reference curves.

:class:`WindowAnomalyDetector` scores a window's features by their largest standardised
deviation from what the twin showed while healthy. It is built on River's online
``preprocessing.StandardScaler`` (Welford mean/variance per feature) and reads its state to
score. Why not ``HalfSpaceTrees``/``LODA``: with ~50 features and only ~24 warm-up windows,
(1) random half-space splits dilute a fault that moves two or three features (a hot
bearing, a defect tone) among dozens of quiet ones, (2) HST scores nothing until a whole reference
window of observations has passed, and its [0, 1] score does not suit a multiplicative
margin, and (3) HST with 5 trees of height 4 already pickles to ~10 KB per twin (46 KB with
10 trees of height 6), against ~3 KB here. A max-|z| score also says *which* feature
deviates, which :meth:`WindowAnomalyDetector.explain` returns.

:class:`ReferenceCurve` learns a healthy relation ``signal ≈ f(driver)`` (e.g. a
temperature against load) as a binned curve, so a residual can be judged at any operating
point the twin has visited.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from river import preprocessing


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


class WindowAnomalyDetector:
    """Max standardised deviation of window features, with a calibrated threshold.

    The first ``warmup`` windows are all learned; the scores of the second half of them
    (scored before being learned) calibrate ``threshold = quantile(scores) * margin``. After
    warm-up a window is learned only if its score is below ``learn_below * threshold``, so a
    developing fault is not absorbed (a window just under the threshold is not learned
    either). ``features=None`` uses every finite feature seen during warm-up (at most
    ``max_features``); NaN/missing features are skipped. The standard deviation of a
    feature is floored at ``min_std + rel_std * |mean|`` so a constant feature (e.g. a
    ``missing`` fraction of 0) does not turn a tiny change into an infinite score. The
    model has no randomness; ``seed`` is kept for the River-like surface.

    >>> det = WindowAnomalyDetector(warmup=8)
    >>> for i in range(8):
    ...     det.learn_one({"t.mean": 80.0 + (i % 3), "t.std": 0.5})
    >>> det.warm, det.score_one({"t.mean": 81.0, "t.std": 0.5}) < det.threshold
    (True, True)
    >>> det.score_one({"t.mean": 95.0, "t.std": 0.5}) > det.threshold
    True
    >>> det.explain({"t.mean": 95.0, "t.std": 0.5}, top=1)
    {'t.mean': 12.49}
    """

    def __init__(
        self,
        features: tuple[str, ...] | None = None,
        warmup: int = 24,
        quantile: float = 0.995,
        margin: float = 1.5,
        seed: int = 0,
        learn_below: float = 0.9,
        min_std: float = 0.01,
        rel_std: float = 0.01,
        max_features: int = 128,
    ) -> None:
        if warmup < 2:
            raise ValueError(f"WindowAnomalyDetector warmup must be >= 2, got {warmup!r}")
        if not 0.0 < quantile <= 1.0 or margin <= 0.0:
            raise ValueError(
                f"WindowAnomalyDetector needs 0 < quantile <= 1 and margin > 0, got "
                f"quantile={quantile!r}, margin={margin!r}"
            )
        self.features = tuple(features) if features is not None else None
        self.warmup = warmup
        self.quantile = quantile
        self.margin = margin
        self.seed = seed
        self.learn_below = learn_below
        self.min_std = min_std
        self.rel_std = rel_std
        self.max_features = max_features
        self.scaler = preprocessing.StandardScaler()
        self.threshold: float | None = None
        self.n_seen = 0
        self.n_learned = 0
        self._calibration: list[float] = []

    @property
    def warm(self) -> bool:
        """True once the threshold is calibrated."""
        return self.threshold is not None

    def _clean(self, x: Mapping[str, float]) -> dict[str, float]:
        """The usable, finite features of ``x``."""
        if self.features is not None:
            return {k: float(x[k]) for k in self.features if k in x and _finite(x[k])}
        known = self.scaler.counts
        room = 0 if self.warm else self.max_features - len(known)
        out: dict[str, float] = {}
        for k, v in x.items():
            if not _finite(v):
                continue
            if k in known:
                out[k] = float(v)
            elif room > 0:
                out[k] = float(v)
                room -= 1
        return out

    def _z(self, x: dict[str, float]) -> dict[str, float]:
        counts, means, variances = self.scaler.counts, self.scaler.means, self.scaler.vars
        z: dict[str, float] = {}
        for k, v in x.items():
            if counts.get(k, 0) < 2:
                continue
            m = means[k]
            floor = self.min_std + self.rel_std * abs(m)
            z[k] = (v - m) / math.sqrt(variances[k] + floor * floor)
        return z

    def score_one(self, x: Mapping[str, float]) -> float:
        """Largest |z| over the known features (0.0 before anything is learned)."""
        z = self._z(self._clean(x))
        return max((abs(v) for v in z.values()), default=0.0)

    def explain(self, x: Mapping[str, float], top: int = 3) -> dict[str, float]:
        """The ``top`` most deviating features with their signed z-scores (rounded)."""
        z = self._z(self._clean(x))
        ranked = sorted(z.items(), key=lambda kv: -abs(kv[1]))[:top]
        return {k: round(v, 2) for k, v in ranked}

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Learn one window (during warm-up always; afterwards only if clearly normal)."""
        clean = self._clean(x)
        self.n_seen += 1
        if self.threshold is None:
            if self.n_seen > self.warmup // 2:
                self._calibration.append(self.score_one(clean))
            self._learn(clean)
            if self.n_seen >= self.warmup:
                self._calibrate()
        elif self.score_one(clean) < self.learn_below * self.threshold:
            self._learn(clean)

    def _learn(self, clean: dict[str, float]) -> None:
        if clean:
            self.scaler.learn_one(clean)
            self.n_learned += 1

    def _calibrate(self) -> None:
        scores = self._calibration or [0.0]
        level = float(np.quantile(scores, self.quantile, method="higher"))
        # A floor keeps a perfectly constant warm-up from giving a zero threshold.
        self.threshold = max(level, 1.0) * self.margin
        self._calibration = []

    def __repr__(self) -> str:
        return (
            f"WindowAnomalyDetector(features={len(self.scaler.counts)}, seen={self.n_seen}, "
            f"threshold={self.threshold})"
        )


class ReferenceCurve:
    """A learned healthy relation ``signal ≈ f(driver)`` over ``bins`` equal bins of the
    driver on ``[low, high]``; each visited bin keeps an exponentially weighted mean of the
    driver and of the signal (sparse: only visited bins are stored).

    :meth:`predict` draws a straight line through the two visited bins nearest to the driver
    (interpolating between them); beyond the visited bins (at most ``reach`` bins) the line is
    the least-squares fit through the ``span`` nearest ones (a large ``span`` suits a nearly
    linear relation, such as temperature rise against load); with one visited bin it is flat
    inside that bin. Elsewhere it returns NaN: the twin was never seen there, so there is
    nothing to judge against. :meth:`learn` refuses a value further than ``gate`` from the
    prediction (a developing fault is not learned as normal) and, with ``allow_new=False``,
    a point where nothing is predicted. A bin averages its first ``1 / alpha`` points, then
    forgets with weight ``alpha``. Nothing is predicted before ``min_points`` points were
    learned (a young curve extrapolates badly).

    >>> c = ReferenceCurve(low=0.0, high=100.0, bins=10, gate=5.0)
    >>> for load in (15.0, 35.0, 55.0) * 2:
    ...     _ = c.learn(load, 20.0 + load)
    >>> c.predict(45.0), c.predict(5.0), c.predict(95.0)
    (65.0, 25.0, nan)
    >>> c.learn(35.0, 90.0), c.predict(35.0)
    (False, 55.0)
    """

    def __init__(
        self,
        low: float,
        high: float,
        bins: int = 20,
        gate: float = math.inf,
        alpha: float = 0.02,
        reach: int = 1,
        span: int = 2,
        min_points: int = 6,
    ) -> None:
        if not high > low or bins < 1:
            raise ValueError(f"ReferenceCurve needs high > low and bins >= 1, got {low}, {high}")
        self.low = low
        self.high = high
        self.bins = bins
        self.gate = gate
        self.alpha = alpha
        self.reach = reach
        self.span = span
        self.min_points = min_points
        self.learned = 0
        #: bin index -> [count, mean driver, mean signal]
        self.points: dict[int, list[float]] = {}

    def _bin(self, driver: float) -> int:
        i = int((driver - self.low) / (self.high - self.low) * self.bins)
        return min(self.bins - 1, max(0, i))

    def predict(self, driver: float) -> float:
        """Expected signal at ``driver`` (NaN where the curve knows nothing)."""
        if not math.isfinite(driver) or self.learned < self.min_points:
            return math.nan
        points = self.points
        i = self._bin(driver)
        lower = [j for j in points if j <= i]
        upper = [j for j in points if j >= i]
        if lower and upper:
            a, b = max(lower), min(upper)
            if a == b:  # a learned bin: correct within it with its nearest neighbour
                if len(points) == 1:
                    return points[i][2]
                others = sorted((j for j in points if j != i), key=lambda j: (abs(j - i), j))
                a, b = sorted((i, others[0]))
            elif b - a > 2 * self.reach + 1:
                return math.nan
            return self._line((a, b), driver)
        nearest = max(lower) if lower else min(upper)
        if len(points) < 2 or abs(nearest - i) > self.reach:
            return math.nan
        ranked = sorted(points, key=lambda j: (abs(j - i), j))
        return self._line(tuple(ranked[: max(2, self.span)]), driver)

    def _line(self, bins: tuple[int, ...], driver: float) -> float:
        """Least-squares line through the given bins' (driver, signal) means, at ``driver``.

        Points closer than a quarter of a bin apart give no usable slope: then the value of the
        nearest one if ``driver`` lies in its bin, else NaN.
        """
        points = self.points
        xs = [points[j][1] for j in bins]
        ys = [points[j][2] for j in bins]
        if max(xs) - min(xs) < 0.25 * (self.high - self.low) / self.bins:
            i = self._bin(driver)
            nearest = min(bins, key=lambda j: (abs(j - i), j))
            return points[nearest][2] if nearest == i else math.nan
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
        return my + slope * (driver - mx)

    def learn(self, driver: float, value: float, allow_new: bool = True) -> bool:
        """Learn one point unless non-finite, too far from the prediction, or (with
        ``allow_new=False``) where nothing is predicted. Returns whether it was learned."""
        if not (math.isfinite(driver) and math.isfinite(value)):
            return False
        expected = self.predict(driver)
        if math.isfinite(expected):
            if abs(value - expected) > self.gate:
                return False
        elif not allow_new:
            return False
        self.learned = min(self.learned + 1, 1_000_000)
        i = self._bin(driver)
        point = self.points.get(i)
        if point is None:
            self.points[i] = [1, driver, value]
            return True
        n = min(point[0] + 1, 1_000_000)
        weight = max(1.0 / n, self.alpha)
        point[0] = n
        point[1] += weight * (driver - point[1])
        point[2] += weight * (value - point[2])
        return True

    def residual(self, driver: float, value: float) -> float:
        """``value`` minus the expected value (NaN when unknown)."""
        return value - self.predict(driver) if math.isfinite(value) else math.nan

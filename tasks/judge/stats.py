"""Statistics of judge scores, in the standard library only.

Percentile bootstrap intervals use a fixed seed (the same data gives the same interval)
and 2,000 resamples. Up to 2,000 values each resample draws the values themselves; past
that, when the values take few distinct levels (scores on a scale), a resample draws
how many times each level occurs (a multinomial, as sequential binomials), which is the
same distribution at a cost that does not grow with the number of items.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

__all__ = [
    "Interval",
    "Summary",
    "bootstrap_mean_ci",
    "histogram",
    "paired_difference",
    "summarize",
    "wilson",
]

RESAMPLES = 2000
SEED = 0
_EXACT_UP_TO = 2000
_MAX_LEVELS = 64


@dataclass(frozen=True)
class Interval:
    low: float
    high: float

    def as_list(self) -> list[float]:
        return [round(self.low, 6), round(self.high, 6)]


@dataclass(frozen=True)
class Summary:
    """Scores' n, mean, median, sample standard deviation, 95% CI of the mean."""

    n: int
    mean: float | None
    median: float | None
    sd: float | None
    ci95: Interval | None

    def as_dict(self) -> dict:
        out = asdict(self)
        out["ci95"] = self.ci95.as_list() if self.ci95 else None
        return out


def summarize(values: Sequence[float], *, resamples: int = RESAMPLES, seed: int = SEED) -> Summary:
    """n, mean, median, sd (n-1; None under two values) and a bootstrap 95% CI."""
    if not values:
        return Summary(0, None, None, None, None)
    return Summary(
        n=len(values),
        mean=math.fsum(values) / len(values),
        median=statistics.median(values),
        sd=statistics.stdev(values) if len(values) > 1 else None,
        ci95=bootstrap_mean_ci(values, resamples=resamples, seed=seed),
    )


def histogram(values: Sequence[float], *, low: float | None = None, high: float | None = None):
    """Counts by value, every integer level of [low, high] present (0 when unseen)."""
    counts = Counter(v if v != int(v) else int(v) for v in values)
    if low is not None and high is not None and high - low <= 1000:
        for level in range(math.ceil(low), math.floor(high) + 1):
            counts.setdefault(level, 0)
    return dict(sorted(counts.items()))


def bootstrap_mean_ci(
    values: Sequence[float],
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Interval:
    """Percentile bootstrap interval of the mean."""
    rng = random.Random(seed)
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    levels = Counter(values)
    if n > _EXACT_UP_TO and len(levels) <= _MAX_LEVELS:
        draw = _level_sampler(rng, n, levels)
    else:
        draw = lambda: math.fsum(rng.choices(values, k=n)) / n  # noqa: E731
    means = sorted(draw() for _ in range(resamples))
    return Interval(_percentile(means, (1 - level) / 2), _percentile(means, (1 + level) / 2))


def _level_sampler(rng: random.Random, n: int, levels: Counter) -> Callable[[], float]:
    items = sorted(levels.items())

    def draw() -> float:
        left, mass, total = n, 1.0, 0.0
        for value, count in items[:-1]:
            p = count / n
            k = _binomial(rng, left, min(1.0, p / mass)) if left else 0
            total += value * k
            left -= k
            mass -= p
        return (total + items[-1][0] * left) / n

    return draw


def _binomial(rng: random.Random, trials: int, p: float) -> int:
    """A Binomial(trials, p) draw: inversion when the variance is small, else normal."""
    if p <= 0.0:
        return 0
    if p >= 1.0:
        return trials
    if p > 0.5:
        return trials - _binomial(rng, trials, 1.0 - p)
    variance = trials * p * (1.0 - p)
    if variance >= 25:
        k = round(rng.gauss(trials * p, math.sqrt(variance)))
        return min(trials, max(0, k))
    q = 1.0 - p
    pmf = q**trials
    u, k, cdf = rng.random(), 0, pmf
    while u > cdf and k < trials:
        pmf *= (trials - k) / (k + 1) * p / q
        k += 1
        cdf += pmf
    return k


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile of sorted values (q in [0, 1])."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def wilson(successes: int, n: int, *, z: float = 1.959963984540054) -> Interval | None:
    """Wilson score interval of a proportion (None when n is 0)."""
    if n == 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(
    first: dict[str, float], second: dict[str, float], *, seed: int = SEED
) -> dict:
    """Mean of second - first over the ids scored in both, with its bootstrap 95% CI.

    Returns:
        {"n", "mean_a", "mean_b", "mean_difference", "ci95", "only_a", "only_b"}
    """
    shared = [k for k in first if k in second]
    diffs = [second[k] - first[k] for k in shared]
    out = {
        "n": len(shared),
        "mean_a": math.fsum(first[k] for k in shared) / len(shared) if shared else None,
        "mean_b": math.fsum(second[k] for k in shared) / len(shared) if shared else None,
        "mean_difference": math.fsum(diffs) / len(diffs) if diffs else None,
        "ci95": bootstrap_mean_ci(diffs, seed=seed).as_list() if diffs else None,
        "only_a": sum(1 for k in first if k not in second),
        "only_b": sum(1 for k in second if k not in first),
    }
    return out

"""The fixed histograms of the prediction log, and what is computed from them (pure code).

- Confidence: ``CONFIDENCE_BUCKETS`` (10) buckets of width 0.1, ``[0, 0.1) ... [0.9, 1.0]``
  (1.0 goes to the last); null confidences are counted apart.
- Latency: ``LATENCY_BUCKETS`` (160) log-spaced buckets, eight per doubling from
  ``LATENCY_BASE_MS`` (0.05 ms): bucket 0 is below it, bucket k >= 1 is
  ``[base * 2^((k-1)/8), base * 2^(k/8))``, the last one also everything above (~43 s). A
  percentile read from it is within ~4.5 % of the exact one.
- PSI (population stability index) of two confidence histograms:
  ``sum((a_i - b_i) * ln(a_i / b_i))`` over the buckets' proportions, a proportion of 0 taken as
  ``PSI_EPSILON`` (so an empty bucket does not make it infinite).

The SQL of ``repository.py`` buckets raw rows with the same formulas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

CONFIDENCE_BUCKETS = 10
LATENCY_BUCKETS = 160
LATENCY_BASE_MS = 0.05
LATENCY_STEPS_PER_DOUBLING = 8
PSI_EPSILON = 1e-4

#: the SQL expressions that bucket a row (the same formulas as ``confidence_bucket`` ...)
SQL_CONFIDENCE_BUCKET = f"least({CONFIDENCE_BUCKETS - 1}, floor(confidence * 10))::int"
SQL_LATENCY_BUCKET = (
    f"CASE WHEN latency_ms < {LATENCY_BASE_MS} THEN 0 ELSE least({LATENCY_BUCKETS - 1}, "
    f"1 + floor({LATENCY_STEPS_PER_DOUBLING} * ln(latency_ms / {LATENCY_BASE_MS}) / ln(2)))::int "
    "END"
)


def confidence_bounds() -> list[tuple[float, float]]:
    return [(i / 10, (i + 1) / 10) for i in range(CONFIDENCE_BUCKETS)]


def latency_bounds(bucket: int) -> tuple[float, float]:
    """The latency range of a bucket (bucket 0 starts at 0; the last ends at its nominal end)."""
    if bucket == 0:
        return 0.0, LATENCY_BASE_MS
    step = LATENCY_STEPS_PER_DOUBLING
    return LATENCY_BASE_MS * 2 ** ((bucket - 1) / step), LATENCY_BASE_MS * 2 ** (bucket / step)


def confidence_buckets(confidence: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Bucket of each (non-null) confidence."""
    return np.minimum(CONFIDENCE_BUCKETS - 1, np.floor(confidence * 10)).astype(np.int64)


def latency_buckets(latency_ms: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    with np.errstate(divide="ignore"):
        steps = 1 + np.floor(
            LATENCY_STEPS_PER_DOUBLING * np.log(latency_ms / LATENCY_BASE_MS) / math.log(2)
        )
    steps = np.where(latency_ms < LATENCY_BASE_MS, 0, steps)
    buckets: npt.NDArray[np.int64] = np.minimum(LATENCY_BUCKETS - 1, steps).astype(np.int64)
    return buckets


@dataclass
class Summary:
    """Counts of a set of predictions (a rollup row, a window, the sum of several)."""

    n: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    confidence_null: int = 0
    confidence: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BUCKETS)
    latency: list[int] = field(default_factory=lambda: [0] * LATENCY_BUCKETS)

    def add(self, other: Summary) -> None:
        self.n += other.n
        self.errors += other.errors
        self.latency_sum += other.latency_sum
        self.confidence_null += other.confidence_null
        self.confidence = [a + b for a, b in zip(self.confidence, other.confidence, strict=True)]
        self.latency = [a + b for a, b in zip(self.latency, other.latency, strict=True)]


def summarize(
    starts: npt.NDArray[np.int64],
    latency_ms: npt.NDArray[np.float64],
    confidence: npt.NDArray[np.float64],
    failed: npt.NDArray[np.bool_],
) -> dict[int, Summary]:
    """The summary of each group of rows: ``starts`` is each row's group (a minute's or an
    hour's epoch second); ``confidence`` is NaN where null."""
    out: dict[int, Summary] = {}
    groups, index = np.unique(starts, return_inverse=True)
    k = len(groups)
    n = np.bincount(index, minlength=k)
    errors = np.bincount(index, weights=failed.astype(np.float64), minlength=k)
    lat_sum = np.bincount(index, weights=latency_ms, minlength=k)
    has_conf = ~np.isnan(confidence)
    conf_null = np.bincount(index[~has_conf], minlength=k)
    conf = np.bincount(
        index[has_conf] * CONFIDENCE_BUCKETS + confidence_buckets(confidence[has_conf]),
        minlength=k * CONFIDENCE_BUCKETS,
    ).reshape(k, CONFIDENCE_BUCKETS)
    lat = np.bincount(
        index * LATENCY_BUCKETS + latency_buckets(latency_ms), minlength=k * LATENCY_BUCKETS
    ).reshape(k, LATENCY_BUCKETS)
    for i, start in enumerate(groups.tolist()):
        out[start] = Summary(
            n=int(n[i]),
            errors=int(errors[i]),
            latency_sum=float(lat_sum[i]),
            confidence_null=int(conf_null[i]),
            confidence=conf[i].tolist(),
            latency=lat[i].tolist(),
        )
    return out


def percentile_from_histogram(counts: Sequence[int], q: float) -> float | None:
    """``percentile_cont``'s ``q`` read from a latency histogram: the position ``q * (n - 1)``
    (0-based) is found in its bucket and placed log-linearly inside it."""
    n = sum(counts)
    if n == 0:
        return None
    position = q * (n - 1)
    seen = 0
    for bucket, count in enumerate(counts):
        if count and position < seen + count:
            low, high = latency_bounds(bucket)
            fraction = (position - seen + 0.5) / count
            if bucket == 0:
                return low + (high - low) * fraction
            return float(low * (high / low) ** fraction)
        seen += count
    return latency_bounds(len(counts) - 1)[1]


def psi(actual: Sequence[int], expected: Sequence[int]) -> float | None:
    """Population stability index of ``actual`` against ``expected`` (bucket counts); None when
    either has no counts."""
    total_a, total_e = sum(actual), sum(expected)
    if total_a == 0 or total_e == 0:
        return None
    value = 0.0
    for a, e in zip(actual, expected, strict=True):
        pa = max(a / total_a, PSI_EPSILON)
        pe = max(e / total_e, PSI_EPSILON)
        value += (pa - pe) * math.log(pa / pe)
    return value

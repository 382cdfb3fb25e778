"""The one data type every stage passes around: a labelled univariate series."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Interval = tuple[int, int]


@dataclass(frozen=True)
class Sample:
    """A univariate series with its anomalies.

    Attributes:
        values: float64 array of shape (L,).
        intervals: sorted, disjoint, half-open ``(start, end)`` index pairs, ``0 <= start < end <= L``.
        label: one of :data:`anomseer.series.taxonomy.LABELS` (``normal`` iff no interval).
        family: generator family name (``range``, ``noisy-freq``, ``vta-shapelet``, ...).
        uid: a stable identifier such as ``train-000123`` (set by the split builder).
    """

    values: np.ndarray
    intervals: tuple[Interval, ...]
    label: str
    family: str
    uid: str = field(default="")

    @property
    def length(self) -> int:
        return int(self.values.shape[0])


def merge_intervals(pairs) -> list[Interval]:
    """Sort and merge overlapping or touching ``(start, end)`` pairs (half-open)."""
    merged: list[list[int]] = []
    for start, end in sorted(pairs):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]

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

"""Label-free baselines: detectors that map one series to ``(intervals, label)``, deterministically.

The affiliation metrics are lenient (method.md section 4), so a model's numbers mean little
without the scores of detectors that know nothing. Each baseline here answers in the task's
format, so it is scored by exactly the same code as a model:

- :func:`always_empty`: ``[]`` / ``normal`` for every series. On a split where a share ``q`` of the
  series is normal it scores accuracy ``q`` and every localization metric ``q`` (1 on each normal
  series, 0 on each anomalous one): the floor any model must clear.
- :func:`blind_expert`: the expert cascade without the truth (:func:`anomseer.expert.blind_detect`).
- :func:`random_intervals`: 0..3 random intervals and a random anomaly label, seeded per series.
- :func:`percentile_threshold`: values outside the series' own percentiles, as ``global point``.
- :class:`ClassPriorLocalizer`: one typical interval per class, fitted on the training split.
  Given a label it answers that class's typical interval, so it shows what a model that classifies
  right but cannot read positions off the plot would score (see ``run.py``: it is applied to each
  model's predicted labels and to the true labels).

Intervals are sorted, disjoint, half-open ``(start, end)`` pairs with ``0 <= start < end <= L``.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable

import numpy as np

from anomseer.series.sample import Sample, merge_intervals
from anomseer.series.taxonomy import ANOMALY_LABELS, NORMAL, normalize_label

Interval = tuple[int, int]
Prediction = tuple[list[Interval], str]

#: A random interval is at most this fraction of the series long (AnomLLM anomalies average 2-10 %
#: of a 1000-point series; VisualTimeAnomaly windows 2.5 % of 400).
RANDOM_MAX_LENGTH_FRACTION = 0.1
#: The random baseline draws 0..RANDOM_MAX_INTERVALS intervals per series.
RANDOM_MAX_INTERVALS = 3


def always_empty(sample: Sample) -> Prediction:
    """Answer "no anomaly" for every series: ``([], "normal")``."""
    return [], NORMAL


def blind_expert(sample: Sample, expert_params=None) -> Prediction:
    """The expert cascade run blind (:func:`anomseer.expert.blind_detect`).

    A series the scans cannot read (NaN/inf, too short) is answered ``([], "normal")`` instead of
    failing the whole evaluation: a classical detector that cannot run has detected nothing.
    """
    from anomseer.expert import blind_detect

    try:
        intervals, label = blind_detect(sample.values, expert_params)
    except ValueError:
        return [], NORMAL
    return [(int(s), int(e)) for s, e in intervals], label


def random_intervals(sample: Sample, seed: int = 0) -> Prediction:
    """A random answer, the same every time for the same ``(seed, series)``.

    Draws ``n`` uniform in 0..3 intervals; each has a length uniform in
    ``1..max(1, round(0.1 * L))`` and a start uniform over the positions where it fits.
    Overlapping draws are merged. A non-empty answer gets a label drawn uniformly from the five
    anomaly labels; an empty one is ``normal``.

    The generator is seeded from ``seed`` and the series ``uid`` (or, for a series without uid, a
    hash of its values), so the answer does not depend on the order series are evaluated in.
    """
    length = sample.length
    rng = np.random.default_rng([int(seed), _series_key(sample)])
    n = int(rng.integers(0, RANDOM_MAX_INTERVALS + 1))
    max_len = max(1, int(round(RANDOM_MAX_LENGTH_FRACTION * length)))
    pairs = []
    for _ in range(n):
        span = int(rng.integers(1, min(max_len, length) + 1))
        start = int(rng.integers(0, length - span + 1))
        pairs.append((start, start + span))
    intervals = merge_intervals(pairs)
    if not intervals:
        return [], NORMAL
    return intervals, ANOMALY_LABELS[int(rng.integers(0, len(ANOMALY_LABELS)))]


def percentile_threshold(sample: Sample, low_pct: float = 2.0, high_pct: float = 98.0) -> Prediction:
    """Flag values strictly below the series' ``low_pct`` or above its ``high_pct`` percentile.

    Contiguous runs of flagged indices become intervals, labelled ``global point`` when anything
    is flagged (a threshold on values can only see extremes). Note that on any series with many
    distinct values about ``low_pct + (100 - high_pct)`` percent of points are flagged, so this
    baseline almost never answers ``normal``: it is the "flag the extremes" reflex.
    """
    if not 0 <= low_pct < high_pct <= 100:
        raise ValueError(f"need 0 <= low_pct < high_pct <= 100, got low_pct={low_pct}, high_pct={high_pct}")
    x = np.asarray(sample.values, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.any():
        return [], NORMAL
    lo, hi = np.percentile(x[finite], [low_pct, high_pct])
    flags = finite & ((x < lo) | (x > hi))
    intervals = mask_runs(flags)
    return (intervals, "global point") if intervals else ([], NORMAL)


class ClassPriorLocalizer:
    """For each class, its most typical interval on the training split.

    Definition: for every training series of class ``c`` with at least one interval, take its
    *first* interval ``(s, e)`` as fractions of the series length, ``s / L`` and ``(e - s) / L``.
    The class's typical interval is (median start fraction, median length fraction). Fractions
    make the prior transfer to another length (the held-out set has L = 400, training L = 1000).
    A class absent from training (``shapelet`` on the AnomLLM families) falls back to the same
    medians over all anomalous training series.

    Why the first interval and medians: most series hold one interval, and medians are not dragged
    by the few long trend anomalies; the point is a fixed, label-only guess, not a good detector.
    """

    def __init__(self):
        self.priors: dict[str, tuple[float, float]] = {}
        self.fallback: tuple[float, float] | None = None
        self.counts: dict[str, int] = {}

    def fit(self, samples: Iterable[Sample]) -> "ClassPriorLocalizer":
        """Fit on training samples; raises ValueError when none of them has an interval."""
        by_class: dict[str, list[tuple[float, float]]] = {}
        for sample in samples:
            if not sample.intervals:
                continue
            label = normalize_label(sample.label)
            if label is None or label == NORMAL:
                raise ValueError(
                    f"training sample {sample.uid or sample.family!r} has intervals but label "
                    f"{sample.label!r}; an anomalous series needs one of {ANOMALY_LABELS}"
                )
            s, e = sample.intervals[0]
            by_class.setdefault(label, []).append((s / sample.length, (e - s) / sample.length))
        if not by_class:
            raise ValueError("ClassPriorLocalizer.fit needs training samples with at least one anomaly interval")
        self.priors = {c: _medians(v) for c, v in sorted(by_class.items())}
        self.fallback = _medians([pair for v in by_class.values() for pair in v])
        self.counts = {c: len(v) for c, v in sorted(by_class.items())}
        return self

    def predict(self, label: str | None, length: int) -> list[Interval]:
        """The typical interval of ``label`` on a series of ``length`` points; ``[]`` for normal.

        Raises ValueError for an unknown label or before :meth:`fit`.
        """
        if self.fallback is None:
            raise ValueError("ClassPriorLocalizer is not fitted; call fit(train_samples) first")
        canonical = normalize_label(label)
        if canonical is None:
            raise ValueError(f"unknown label {label!r}; use one of {(*ANOMALY_LABELS, NORMAL)}")
        if canonical == NORMAL:
            return []
        start_frac, length_frac = self.priors.get(canonical, self.fallback)
        start = min(int(round(start_frac * length)), length - 1)
        span = max(1, int(round(length_frac * length)))
        return [(start, min(length, start + span))]

    def to_dict(self) -> dict:
        """The fitted priors as JSON-able data (for the results file)."""
        return {
            "priors": {c: {"start_fraction": s, "length_fraction": f} for c, (s, f) in self.priors.items()},
            "fallback": None
            if self.fallback is None
            else {"start_fraction": self.fallback[0], "length_fraction": self.fallback[1]},
            "n_train_series": dict(self.counts),
        }


def label_free_baselines(
    low_pct: float = 2.0, high_pct: float = 98.0, seed: int = 0, expert_params=None
) -> dict[str, Callable[[Sample], Prediction]]:
    """The baselines that see only the series, by name (the ones a model must beat)."""
    return {
        "always_empty": always_empty,
        "blind_expert": lambda s: blind_expert(s, expert_params),
        "random_intervals": lambda s: random_intervals(s, seed),
        "percentile_threshold": lambda s: percentile_threshold(s, low_pct, high_pct),
    }


def mask_runs(mask: np.ndarray) -> list[Interval]:
    """Half-open ``(start, end)`` runs of True in a boolean mask of shape (L,)."""
    m = np.asarray(mask, dtype=bool).astype(np.int8)
    edges = np.diff(np.concatenate(([0], m, [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def _medians(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    arr = np.asarray(pairs, dtype=np.float64)
    return float(np.median(arr[:, 0])), float(np.median(arr[:, 1]))


def _series_key(sample: Sample) -> int:
    """A stable 32-bit key of a series: its uid, or its values when it has none."""
    if sample.uid:
        return zlib.crc32(sample.uid.encode())
    digest = hashlib.sha256(np.ascontiguousarray(sample.values, dtype=np.float64).tobytes()).digest()
    return int.from_bytes(digest[:4], "little")


__all__ = [
    "ClassPriorLocalizer",
    "always_empty",
    "blind_expert",
    "label_free_baselines",
    "mask_runs",
    "merge_intervals",
    "percentile_threshold",
    "random_intervals",
]

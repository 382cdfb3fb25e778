"""Score one model's (or baseline's) answers on one split: metrics per group with bootstrap CIs.

A *record* is one answered series::

    {uid, family, split, true_intervals, true_label, length,
     pred_intervals (None = unparseable), pred_label (None = missing/unknown), well_formed (bool)}

Every metric is a mean over series of a per-series value, so one series weighs the same whatever
its length or number of intervals:

- ``accuracy``: predicted label equals the true one (None is wrong);
- ``P``, ``R``, ``F1``, ``AffP``, ``AffR``, ``AffF1``: :func:`anomseer.metrics.localization_scores`
  conventions (unparseable answer -> all 0, never skipped; both empty -> all 1; one side empty -> 0);
- ``well_formed``: the completion had think, a parseable answer and a known class;
- ``score`` = 0.5 * accuracy + 0.5 * AffF1, the promotion's primary metric. Why this one: the
  outcome reward weighs localization 0.7 and class 0.2, but a tiny model classifies long before it
  localizes (design.md), and the lenient affiliation F1 alone is topped by "always empty" on
  normal-heavy splits; an equal blend rewards both halves of the task and is linear per series,
  so its bootstrap CI comes for free.

Groups: ``overall``; ``anomalous`` (true intervals non-empty, where the lenient "empty" answer
earns nothing); ``family:<name>``; ``paper:<group>`` with the paper's freq / trend / range / point
groups (:data:`anomseer.series.taxonomy.PAPER_GROUP`) and every held-out VisualTimeAnomaly family
as ``paper:heldout``.

CIs are percentile bootstraps (95 %). All metrics of a group share one set of resamples, drawn
once as a (n_boot, n) count matrix, so the means of every metric for every resample are one
matrix product: 10 models x 500 records x 1000 resamples take well under a second. Resamples are
seeded from ``(seed, group name)``: two models scored on the same split see the same resamples
(paired), and adding a group never changes another group's interval.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from anomseer.metrics import localization_scores
from anomseer.series.taxonomy import LABELS, PAPER_GROUP, VTA_TYPE_LABEL, normalize_label

#: Per-series metrics, in the column order of the internal matrix.
METRICS: tuple[str, ...] = ("accuracy", "P", "R", "F1", "AffP", "AffR", "AffF1", "well_formed", "score")
#: The confusion matrix's extra column for a missing or unknown predicted label.
UNPARSEABLE = "unparseable"
#: Two-sided level of the bootstrap intervals.
CI_ALPHA = 0.05
REQUIRED_KEYS = ("uid", "family", "true_intervals", "true_label", "length", "pred_intervals", "pred_label", "well_formed")


def paper_group(family: str) -> str | None:
    """The paper's table group of a family (freq/trend/range/point), ``heldout`` for VTA types."""
    if family in PAPER_GROUP:
        return PAPER_GROUP[family]
    if family in VTA_TYPE_LABEL:
        return "heldout"
    return None


PAPER_GROUPS: tuple[str, ...] = ("freq", "trend", "range", "point")


def paper_average(per_group: dict[str, float | None]) -> float | None:
    """The paper's "avg F1": the mean of the values of the paper groups present; None if none is."""
    present = [per_group[g] for g in PAPER_GROUPS if per_group.get(g) is not None]
    return sum(present) / len(present) if present else None


def per_record_metrics(records: Sequence[dict]) -> np.ndarray:
    """The per-series metric matrix of shape (n, len(METRICS)), columns in :data:`METRICS` order."""
    rows = np.empty((len(records), len(METRICS)), dtype=np.float64)
    for i, rec in enumerate(records):
        _check_record(i, rec)
        truth = normalize_label(rec["true_label"])
        if truth is None:
            raise ValueError(f"record {rec['uid']!r}: true_label {rec['true_label']!r} is not one of {LABELS}")
        pred = rec["pred_label"]
        correct = float(pred is not None and normalize_label(pred) == truth)
        try:
            loc = localization_scores(rec["pred_intervals"], rec["true_intervals"], int(rec["length"]))
        except ValueError as error:
            raise ValueError(f"record {rec['uid']!r}: {error}") from None
        rows[i, :7] = (correct, loc["P"], loc["R"], loc["F1"], loc["AffP"], loc["AffR"], loc["AffF1"])
        rows[i, 7] = float(bool(rec["well_formed"]))
        rows[i, 8] = 0.5 * correct + 0.5 * loc["AffF1"]
    return rows


def bootstrap_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Means of every column over ``n_boot`` resamples of the rows: (n, k) -> (n_boot, k).

    Each resample is a row of a count matrix (how often each series was drawn), built with one
    ``bincount``; the means are then ``counts @ values / n``.
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n == 0:
        raise ValueError("cannot bootstrap an empty group")
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, values.shape[1]))
    rows_per_chunk = max(1, 2_000_000 // n)  # bound the (rows, n) count matrix to ~16 MB
    for lo in range(0, n_boot, rows_per_chunk):
        rows = min(rows_per_chunk, n_boot - lo)
        draws = rng.integers(0, n, size=(rows, n)) + (np.arange(rows) * n)[:, None]
        counts = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n)
        out[lo : lo + rows] = counts @ values / n
    return out


def summarize(values: np.ndarray, n_boot: int, seed: int) -> dict:
    """``{metric: {"mean", "low", "high"}, "n": n}`` for a (n, len(METRICS)) metric matrix."""
    means = values.mean(axis=0)
    boot = bootstrap_means(values, n_boot, seed)
    low, high = np.quantile(boot, [CI_ALPHA / 2, 1 - CI_ALPHA / 2], axis=0)
    out: dict = {"n": int(values.shape[0])}
    for j, name in enumerate(METRICS):
        # The percentile interval of a mean always brackets it up to float round-off; clamp that.
        m = float(means[j])
        out[name] = {"mean": m, "low": min(float(low[j]), m), "high": max(float(high[j]), m)}
    return out


def confusion_matrix(records: Sequence[dict]) -> dict:
    """Counts of true label (rows, :data:`LABELS`) x predicted label (columns, LABELS + unparseable)."""
    columns = (*LABELS, UNPARSEABLE)
    counts = np.zeros((len(LABELS), len(columns)), dtype=np.int64)
    for rec in records:
        truth = normalize_label(rec["true_label"])
        pred = normalize_label(rec["pred_label"]) if rec["pred_label"] is not None else None
        counts[LABELS.index(truth), columns.index(pred if pred is not None else UNPARSEABLE)] += 1
    return {"true": list(LABELS), "pred": list(columns), "counts": counts.tolist()}


def group_indices(records: Sequence[dict]) -> dict[str, np.ndarray]:
    """Record indices of every non-empty group, ``overall`` first, then anomalous, paper, family."""
    groups: dict[str, list[int]] = {"overall": list(range(len(records))), "anomalous": []}
    paper: dict[str, list[int]] = {}
    family: dict[str, list[int]] = {}
    for i, rec in enumerate(records):
        if len(rec["true_intervals"]) > 0:
            groups["anomalous"].append(i)
        group = paper_group(rec["family"])
        if group is not None:
            paper.setdefault(f"paper:{group}", []).append(i)
        family.setdefault(f"family:{rec['family']}", []).append(i)
    groups.update(sorted(paper.items()))
    groups.update(sorted(family.items()))
    return {name: np.asarray(idx, dtype=np.int64) for name, idx in groups.items() if idx}


def score_records(records: Sequence[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """Score one set of answered series (one model on one split).

    Args:
        records: dicts with the keys of the module docstring; ``pred_intervals`` None means the
            answer could not be parsed (scores 0).
        n_boot: bootstrap resamples per group (>= 1).
        seed: bootstrap seed.

    Returns:
        ``{"n", "score", "groups": {name: {metric: {"mean", "low", "high"}, "n"}},
        "confusion": {"true", "pred", "counts"}}``; ``score`` is the overall score's mean.

    Raises:
        ValueError: no records, a record missing a key, an unknown true label or an invalid interval
            (the message names the record's uid).
    """
    records = list(records)
    if not records:
        raise ValueError("score_records needs at least one record")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    values = per_record_metrics(records)
    groups = {
        name: summarize(values[idx], int(n_boot), [int(seed), zlib.crc32(name.encode())])
        for name, idx in group_indices(records).items()
    }
    return {
        "n": len(records),
        "score": groups["overall"]["score"]["mean"],
        "groups": groups,
        "confusion": confusion_matrix(records),
    }


def _check_record(i: int, rec) -> None:
    if not isinstance(rec, dict):
        raise ValueError(f"records[{i}] is a {type(rec).__name__}, expected a dict with keys {REQUIRED_KEYS}")
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        raise ValueError(f"records[{i}] ({rec.get('uid', '?')!r}) lacks keys {missing}; a record needs {REQUIRED_KEYS}")


__all__ = [
    "METRICS",
    "UNPARSEABLE",
    "bootstrap_means",
    "confusion_matrix",
    "group_indices",
    "paper_group",
    "per_record_metrics",
    "score_records",
    "summarize",
]

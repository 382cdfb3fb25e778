"""Localization and classification metrics: point-wise and affiliation P/R/F1, accuracy, bootstrap CIs.

Intervals are integer, half-open ``[start, end)`` index pairs on a series of length ``L``; the
time range is ``Trange = (0, L)``.

Affiliation metrics (Huet, Navarro, Rossi, KDD 2022, "Local Evaluation of Time Series Anomaly
Detection Algorithms") are computed with closed-form integrals, no sampling. Convention: an index
``i`` is the segment ``[i, i + 1)`` of the real line, so an interval ``[s, e)`` is the segment
``[s, e)`` of length ``e - s``. This is how the authors' package converts a binary vector into
events (``convert_vector_to_events``: a positive index ``i`` becomes ``(i, i + 1)``), and with it the
published example (prediction ``[0,0,0,0,1,0,0,0,1,0]`` vs truth ``[0,0,0,1,0,0,0,1,1,1]``, L = 10)
gives exactly P = 9/11 ≈ 0.818 and R = 1003/1188 ≈ 0.844, the package's own values. Overlapping
or touching intervals are merged first, so an interval list scores exactly like its binary mask.

Definitions, for ground-truth event ``J_j = [s_j, e_j)`` with affiliation zone ``E_j = [a_j, b_j)``
(boundaries at the midpoints of the gaps between consecutive events, outer edges 0 and L) and the
prediction ``Y_j`` cut to ``E_j``:

.. math::

    P_j = \\frac{1}{|Y_j|} \\int_{Y_j} \\bar F_j\\big(d(x, J_j)\\big)\\,dx, \\qquad
    \\bar F_j(d) = \\Pr_{X \\sim U(E_j)}\\big[d(X, J_j) \\ge d\\big]

    R_j = \\frac{1}{|J_j|} \\int_{J_j} \\bar F_{j,y}\\big(d(y, Y_j)\\big)\\,dy, \\qquad
    \\bar F_{j,y}(d) = \\Pr_{X \\sim U(E_j)}\\big[|X - y| \\ge d\\big]

``P_j`` is undefined (left out of the mean) when ``Y_j`` is empty, and ``R_j`` is then 0.
``P`` is the mean of the defined ``P_j`` and ``R`` the mean of all ``R_j``. A random predictor scores
about 0.5 on both.

Implementation: the interval metrics run on a handful of intervals per series, so they are plain
Python sweeps over sorted intervals (O(n_true + n_pred), independent of L); a numpy version of the
same closed form with one array per (zone, prediction) pair was 8x slower at these sizes (dozens of
tiny array calls). Arrays are used where they pay: masks and the bootstrap.
"""

from __future__ import annotations

import operator

import numpy as np

from anomseer.series.taxonomy import normalize_label

#: Bootstrap resamples are drawn in chunks of at most this many indices to bound memory.
_BOOT_CHUNK = 4_000_000


def intervals_to_mask(intervals, length: int) -> np.ndarray:
    """Binary mask of shape (length,): True at every index covered by an interval."""
    mask = np.zeros(_check_length(length), dtype=bool)
    for s, e in _canonical(intervals, length, "intervals"):
        mask[s:e] = True
    return mask


def point_prf(pred_intervals, true_intervals, length: int) -> tuple[float, float, float]:
    """Point-wise (precision, recall, F1) of the binary vectors of length ``length``.

    Computed from interval overlaps (identical to comparing the masks, without building them).
    A ratio with a zero denominator is 0 (empty prediction -> precision 0; empty truth -> recall
    0); :func:`localization_scores` applies the task's conventions for empty sides.
    """
    pred = _canonical(pred_intervals, length, "pred_intervals")
    true = _canonical(true_intervals, length, "true_intervals")
    return _point_prf(pred, true)


def affiliation_pr(pred_intervals, true_intervals, length: int) -> tuple[float, float]:
    """Affiliation (precision, recall) with Trange = (0, length), closed form (module docstring).

    ``true_intervals`` must hold at least one event (the metric is defined per event). An empty
    prediction gives (0.0, 0.0): no zone has a defined precision, and every zone's recall is 0.
    Cost: O(n_true + n_pred), independent of ``length``.
    """
    pred = _canonical(pred_intervals, length, "pred_intervals")
    true = _canonical(true_intervals, length, "true_intervals")
    if not true:
        raise ValueError(
            "affiliation metrics need at least one ground-truth event; use localization_scores, "
            "which applies the empty-truth conventions"
        )
    return _affiliation(pred, true, length)


def _affiliation(pred: list[tuple[int, int]], true: list[tuple[int, int]], length: int) -> tuple[float, float]:
    """Closed-form affiliation (P, R) of canonical interval lists, ``true`` non-empty.

    A sweep over the sorted events and predictions: each zone looks only at the predictions that
    reach it. Plain floats on purpose: with a handful of intervals per series, a few scalar
    operations per (zone, prediction) pair are far cheaper than dozens of tiny numpy calls.
    """
    n, m = len(true), len(pred)
    precisions: list[float] = []
    recall_total = 0.0
    first = 0  # first prediction that may reach the current zone
    for j, (s, e) in enumerate(true):
        a = 0.0 if j == 0 else (true[j - 1][1] + s) / 2.0
        b = float(length) if j == n - 1 else (e + true[j + 1][0]) / 2.0
        while first < m and pred[first][1] <= a:
            first += 1
        pieces = []  # the prediction cut to the zone
        k = first
        while k < m and pred[k][0] < b:
            lo, hi = max(pred[k][0], a), min(pred[k][1], b)
            if hi > lo:
                pieces.append((lo, hi))
            k += 1
        if not pieces:
            continue  # precision undefined, recall 0
        zone, event = b - a, e - s
        precision_integral = sum(_precision_integral(lo, hi, s, e, a, b, zone, event) for lo, hi in pieces)
        precisions.append(precision_integral / sum(hi - lo for lo, hi in pieces))
        recall_integral = 0.0
        for i, (lo, hi) in enumerate(pieces):
            # Event points whose nearest prediction is this piece: cut at midpoints between pieces.
            cell_lo = a if i == 0 else (pieces[i - 1][1] + lo) / 2.0
            cell_hi = b if i == len(pieces) - 1 else (hi + pieces[i + 1][0]) / 2.0
            y1, y2 = max(s, cell_lo), min(e, cell_hi)
            if y2 > y1:
                recall_integral += _recall_integral(lo, hi, y1, y2, a, b, zone)
        recall_total += recall_integral / event
    precision = sum(precisions) / len(precisions) if precisions else 0.0
    return _unit(precision), _unit(recall_total / n)


def _precision_integral(lo, hi, s, e, a, b, zone, event) -> float:
    """int_lo^hi Fbar(d(x, J)) dx for a prediction piece [lo, hi) inside the zone [a, b) of J = [s, e).

    Left of J at distance d: |{X in zone: d(X, J) < d}| = |J| + d + min(d, b - e); right of J
    likewise with s - a; inside J the survival is 1.
    """
    keep = 1.0 - event / zone
    total = max(0.0, min(hi, e) - max(lo, s))
    if lo < s:
        v = min(hi, s)
        total += (v - lo) * keep - (_h(s - lo, b - e) - _h(s - v, b - e)) / zone
    if hi > e:
        u = max(lo, e)
        total += (hi - u) * keep - (_h(hi - e, s - a) - _h(u - e, s - a)) / zone
    return total


def _recall_integral(lo, hi, y1, y2, a, b, zone) -> float:
    """int_y1^y2 Fbar_y(d(y, [lo, hi))) dy, with Fbar_y(d) = P[|X - y| >= d], X uniform in [a, b).

    Before the piece, d = lo - y and |{X: |X - y| < d}| = d + min(d, y - a) (a tent on [a, lo]);
    after it, d = y - hi and the measure is d + min(d, b - y) (a tent on [hi, b]).
    """
    total = max(0.0, min(y2, hi) - max(y1, lo))
    if y1 < lo:
        v = min(y2, lo)
        linear = ((lo - y1) ** 2 - (lo - v) ** 2) / 2.0
        total += (v - y1) - (linear + _tent(v, a, lo) - _tent(y1, a, lo)) / zone
    if y2 > hi:
        u = max(y1, hi)
        linear = ((y2 - hi) ** 2 - (u - hi) ** 2) / 2.0
        total += (y2 - u) - (linear + _tent(y2, hi, b) - _tent(u, hi, b)) / zone
    return total


def localization_scores(pred_intervals, true_intervals, length: int) -> dict[str, float]:
    """The six localization scores of the outcome reward: P, R, F1, AffP, AffR, AffF1.

    Conventions (method.md section 4, as in the reference code):

    - ``pred_intervals`` is None (answer missing or unparseable): all six are 0;
    - both prediction and truth empty: all six are 1 (a correct "no anomaly");
    - exactly one side empty (a missed series or a false alarm on a normal one): all six are 0;
    - otherwise point-wise P/R/F1 and affiliation P/R/F1, each F1 the harmonic mean (0 when both
      terms are 0).
    """
    keys = ("P", "R", "F1", "AffP", "AffR", "AffF1")
    true = _canonical(true_intervals, length, "true_intervals")
    if pred_intervals is None:
        return dict.fromkeys(keys, 0.0)
    pred = _canonical(pred_intervals, length, "pred_intervals")
    if not pred and not true:
        return dict.fromkeys(keys, 1.0)
    if not pred or not true:
        return dict.fromkeys(keys, 0.0)
    p, r, f1 = _point_prf(pred, true)
    aff_p, aff_r = _affiliation(pred, true, length)
    return {"P": p, "R": r, "F1": f1, "AffP": aff_p, "AffR": aff_r, "AffF1": f1_score(aff_p, aff_r)}


def f1_score(precision: float, recall: float) -> float:
    """Harmonic mean of precision and recall; 0 when both are 0."""
    total = precision + recall
    return 2.0 * precision * recall / total if total > 0 else 0.0


def accuracy(pred_labels, true_labels) -> float:
    """Fraction of predicted labels equal to the true ones; a None prediction counts as wrong."""
    pred_labels, true_labels = list(pred_labels), list(true_labels)
    if len(pred_labels) != len(true_labels):
        raise ValueError(f"got {len(pred_labels)} predicted labels for {len(true_labels)} true labels")
    if not true_labels:
        raise ValueError("accuracy of an empty set is undefined; pass at least one label")
    correct = 0
    for pred, true in zip(pred_labels, true_labels):
        truth = normalize_label(true)
        if truth is None:
            raise ValueError(f"true label {true!r} is not one of the six labels")
        correct += pred is not None and normalize_label(pred) == truth
    return correct / len(true_labels)


def bootstrap_ci(values, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` (shape (n,)) and its percentile-bootstrap ``1 - alpha`` interval.

    Deterministic from ``seed``; resamples are drawn vectorized in bounded chunks.
    Returns ``(mean, low, high)``.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap_ci values must be finite (drop or impute NaN/inf first)")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_CHUNK // x.size)
    means = np.concatenate(
        [
            x[rng.integers(0, x.size, size=(min(rows, n_boot - done), x.size))].mean(axis=1)
            for done in range(0, n_boot, rows)
        ]
    )
    low, high = np.quantile(means, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(x.mean()), float(low), float(high)


def _check_length(length) -> int:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
    return int(length)


def _index(value, name: str, pair) -> int:
    """An int from an int-like bound (int, numpy int, or an integral float such as 12.0)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must hold integer indices, got {pair!r}")
    try:
        return operator.index(value)
    except TypeError:
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return int(value)
        raise ValueError(f"{name} must hold integer indices, got {pair!r}") from None


def _canonical(intervals, length: int, name: str) -> list[tuple[int, int]]:
    """Validate intervals on [0, length]; return them sorted, with overlapping or touching ones merged."""
    length = _check_length(length)
    if intervals is None:
        raise ValueError(f"{name} is None; pass a (possibly empty) sequence of (start, end) pairs")
    if isinstance(intervals, np.ndarray):
        if intervals.size == 0:
            return []
        if intervals.ndim != 2 or intervals.shape[1] != 2:
            raise ValueError(f"{name} must be (start, end) pairs, got an array of shape {intervals.shape}")
    pairs = []
    for pair in intervals:
        try:
            s, e = pair
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be (start, end) pairs, got {pair!r}") from None
        s, e = _index(s, name, pair), _index(e, name, pair)
        if not 0 <= s < e <= length:
            raise ValueError(f"{name} has interval {(s, e)} outside 0 <= start < end <= {length}")
        pairs.append((s, e))
    pairs.sort()
    merged = pairs[:1]
    for s, e in pairs[1:]:
        if s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def _point_prf(pred: list[tuple[int, int]], true: list[tuple[int, int]]) -> tuple[float, float, float]:
    tp, i, k = 0, 0, 0
    while i < len(pred) and k < len(true):  # two-pointer sweep over sorted disjoint intervals
        tp += max(0, min(pred[i][1], true[k][1]) - max(pred[i][0], true[k][0]))
        if pred[i][1] < true[k][1]:
            i += 1
        else:
            k += 1
    n_pred = sum(e - s for s, e in pred)
    n_true = sum(e - s for s, e in true)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    return precision, recall, f1_score(precision, recall)


def _h(d: float, c: float) -> float:
    """int_0^d (t + min(t, c)) dt for d, c >= 0."""
    return d * d if d <= c else d * d / 2.0 + c * d - c * c / 2.0


def _tent(y: float, lo: float, hi: float) -> float:
    """int_lo^y min(t - lo, hi - t) dt for lo <= y <= hi."""
    if 2.0 * y <= lo + hi:
        return (y - lo) ** 2 / 2.0
    return (hi - lo) ** 2 / 4.0 - (hi - y) ** 2 / 2.0


def _unit(x: float) -> float:
    """Clamp float round-off (e.g. 1.0000000000000002) into [0, 1]."""
    return min(max(x, 0.0), 1.0)


__all__ = [
    "accuracy",
    "affiliation_pr",
    "bootstrap_ci",
    "f1_score",
    "intervals_to_mask",
    "localization_scores",
    "point_prf",
]

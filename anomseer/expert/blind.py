"""A blind classical detector: the expert cascade without the truth (an evaluation baseline).

The cascade of method.md section 3 with the reference parameters, stopping at the first scan
that fires:

1. global scan: a point with |z| > 5, grown by the 3-sigma range check -> ``global point``;
2. structural scan, trend: smoothed-gradient 3-std flags -> ``trend``;
3. structural scan, frequency: windows whose dominant period leaves mean +/- 3 std (skipped when
   the std is below 1) -> ``seasonal``;
4. local scan: matrix-profile discords with z > 3.5 -> ``contextual point``, or ``shapelet`` when
   the discord window is square-like (its largest steps carry most of its variation);
5. nothing -> ``normal`` with no interval.

Flags become intervals by merging runs closer than ``merge_gap``; a discord covers its whole
subsequence ``[start, start + m)``. Nothing here was fitted to an evaluation split: the
thresholds are the reference ones, and the few choices the reference leaves open are fixed a
priori in :class:`ExpertParams`.

A constant series is answered ``([], "normal")`` rather than rejected: it has no anomaly, and
a user's flat sensor channel should not crash a batch.
"""

from __future__ import annotations

from anomseer.expert.analyses import Scans, check_series, is_constant, merge_intervals, step_share, top_discords
from anomseer.expert.params import ExpertParams, resolve
from anomseer.series.taxonomy import NORMAL


def blind_detect(values, params: ExpertParams | None = None) -> tuple[list[tuple[int, int]], str]:
    """Detect anomalies in ``values`` (shape (L,)) without any label: (intervals, class).

    Returns:
        sorted disjoint half-open ``(start, end)`` intervals with ``0 <= start < end <= L`` and a
        label from :data:`anomseer.series.taxonomy.LABELS`; ``([], "normal")`` when no scan fires
        (and for a constant series).

    Raises:
        ValueError: NaN/inf values, an empty or too short series (see :func:`check_series`).
    """
    p = resolve(params)
    x = check_series(values, p, allow_constant=True)
    if is_constant(x):
        return [], NORMAL
    scans = Scans(x, p)
    if scans.glob.events:
        return list(scans.glob.events), "global point"
    if scans.trend.events:
        return list(scans.trend.events), "trend"
    if scans.frequency.events:
        return _clip(scans.frequency.events, scans.length), "seasonal"
    starts = top_discords(scans.discord, p)
    if not starts:
        return [], NORMAL
    m = scans.discord.window
    intervals = merge_intervals([(s, s + m) for s in starts], p.merge_gap)
    top = starts[0]
    square = step_share(scans.prepared.base[top : top + m], p.shapelet_steps) >= p.shapelet_step_share
    return _clip(intervals, scans.length), "shapelet" if square else "contextual point"


def _clip(intervals, length: int) -> list[tuple[int, int]]:
    return [(max(0, a), min(length, b)) for a, b in intervals if min(length, b) > max(0, a)]

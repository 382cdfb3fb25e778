"""Point-wise and affiliation metrics, accuracy and bootstrap CIs (anomseer.metrics).

The closed-form affiliation metric is checked against the published example and against an
independent brute-force version written here: the same definitions (Huet et al., KDD 2022)
evaluated by fine-grid numeric integration, with the survival functions read off an empirical
grid of the zone instead of any formula.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import anomseer.metrics as metrics
from anomseer.metrics import (
    accuracy,
    affiliation_pr,
    bootstrap_ci,
    intervals_to_mask,
    localization_scores,
    point_prf,
)

# ---------------------------------------------------------------------------------------------
# Independent references


def _events(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of ones of a binary vector as half-open [i, j) events (index i is [i, i + 1))."""
    padded = np.concatenate(([0], mask.astype(int), [0]))
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def brute_affiliation(pred, true, length, h=1e-3):
    """Affiliation (P, R) by midpoint-rule integration on a grid of step h."""
    true = sorted(true)
    bounds = [0.0] + [(true[i][1] + true[i + 1][0]) / 2 for i in range(len(true) - 1)] + [float(length)]
    precisions, recalls = [], []
    for j, (s, e) in enumerate(true):
        a, b = bounds[j], bounds[j + 1]
        grid = a + (np.arange(int(round((b - a) / h))) + 0.5) * h  # uniform points of the zone
        dist_to_event = np.maximum(0.0, np.maximum(s - grid, grid - e))
        sorted_dist = np.sort(dist_to_event)
        pieces = [(max(u, a), min(v, b)) for u, v in pred if min(v, b) > max(u, a)]
        if not pieces:
            recalls.append(0.0)
            continue
        in_pred = np.zeros(grid.size, dtype=bool)
        for u, v in pieces:
            in_pred |= (grid >= u) & (grid < v)
        # Precision: mean over predicted points of P[d(X, J) >= d(x, J)], X uniform in the zone.
        d = dist_to_event[in_pred]
        survival = 1.0 - np.searchsorted(sorted_dist, d, side="left") / grid.size
        precisions.append(survival.mean())
        # Recall: mean over event points y of P[|X - y| >= d(y, prediction in zone)].
        ys = grid[(grid >= s) & (grid < e)]
        d_pred = np.min(
            [np.maximum(0.0, np.maximum(u - ys, ys - v)) for u, v in pieces], axis=0
        )
        closer = np.searchsorted(grid, ys + d_pred, side="left") - np.searchsorted(grid, ys - d_pred, side="right")
        recalls.append((1.0 - np.maximum(closer, 0) / grid.size).mean())
    precision = float(np.mean(precisions)) if precisions else 0.0
    return precision, float(np.mean(recalls))


def _random_intervals(rng, length, max_count):
    mask = np.zeros(length, dtype=bool)
    for _ in range(rng.integers(1, max_count + 1)):
        s = int(rng.integers(0, length))
        w = int(rng.integers(1, max(2, length // 3)))
        mask[s : s + w] = True
    return _events(mask)


# ---------------------------------------------------------------------------------------------
# Affiliation


def test_affiliation_reproduces_the_published_example():
    pred = np.array([0, 0, 0, 0, 1, 0, 0, 0, 1, 0])
    true = np.array([0, 0, 0, 1, 0, 0, 0, 1, 1, 1])
    assert _events(pred) == [(4, 5), (8, 9)] and _events(true) == [(3, 4), (7, 10)]
    precision, recall = affiliation_pr(_events(pred), _events(true), 10)
    assert round(precision, 2) == 0.82 and round(recall, 2) == 0.84
    # Exact values: zone precisions (7/11, 1), zone recalls (9/11, 47/54).
    assert precision == pytest.approx(9 / 11, abs=1e-12)
    assert recall == pytest.approx(1003 / 1188, abs=1e-12)


def test_affiliation_published_example_matches_the_brute_force():
    p, r = brute_affiliation([(4, 5), (8, 9)], [(3, 4), (7, 10)], 10)
    assert p == pytest.approx(9 / 11, abs=1e-3) and r == pytest.approx(1003 / 1188, abs=1e-3)


def test_affiliation_matches_brute_force_on_random_cases():
    rng = np.random.default_rng(20220814)
    worst = 0.0
    for _ in range(150):
        length = int(rng.integers(5, 40))
        true = _random_intervals(rng, length, 4)
        pred = _random_intervals(rng, length, 5)
        got = affiliation_pr(pred, true, length)
        want = brute_affiliation(pred, true, length)
        worst = max(worst, abs(got[0] - want[0]), abs(got[1] - want[1]))
        assert got == pytest.approx(want, abs=1e-3), (pred, true, length)
    assert worst > 0  # the brute force really is a different computation


def test_affiliation_of_a_perfect_prediction_is_one():
    true = [(3, 9), (20, 21), (40, 55)]
    assert affiliation_pr(true, true, 60) == (1.0, 1.0)


def test_affiliation_of_a_far_prediction_is_low_and_near_is_high():
    true = [(100, 110)]
    near = affiliation_pr([(111, 121)], true, 1000)
    far = affiliation_pr([(900, 910)], true, 1000)
    assert near[0] > 0.95 and near[1] > 0.95
    assert far[0] < 0.25 and far[1] < 0.25


def test_affiliation_of_a_random_prediction_is_about_one_half():
    # Precision of a point drawn uniformly in the zone has survival value ~ U(0, 1): mean 1/2.
    rng = np.random.default_rng(1)
    true = [(480, 520)]
    precisions = [affiliation_pr([(x, x + 1)], true, 1000)[0] for x in rng.integers(0, 1000, 400)]
    assert np.mean(precisions) == pytest.approx(0.5, abs=0.05)


def test_affiliation_equals_the_score_of_the_mask_events():
    # Overlapping / touching / unsorted intervals score like the binary mask they cover.
    pred = [(30, 40), (5, 12), (12, 15), (35, 50)]
    true = [(8, 10), (44, 47), (10, 11)]
    length = 60
    from_mask = affiliation_pr(
        _events(intervals_to_mask(pred, length)), _events(intervals_to_mask(true, length)), length
    )
    assert affiliation_pr(pred, true, length) == pytest.approx(from_mask, abs=1e-12)


def test_affiliation_empty_prediction_scores_zero_and_empty_truth_raises():
    assert affiliation_pr([], [(3, 5)], 10) == (0.0, 0.0)
    with pytest.raises(ValueError, match="at least one ground-truth event"):
        affiliation_pr([(3, 5)], [], 10)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), length=st.integers(2, 300))
def test_affiliation_is_a_probability(data, length):
    def intervals():
        starts = data.draw(st.lists(st.integers(0, length - 1), min_size=1, max_size=6))
        return [(s, min(length, s + data.draw(st.integers(1, length)))) for s in starts]

    p, r = affiliation_pr(intervals(), intervals(), length)
    assert 0.0 <= p <= 1.0 and 0.0 <= r <= 1.0


# ---------------------------------------------------------------------------------------------
# Point-wise metrics, masks and validation


def test_point_prf_matches_the_mask_computation_on_random_cases():
    rng = np.random.default_rng(7)
    for _ in range(200):
        length = int(rng.integers(5, 200))
        pred, true = _random_intervals(rng, length, 5), _random_intervals(rng, length, 5)
        pm, tm = intervals_to_mask(pred, length), intervals_to_mask(true, length)
        tp = np.sum(pm & tm)
        want_p, want_r = tp / pm.sum(), tp / tm.sum()
        want_f1 = 0.0 if tp == 0 else 2 * want_p * want_r / (want_p + want_r)
        assert point_prf(pred, true, length) == pytest.approx((want_p, want_r, want_f1), abs=1e-12)


def test_point_prf_published_example():
    assert point_prf([(4, 5), (8, 9)], [(3, 4), (7, 10)], 10) == pytest.approx((0.5, 0.25, 1 / 3))


def test_intervals_to_mask():
    mask = intervals_to_mask([(1, 3), (8, 10)], 10)
    assert mask.dtype == bool and mask.shape == (10,)
    assert mask.astype(int).tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 1, 1]
    assert not intervals_to_mask([], 4).any()


@pytest.mark.parametrize(
    "intervals, match",
    [
        ([(5, 5)], "outside"),
        ([(-1, 3)], "outside"),
        ([(3, 11)], "outside"),
        ([(1, 2, 3)], "pairs"),
        ([(1.5, 3)], "integer"),
        (None, "None"),
    ],
)
def test_metrics_reject_bad_intervals(intervals, match):
    with pytest.raises(ValueError, match=match):
        point_prf(intervals, [(1, 2)], 10)


def test_metrics_reject_a_bad_length():
    with pytest.raises(ValueError, match="length"):
        intervals_to_mask([(1, 2)], 0)


# ---------------------------------------------------------------------------------------------
# Localization conventions (method.md section 4)


def test_localization_both_empty_is_all_ones():
    assert localization_scores([], [], 100) == dict.fromkeys(["P", "R", "F1", "AffP", "AffR", "AffF1"], 1.0)


@pytest.mark.parametrize("pred, true", [(None, []), (None, [(3, 5)]), ([], [(3, 5)]), ([(3, 5)], [])])
def test_localization_missing_answer_or_one_empty_side_is_all_zeros(pred, true):
    assert set(localization_scores(pred, true, 100).values()) == {0.0}


def test_localization_scores_combine_point_and_affiliation():
    scores = localization_scores([(4, 5), (8, 9)], [(3, 4), (7, 10)], 10)
    p, r = 9 / 11, 1003 / 1188
    assert scores == pytest.approx(
        {"P": 0.5, "R": 0.25, "F1": 1 / 3, "AffP": p, "AffR": r, "AffF1": 2 * p * r / (p + r)}
    )


def test_localization_f1_is_zero_when_nothing_overlaps():
    scores = localization_scores([(0, 2)], [(90, 100)], 100)
    assert scores["P"] == scores["R"] == scores["F1"] == 0.0
    assert 0.0 < scores["AffF1"] < 0.5


# ---------------------------------------------------------------------------------------------
# Accuracy and bootstrap


def test_accuracy_counts_none_as_wrong_and_normalizes_labels():
    assert accuracy(["trend", None, "global", "normal"], ["trend", "trend", "global point", "seasonal"]) == 0.5
    with pytest.raises(ValueError, match="same|for"):
        accuracy(["trend"], [])
    with pytest.raises(ValueError, match="empty"):
        accuracy([], [])
    with pytest.raises(ValueError, match="not one of"):
        accuracy(["trend"], ["spiky"])


def test_bootstrap_ci_is_deterministic_and_brackets_the_mean():
    values = np.random.default_rng(3).normal(0.6, 0.2, size=300)
    first = bootstrap_ci(values, seed=5)
    assert first == bootstrap_ci(values, seed=5)
    assert first != bootstrap_ci(values, seed=6)
    mean, low, high = first
    assert mean == pytest.approx(values.mean())
    assert low < mean < high


def test_bootstrap_ci_agrees_with_scipy_percentile_bootstrap():
    values = np.random.default_rng(11).exponential(1.0, size=200)
    _, low, high = bootstrap_ci(values, n_boot=20000, alpha=0.1, seed=0)
    ref = stats.bootstrap(
        (values,), np.mean, n_resamples=20000, confidence_level=0.9, method="percentile", random_state=0
    ).confidence_interval
    se = values.std() / np.sqrt(values.size)
    assert low == pytest.approx(ref.low, abs=0.1 * se) and high == pytest.approx(ref.high, abs=0.1 * se)
    # The normal-theory interval is close too for n = 200.
    assert low == pytest.approx(values.mean() - 1.645 * se, abs=0.25 * se)


def test_bootstrap_ci_chunking_gives_the_same_distribution(monkeypatch):
    values = np.arange(50, dtype=float)
    whole = bootstrap_ci(values, n_boot=500, seed=1)
    monkeypatch.setattr(metrics, "_BOOT_CHUNK", 120)  # 2 resamples per chunk
    chunked = bootstrap_ci(values, n_boot=500, seed=1)
    assert chunked == pytest.approx(whole, abs=1.0)  # same statistics, different streams allowed


def test_bootstrap_ci_of_constant_values_is_a_point():
    assert bootstrap_ci([0.7] * 20) == pytest.approx((0.7, 0.7, 0.7))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"values": []}, "at least one"),
        ({"values": [1.0, np.nan]}, "finite"),
        ({"values": [1.0], "n_boot": 0}, "n_boot"),
        ({"values": [1.0], "alpha": 1.5}, "alpha"),
    ],
)
def test_bootstrap_ci_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(**kwargs)

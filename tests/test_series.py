"""Synthetic series generators: reproducibility, interval invariants, labels, anomaly content, io."""

from __future__ import annotations

import hashlib
import math
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomseer.series import (
    ALL_FAMILIES,
    FAMILIES,
    FAMILY_PARAMS,
    LABELS,
    VTA_PARAMS,
    VTA_TYPES,
    Sample,
    generate,
    load_samples,
    save_samples,
)
from anomseer.series.anomllm import Placement, expected_normal_share, TrendParams, place_intervals, stable_family_key
from anomseer.series.vta import _local_std, mask_to_intervals

# Expected labels written out independently of taxonomy.py.
EXPECTED_LABEL = {
    "range": "global point",
    "point": "contextual point",
    "freq": "seasonal",
    "trend": "trend",
    "flat-trend": "trend",
    "noisy-point": "contextual point",
    "noisy-freq": "seasonal",
    "noisy-trend": "trend",
    "vta-global": "global point",
    "vta-contextual": "contextual point",
    "vta-seasonal": "seasonal",
    "vta-trend": "trend",
    "vta-shapelet": "shapelet",
}


def _bytes(samples):
    return b"".join(s.values.tobytes() + repr(s.intervals).encode() for s in samples)


def _mask(sample):
    mask = np.zeros(sample.length, dtype=bool)
    for start, end in sample.intervals:
        mask[start:end] = True
    return mask


def _check_invariants(sample: Sample, family: str, length: int):
    assert sample.family == family
    assert sample.values.dtype == np.float64 and sample.values.shape == (length,)
    assert np.all(np.isfinite(sample.values))
    previous_end = 0
    for start, end in sample.intervals:
        assert type(start) is int and type(end) is int
        assert previous_end <= start < end <= length
        previous_end = end
    if family in FAMILIES:
        assert len(sample.intervals) <= 8
    expected = EXPECTED_LABEL[family] if sample.intervals else "normal"
    assert sample.label == expected and sample.label in LABELS


# ---- API surface ---------------------------------------------------------------------------


def test_family_lists():
    assert FAMILIES == ("range", "point", "freq", "trend", "flat-trend", "noisy-point", "noisy-freq", "noisy-trend")
    assert VTA_TYPES == ("vta-global", "vta-contextual", "vta-seasonal", "vta-trend", "vta-shapelet")
    assert set(ALL_FAMILIES) == set(EXPECTED_LABEL)


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_default_lengths_and_label_mapping(family):
    samples = generate(family, 40, seed=5)
    length = 400 if family.startswith("vta-") else 1000
    for s in samples:
        _check_invariants(s, family, length)
        assert s.uid == ""
    # every family produces at least one anomalous series, so its anomaly label is exercised
    assert any(s.label == EXPECTED_LABEL[family] for s in samples)


def test_unknown_family_lists_known_ones():
    with pytest.raises(ValueError, match="unknown family 'spikes'.*noisy-trend.*vta-shapelet"):
        generate("spikes", 3, 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": -1, "seed": 0}, "n must be >= 0"),
        ({"n": 2.5, "seed": 0}, "n must be an integer"),
        ({"n": 2, "seed": -3}, "seed must be a non-negative integer"),
        ({"n": 2, "seed": True}, "seed must be an integer"),
        ({"n": 2, "seed": 0, "length": 249}, r"length 249 is too small.*>= 250"),
    ],
)
def test_bad_requests(kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate("point", **kwargs)


def test_vta_length_too_small():
    with pytest.raises(ValueError, match=r"length 99 is too small.*>= 100"):
        generate("vta-trend", 1, 0, length=99)


def test_zero_samples_and_numpy_ints():
    assert generate("freq", 0, 1) == []
    assert _bytes(generate("freq", np.int64(3), np.int32(7))) == _bytes(generate("freq", 3, 7))


def test_params_tables_validate_and_reject_bad_values():
    for params in FAMILY_PARAMS.values():
        params.validate()
    VTA_PARAMS.validate()
    with pytest.raises(ValueError, match="flip_prob"):
        TrendParams(flip_prob=1.5).validate()
    with pytest.raises(ValueError, match="gap_min"):
        Placement(100.0, 0, 10.0, 5).validate()
    assert FAMILY_PARAMS["noisy-point"].noise_std == 0.08 and FAMILY_PARAMS["point"].noise_std == 0.0


# ---- reproducibility -----------------------------------------------------------------------


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_same_seed_same_bytes_other_seed_differs(family):
    a = generate(family, 6, seed=11)
    b = generate(family, 6, seed=11)
    c = generate(family, 6, seed=12)
    assert _bytes(a) == _bytes(b)
    assert [s.label for s in a] == [s.label for s in b]
    assert _bytes(a) != _bytes(c)


def test_order_independent_and_global_rng_untouched():
    np.random.seed(123)
    state = np.random.get_state()
    first = [generate(f, 3, seed=1) for f in ALL_FAMILIES]
    np.random.seed(999)  # a different global state must not matter
    second = [generate(f, 3, seed=1) for f in reversed(ALL_FAMILIES)][::-1]
    assert [_bytes(x) for x in first] == [_bytes(x) for x in second]
    np.random.seed(123)
    generate("range", 5, 0)
    after = np.random.get_state()
    assert state[0] == after[0] and np.array_equal(state[1], after[1]) and state[2:] == after[2:]


def test_sample_i_independent_of_n_and_families_differ():
    assert _bytes(generate("range", 20, 3)[:7]) == _bytes(generate("range", 7, 3))
    assert _bytes(generate("vta-global", 9, 3)[:4]) == _bytes(generate("vta-global", 4, 3))
    # noisy-point is its own stream, not point plus noise with shared draws
    assert not np.array_equal(generate("point", 1, 0)[0].values, generate("noisy-point", 1, 0)[0].values)


def test_pinned_output_guards_against_silent_dataset_changes():
    # Changing the draw order or a constant changes every downstream artifact: make it deliberate.
    digest = hashlib.sha256(b"".join(s.values.tobytes() for s in generate("range", 5, 0))).hexdigest()
    assert digest == "4ee4dc1f86a000a323ae1c8262bd719fcdaf5c4906023d1d0a8382a26396eea8"
    assert [s.intervals for s in generate("freq", 3, 0)] == [
        ((149, 156), (674, 708), (809, 861)),
        ((149, 156),),
        ((211, 224), (253, 260), (705, 712)),
    ]
    assert [s.intervals for s in generate("vta-seasonal", 2, 0)] == [((303, 313), (328, 338)), ((258, 268), (338, 348))]


def test_family_key_is_stable_across_processes():
    # a pinned value: Python's salted hash() would change from run to run
    assert stable_family_key("range") == int.from_bytes(hashlib.blake2b(b"range", digest_size=8).digest(), "little")
    assert stable_family_key("range") != stable_family_key("point")


# ---- interval placement --------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    family=st.sampled_from(ALL_FAMILIES),
    length=st.sampled_from([None, 300, 777, 1200]),
)
def test_invariants_hold_for_any_seed(seed, family, length):
    samples = generate(family, 3, seed, length)
    expected_length = length or (400 if family.startswith("vta-") else 1000)
    for s in samples:
        _check_invariants(s, family, expected_length)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    gap_mean=st.floats(1.0, 2000.0),
    gap_min=st.integers(1, 300),
    len_mean=st.floats(1.0, 300.0),
    len_min=st.integers(1, 60),
    length=st.integers(1, 3000),
)
def test_place_intervals_invariants(seed, gap_mean, gap_min, len_mean, len_min, length):
    placement = Placement(gap_mean, gap_min, len_mean, len_min)
    intervals = place_intervals(np.random.default_rng(seed), length, placement)
    assert len(intervals) <= 8
    previous_end = 0
    for start, end in intervals:
        assert start - previous_end >= gap_min
        assert start < end <= length
        assert end - start >= min(len_min, length - start)
        previous_end = end


def test_place_intervals_follows_exponential_draws():
    # Reimplement the rule on an identical stream: gap, then length, floored, with minima.
    placement = Placement(450.0, 20, 15.0, 7)
    for seed in range(50):
        got = place_intervals(np.random.default_rng(seed), 1000, placement)
        rng = np.random.default_rng(seed)
        want, location = [], 0
        while len(want) < 8:
            start = location + math.floor(max(rng.exponential(450.0), 20))
            if start >= 1000:
                break
            end = min(1000, start + math.floor(max(rng.exponential(15.0), 7)))
            want.append((start, end))
            location = end
        assert got == want


@pytest.mark.parametrize("family", FAMILIES)
def test_share_of_normal_series_matches_exponential_gap(family):
    samples = generate(family, 400, seed=3407)
    share = np.mean([not s.intervals for s in samples])
    gap_mean = FAMILY_PARAMS[family].placement.gap_mean
    expected = math.exp(-1000 / gap_mean)  # the first gap alone reaches the end
    assert expected_normal_share(family) == pytest.approx(expected)
    assert abs(share - expected) < 0.08
    # method.md: trend ~57%, point ~29%, range ~30%
    method = {"trend": 0.57, "flat-trend": 0.57, "noisy-trend": 0.57, "point": 0.29, "noisy-point": 0.29, "range": 0.30}
    if family in method:
        assert abs(share - method[family]) < 0.1


def test_share_is_kept_at_other_lengths():
    share = np.mean([not s.intervals for s in generate("trend", 400, seed=1, length=500)])
    assert abs(share - math.exp(-1000 / 1700)) < 0.08


# ---- anomaly content -----------------------------------------------------------------------


def test_range_anomalies_are_large_offsets():
    inside, outside = [], []
    for s in generate("range", 200, 2):
        mask = _mask(s)
        outside.append(s.values[~mask])
        for start, end in s.intervals:
            segment = s.values[start:end]
            # one sign per interval: |N(0, .1) +/- U(.5, .8)| is above 0.5 - 4 sigma
            assert abs(segment.mean()) > 0.45
            assert np.all(np.sign(segment) == np.sign(segment.mean()))
            inside.append(np.abs(segment))
    outside = np.concatenate(outside)
    assert abs(outside.std() - 0.1) < 0.01 and abs(outside.mean()) < 0.01
    inside = np.concatenate(inside)
    assert 0.6 < inside.mean() < 0.7  # mean of U(0.5, 0.8) is 0.65


def test_point_replaces_segments_with_noise():
    t = np.arange(1000)
    normal = np.sin(2 * np.pi * 0.03 * t)
    inside = []
    for s in generate("point", 100, 4):
        mask = _mask(s)
        np.testing.assert_allclose(s.values[~mask], normal[~mask], rtol=0, atol=1e-12)
        for start, end in s.intervals:
            assert not np.allclose(s.values[start:end], normal[start:end], atol=0.05)
        inside.append(s.values[mask])
    inside = np.concatenate(inside)
    assert abs(inside.std() - 0.5) < 0.05 and abs(inside.mean()) < 0.05


def _freq_reference(intervals, multipliers, length=1000, f0=0.03):
    f = np.full(length, f0)
    for (start, end), m in zip(intervals, multipliers):
        f[start:end] = f0 * m
    return np.sin(2 * np.pi * np.cumsum(f))


def test_freq_is_phase_continuous_with_3x_or_third_frequency():
    seen = set()
    for s in generate("freq", 60, 6):
        # Recover each interval's multiplier by trying both; exactly one must reproduce the series.
        multipliers = []
        for k in range(len(s.intervals)):
            matches = [
                m
                for m in (3.0, 1 / 3)
                if np.allclose(
                    _freq_reference(s.intervals[: k + 1], multipliers + [m])[: s.intervals[k][1]],
                    s.values[: s.intervals[k][1]],
                    atol=1e-9,
                )
            ]
            assert len(matches) == 1
            multipliers += matches
        np.testing.assert_allclose(s.values, _freq_reference(s.intervals, multipliers), atol=1e-9)
        seen.update(multipliers)
        # phase-continuous: no step larger than the fastest sine can move in one sample
        assert np.abs(np.diff(s.values)).max() <= 2 * np.pi * 0.09 + 1e-9
    assert seen == {3.0, 1 / 3}


def _trend_fit(s, frequency=0.02):
    """Least-squares fit of a*sin + continuous piecewise-linear trend with knots at the intervals."""
    t = np.arange(s.length, dtype=float)
    knots = sorted({k for pair in s.intervals for k in pair if 0 < k < s.length})
    columns = [np.ones_like(t), np.sin(2 * np.pi * frequency * t), t] + [np.maximum(t - k, 0) for k in knots]
    design = np.stack(columns, axis=1)
    coef, *_ = np.linalg.lstsq(design, s.values, rcond=None)
    residual = s.values - design @ coef
    amplitude = coef[1]
    slopes = np.cumsum(coef[2:])  # slope on each piece, piece boundaries at the knots
    return amplitude, knots, slopes, residual


@pytest.mark.parametrize("family, low, high, may_flip", [("trend", 6.0, 20.0, True), ("flat-trend", 4.5, 6.0, False)])
def test_trend_slopes_inside_intervals(family, low, high, may_flip):
    flipped = False
    for s in generate(family, 80, 8):
        assert s.values.min() == -1.0 and s.values.max() == 1.0
        amplitude, knots, slopes, residual = _trend_fit(s)
        assert np.abs(residual).max() < 1e-9  # the model is exact
        # In scaled units, the sine amplitude a corresponds to 1 and the normal slope to 3 / L.
        normal_slope = slopes[0] / amplitude * s.length
        assert normal_slope == pytest.approx(3.0, rel=1e-6)
        piece_starts = [0] + knots
        for (start, end) in s.intervals:
            # the ramp covers samples start..end (the trend's step from t to t+1 is anomalous)
            piece = piece_starts.index(start)
            anomalous = slopes[piece] / amplitude * s.length
            assert low - 1e-6 <= abs(anomalous) <= high + 1e-6
            flipped |= anomalous < 0
    assert flipped == may_flip


@pytest.mark.parametrize("family, base", [("noisy-point", "point"), ("noisy-freq", "freq"), ("noisy-trend", "trend")])
def test_noisy_families_add_noise_to_the_base(family, base):
    t = np.arange(1000)
    residuals = []
    for s in generate(family, 40, 9):
        if family == "noisy-trend":
            if s.intervals:
                continue  # normal series: a*sin + linear + b exactly, plus noise
            design = np.stack([np.ones(1000), np.sin(2 * np.pi * 0.02 * t), t], axis=1)
            coef, *_ = np.linalg.lstsq(design, s.values, rcond=None)
            residuals.append(s.values - design @ coef)
        else:
            first = s.intervals[0][0] if s.intervals else 1000
            clean = np.sin(2 * np.pi * 0.03 * (t + (1 if base == "freq" else 0)))
            residuals.append((s.values - clean)[:first])
    residual = np.concatenate(residuals)
    assert abs(residual.std() - 0.08) < 0.008
    assert abs(residual.mean()) < 0.01
    assert all(s.label == EXPECTED_LABEL[base] or s.label == "normal" for s in generate(family, 40, 9))


# ---- VisualTimeAnomaly types ---------------------------------------------------------------

T400 = np.arange(400)
BASE400 = 1.5 * np.sin(2 * np.pi * 0.04 * T400)  # noise-free base; the series adds N(0, 0.075)


@pytest.mark.parametrize("vta_type", VTA_TYPES)
def test_vta_types_always_have_anomalies_with_the_right_label(vta_type):
    for s in generate(vta_type, 30, 10):
        assert s.intervals, "every VisualTimeAnomaly series has an anomaly"
        assert s.label == EXPECTED_LABEL[vta_type]
        residual = (s.values - BASE400)[~_mask(s)]
        if vta_type != "vta-trend":  # trend windows shift the level after them
            assert residual.std() < 0.1


def test_vta_global_points_at_or_beyond_extremes_contextual_inside():
    for s in generate("vta-global", 30, 11):
        mask = _mask(s)
        normal = s.values[~mask]
        outliers = s.values[mask]
        assert np.all((outliers >= normal.max()) | (outliers <= normal.min()))
        assert 10 <= mask.sum() <= 20  # about 5% of 400 (positions may repeat)
    for s in generate("vta-contextual", 30, 11):
        mask = _mask(s)
        # pulled back inside the base range (base is 1.5 * sin + small noise)
        assert np.all(np.abs(s.values[mask]) <= np.abs(s.values[~mask]).max() + 0.3)


def test_vta_seasonal_windows_are_three_times_faster_in_every_series():
    fast = 1.5 * np.sin(2 * np.pi * 0.12 * T400)
    pooled = []
    for s in generate("vta-seasonal", 40, 12):  # the reference compounded 3x, 9x, 27x ...
        mask = _mask(s)
        assert np.abs(s.values[mask] - fast[mask]).max() < 0.5  # 9x would miss by up to 3
        pooled.append(s.values[mask] - fast[mask])
    assert abs(np.concatenate(pooled).std() - 0.075) < 0.01  # only the base noise remains


def test_vta_trend_ramps_and_level_persists():
    checked = 0
    for s in generate("vta-trend", 40, 13):
        residual = s.values - BASE400
        if len(s.intervals) != 2:
            continue  # overlapping windows merged into one interval
        level = 0.0
        for start, end in s.intervals:
            before = residual[max(0, start - 3) : start].mean() if start >= 3 else level
            assert abs(before - level) < 0.2  # the earlier shift persisted up to here
            ramp = residual[start:end] - level
            sign = np.sign(ramp[-1])
            expected = sign * 0.5 * np.arange(end - start)
            assert np.abs(ramp - expected).max() < 0.35  # ramp of slope +/-0.5, noise std 0.075
            level += expected[-1]
        after = residual[s.intervals[-1][1] :]
        if after.size >= 5:
            assert abs(after.mean() - level) < 0.15
            checked += 1
    assert checked >= 20


def test_vta_shapelet_is_a_square_like_wave():
    square = sum(1.5 / (2 * k + 1) * np.sin(2 * np.pi * 0.04 * (2 * k + 1) * T400) for k in range(20))
    for s in generate("vta-shapelet", 30, 14):
        mask = _mask(s)
        assert (s.values[mask] - square[mask]).std() < 0.1


def test_local_std_matches_numpy_on_clipped_windows():
    base = np.random.default_rng(0).normal(3.0, 2.0, 60)
    positions = np.array([0, 1, 4, 5, 30, 55, 59, 59])
    want = [base[max(0, i - 5) : min(i + 5, 60)].std() for i in positions]
    np.testing.assert_allclose(_local_std(base, positions, 5), want, rtol=1e-12, atol=1e-12)


def test_mask_to_intervals():
    assert mask_to_intervals(np.array([0, 1, 1, 0, 1], bool)) == [(1, 3), (4, 5)]
    assert mask_to_intervals(np.zeros(4, bool)) == []
    assert mask_to_intervals(np.ones(3, bool)) == [(0, 3)]


# ---- io --------------------------------------------------------------------------------------


def _with_uids(samples, prefix):
    return [Sample(s.values, s.intervals, s.label, s.family, f"{prefix}-{i:06d}") for i, s in enumerate(samples)]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.values.dtype == np.float64 and x.values.tobytes() == y.values.tobytes()
        assert (x.intervals, x.label, x.family, x.uid) == (y.intervals, y.label, y.family, y.uid)


def test_io_round_trip_mixed_families(tmp_path):
    samples = _with_uids(generate("range", 5, 1) + generate("noisy-trend", 5, 1), "train")
    path = save_samples(samples, tmp_path / "sub" / "series.npz")
    loaded = load_samples(path)
    _assert_same(samples, loaded)
    with np.load(path, allow_pickle=False) as data:
        assert data["values"].shape == (10, 1000) and data["values"].dtype == np.float64
        assert data["families"].dtype.kind == "U"
        assert data["interval_offsets"][-1] == data["interval_bounds"].shape[0]


def test_io_unequal_lengths_and_empty(tmp_path):
    samples = generate("vta-trend", 3, 1) + generate("freq", 2, 1)
    _assert_same(samples, load_samples(save_samples(samples, tmp_path / "mixed.npz")))
    assert load_samples(save_samples([], tmp_path / "empty.npz")) == []


def test_io_saves_are_byte_identical_even_at_different_times(tmp_path, monkeypatch):
    import time

    samples = _with_uids(generate("point", 20, 2), "eval")
    real_time = time.time
    save_samples(samples, tmp_path / "a.npz")
    monkeypatch.setattr(time, "time", lambda: real_time() + 86_400 * 400)
    save_samples(samples, tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.npz") as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert not list(tmp_path.glob(".*tmp*"))  # no temp file left behind


def test_io_missing_file_names_path_and_stage(tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match=r"nope\.npz.*synthetic_series"):
        load_samples(missing)


def test_io_wrong_file_names_missing_key(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, values=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="missing key 'format'"):
        load_samples(path)
    samples = generate("range", 2, 0)
    good = save_samples(samples, tmp_path / "good.npz")
    with np.load(good) as data:
        arrays = {k: data[k] for k in data.files if k != "labels"}
    np.savez(tmp_path / "nolabels.npz", **arrays)
    with pytest.raises(ValueError, match="missing key 'labels'"):
        load_samples(tmp_path / "nolabels.npz")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="garbage.npz"):
        load_samples(tmp_path / "garbage.npz")


def test_save_rejects_invalid_samples(tmp_path):
    bad = Sample(np.zeros(10), ((5, 8), (2, 3)), "trend", "trend")
    with pytest.raises(ValueError, match="not sorted"):
        save_samples([bad], tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="expected an anomseer.series.Sample"):
        save_samples([np.zeros(3)], tmp_path / "bad.npz")

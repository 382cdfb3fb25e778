"""Expert traces, their verifier, the scans behind them and the blind detector."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomseer.expert import (
    FORBIDDEN_PHRASES,
    ExpertParams,
    blind_detect,
    count_claims,
    frequency_scan,
    global_scan,
    matrix_profile,
    trace_words,
    trend_scan,
    verify_trace,
    write_trace,
)
from anomseer.expert.analyses import dominant_period, noise_share, step_share
from anomseer.series import ALL_FAMILIES, FAMILIES, LABELS, Sample, generate, normalize_label

# ---------------------------------------------------------------------------------------------
# Fixtures: real generated series of every family, anomalous and normal ones.

PER_FAMILY_ANOMALOUS = 4
PER_FAMILY_NORMAL = 2


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    picked = []
    for family in ALL_FAMILIES:
        pool = generate(family, 30, seed=3407)
        anomalous = [s for s in pool if s.intervals][:PER_FAMILY_ANOMALOUS]
        normal = [s for s in pool if not s.intervals][:PER_FAMILY_NORMAL]
        assert anomalous, family
        if family in FAMILIES:
            assert normal, f"{family}: expected some normal series among 30"
        picked += anomalous + normal
    return picked


@pytest.fixture(scope="module")
def traces(samples) -> list[str]:
    return [write_trace(s) for s in samples]


def _sine(length=1000, period=33.3, amplitude=1.0):
    return amplitude * np.sin(2 * np.pi * np.arange(length) / period)


# ---------------------------------------------------------------------------------------------
# Traces.


def test_every_generated_trace_verifies(samples, traces):
    for sample, trace in zip(samples, traces):
        assert verify_trace(trace, sample.values) == [], (sample.family, trace)
        n, ok = count_claims(trace, sample.values)
        assert n >= 1 and ok == n


def test_covers_every_label(samples):
    assert {s.label for s in samples} == set(LABELS)


def test_trace_structure_and_conclusion_state_the_truth(samples, traces):
    for sample, trace in zip(samples, traces):
        obs, con = trace.index("Observation:"), trace.index("Conclusion:")
        rea = trace.index("Reasoning & Validation:")
        assert obs == 0 < rea < con
        conclusion = trace[con:]
        stated = [tuple(map(int, pair)) for pair in re.findall(r"\[(\d+), (\d+)\]", conclusion)]
        assert stated == list(sample.intervals)
        label = conclusion.removeprefix("Conclusion: ").split(" at ")[0].split(",")[0]
        assert normalize_label(label) == sample.label


def test_traces_speak_as_observations(traces):
    for trace in traces:
        lowered = trace.lower()
        for phrase in FORBIDDEN_PHRASES:
            assert phrase not in lowered, (phrase, trace)
        assert "<" not in trace and ">" not in trace  # no tags: the completion format adds them


def test_traces_are_deterministic_and_short(samples, traces):
    params = ExpertParams()
    for sample, trace in list(zip(samples, traces))[::5]:
        again = Sample(values=sample.values.copy(), intervals=sample.intervals, label=sample.label, family="x")
        assert write_trace(again) == trace
    for trace in traces:
        assert trace_words(trace) <= params.max_trace_words, trace


def test_noisy_series_say_they_are_smoothed(samples, traces):
    for sample, trace in zip(samples, traces):
        if sample.family.startswith("noisy-"):
            assert "smoothed first" in trace
        if sample.family in ("point", "freq", "trend", "flat-trend") or sample.family.startswith("vta-"):
            assert "smoothed first" not in trace, sample.family


def test_evidence_matches_the_type(samples, traces):
    expected = {
        "global point": "max |z|",
        "trend": "slope",
        "seasonal": "period",
        "contextual point": "discord z",
        "shapelet": "discord z",
    }
    for sample, trace in zip(samples, traces):
        reasoning = trace[trace.index("Reasoning & Validation:") : trace.index("Conclusion:")]
        if sample.label == "normal":
            assert "Local scan:" in trace and not re.search(r"\[\d+, \d+\]", reasoning)
        else:
            assert re.search(r"\[\d+, \d+\] " + re.escape(expected[sample.label]), reasoning), trace


def test_spike_trace_quotes_the_recomputed_z():
    values = _sine(period=40.0)
    values[500] = 9.0
    z = (values - values.mean()) / values.std()
    trace = write_trace(Sample(values=values, intervals=((500, 501),), label="global point", family="range"))
    assert f"max |z| {abs(z[500]):.2f} at 500, above 5" in trace
    assert f"[500, 501] max |z| {abs(z[500]):.2f}" in trace


def _bump(token: str) -> str:
    """Change the last digit of a number (9 -> 8 so the width never changes)."""
    last = token[-1]
    return token[:-1] + ("8" if last == "9" else str(int(last) + 1))


def test_tampering_with_any_statistic_is_detected(samples, traces):
    # One trace per label, every number outside the Conclusion's interval list changed in turn.
    by_label = {}
    for sample, trace in zip(samples, traces):
        by_label.setdefault(sample.label, (sample, trace))
    checked = 0
    for sample, trace in by_label.values():
        body_end = trace.index("Conclusion:")
        for m in re.finditer(r"\d+(?:\.\d+)?", trace[:body_end]):
            tampered = trace[: m.start()] + _bump(m.group(0)) + trace[m.end() :]
            assert verify_trace(tampered, sample.values), (m.group(0), tampered)
            checked += 1
    assert checked > 40


def test_tampering_with_words_and_conclusion_is_detected(samples, traces):
    sample, trace = next((s, t) for s, t in zip(samples, traces) if s.label == "contextual point")
    side, other_side = (", above 3.5", ", below 3.5") if ", above 3.5" in trace else (", below 3.5", ", above 3.5")
    flipped = trace.replace(side, other_side)
    assert flipped != trace and verify_trace(flipped, sample.values)
    a, b = sample.intervals[0]
    moved = trace.replace(f"at [[{a}, {b}]", f"at [[{a}, {b + 1}]")
    assert moved != trace and any("not in the Conclusion" in p for p in verify_trace(moved, sample.values))
    assert verify_trace(trace.replace("Conclusion: contextual point", "Conclusion: maybe"), sample.values)
    # A trace checked against another series fails.
    other = next(s for s in samples if s.family == "freq")
    assert verify_trace(trace, other.values)


def test_side_of_the_bound_is_judged_unrounded():
    # Regression: this series' top discord z is 3.5004, printed "3.50" yet truly above 3.5.
    sample = generate("point", 69, seed=42)[68]
    trace = write_trace(sample)
    assert "top discord z 3.50 at 184, above 3.5" in trace
    assert verify_trace(trace, sample.values) == []
    assert verify_trace(trace.replace("above 3.5", "below 3.5"), sample.values)


def test_verifier_judges_at_the_written_precision(samples, traces):
    sample, trace = next((s, t) for s, t in zip(samples, traces) if s.label == "global point")
    m = re.search(r"max \|z\| (\d+\.\d\d) at", trace)
    coarse = trace.replace(m.group(0), f"max |z| {float(m.group(1)):.1f} at")
    assert verify_trace(coarse, sample.values) == []


def test_write_trace_rejects_bad_input():
    good = _sine()
    bad_values = {
        "nan": np.where(np.arange(1000) == 3, np.nan, good),
        "inf": np.where(np.arange(1000) == 3, np.inf, good),
        "empty": np.zeros(0),
        "constant": np.full(1000, 2.0),
        "short": good[:50],
    }
    for name, values in bad_values.items():
        with pytest.raises(ValueError):
            write_trace(Sample(values=values, intervals=(), label="normal", family="point"))
    with pytest.raises(ValueError, match="normal iff no interval"):
        write_trace(Sample(values=good, intervals=(), label="trend", family="trend"))
    with pytest.raises(ValueError, match="sorted, disjoint"):
        write_trace(Sample(values=good, intervals=((10, 5),), label="trend", family="trend"))
    with pytest.raises(ValueError, match="NaN/inf"):
        verify_trace("Observation: x", bad_values["nan"])


# ---------------------------------------------------------------------------------------------
# count_claims on model-like text.


def test_count_claims_on_partly_garbled_text(samples, traces):
    sample, trace = next((s, t) for s, t in zip(samples, traces) if s.label == "seasonal")
    n, ok = count_claims(trace, sample.values)
    assert n == ok >= 3
    garbled = trace.replace("period", "perlod", 1)  # one claim no longer parses
    assert count_claims(garbled, sample.values) == (n - 1, n - 1)
    wrong = re.sub(r"elsewhere period (\d+)", lambda m: f"elsewhere period {int(m.group(1)) + 7}", trace)
    assert count_claims(wrong, sample.values) == (n, n - 1)
    assert count_claims(trace[: len(trace) // 2], sample.values)[0] < n
    assert count_claims("", sample.values) == (0, 0)
    assert count_claims(None, sample.values) == (0, 0)
    assert count_claims(trace, np.full(1000, np.nan)) == (n, 0)  # unscannable series: nothing holds
    model_like = (
        "<think>Global scan: max |z| 99.00 at 12, above 5. [0, 2000] slope 0.1; [5, 3] period 4.0; "
        "elsewhere slope x</think>"
    )
    n_model, ok_model = count_claims(model_like, sample.values)
    assert (n_model, ok_model) == (3, 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("0123456789.,[]|z- abcdeglopstwxyGOSLRC:()\n")), max_size=300))
def test_count_claims_never_raises(text):
    values = _sine(length=200, period=25.0)
    n, ok = count_claims("Global scan: max |z| 1.41 at 6, below 5. " + text, values)
    assert 0 <= ok <= n and n >= 1


# ---------------------------------------------------------------------------------------------
# Scans against independent references.


def _naive_profile(x, m):
    n, exclusion = x.size - m + 1, int(np.ceil(m / 4))
    subs = [(x[i : i + m] - x[i : i + m].mean()) for i in range(n)]
    stds = [s.std() for s in subs]
    out = np.full(n, np.inf)
    for i in range(n):
        for j in range(n):
            if abs(i - j) <= exclusion:
                continue
            if stds[i] == 0 or stds[j] == 0:
                d = 0.0 if stds[i] == stds[j] == 0 else np.sqrt(m)
            else:
                d = np.linalg.norm(subs[i] / stds[i] - subs[j] / stds[j])
            out[i] = min(out[i], d)
    return out


def test_matrix_profile_matches_brute_force():
    rng = np.random.default_rng(0)
    x = rng.normal(size=140).cumsum()
    x[60:80] = 3.0  # constant subsequences follow stumpy's convention
    np.testing.assert_allclose(matrix_profile(x, 12), _naive_profile(x, 12), atol=1e-9)


@pytest.mark.slow
def test_matrix_profile_matches_stumpy():
    """stumpy JIT-compiles for 45-100 s on a shared 2-core machine, hence slow."""
    x = _sine(period=33.3) + np.random.default_rng(1).normal(0, 0.05, 1000)
    np.testing.assert_allclose(matrix_profile(x, 50, "stumpy"), matrix_profile(x, 50, "numpy"), atol=1e-8)


def test_dominant_period_and_frequency_scan():
    assert dominant_period(_sine(period=25.0)[:400], 4096) == pytest.approx(25.0, rel=0.01)
    x = _sine(period=33.3)
    assert frequency_scan(x).std == 0.0 and frequency_scan(x).skipped
    fast = x.copy()
    t = np.arange(600, 700)
    fast[600:700] = np.sin(2 * np.pi * t / 11.1)
    scan = frequency_scan(fast)
    assert not scan.skipped and scan.flagged.any()
    assert any(a <= 650 < b for a, b in scan.events)


def test_global_scan_spike_and_range_check():
    x = np.random.default_rng(2).normal(0, 0.1, 1000)
    x[400:410] += 0.8  # z about 7 inside: one event covering the shifted run
    scan = global_scan(x)
    assert scan.max_abs_z > 5 and 400 <= scan.argmax < 410
    assert any(a <= 400 and 409 <= b for a, b in scan.events)
    assert global_scan(_sine()).events == ()


def test_trend_scan_flags_a_steep_ramp_only():
    x = _sine(length=400, period=25.0, amplitude=1.5)
    assert trend_scan(x).n_flags == 0  # a sine's gradient never leaves sqrt(2) std
    ramped = x.copy()
    ramped[200:210] += 3.0 * np.arange(10)  # slope 3/sample: the gradient leaves 3 std
    ramped[210:] += 27.0
    scan = trend_scan(ramped)
    assert scan.n_flags > 0 and all(180 <= a and b <= 230 for a, b in scan.events)


def test_noise_share_separates_noisy_from_clean():
    clean = _sine()
    noisy = clean + np.random.default_rng(3).normal(0, 0.08, 1000)
    threshold = ExpertParams().noise_share_threshold
    assert noise_share(clean) < threshold < noise_share(noisy)


def test_step_share_of_square_vs_sine():
    t = np.arange(50)
    square = np.sign(np.sin(2 * np.pi * t / 40 + 0.3))
    assert step_share(square, 2) > 0.9 > 0.3 > step_share(np.sin(2 * np.pi * t / 40), 2)


# ---------------------------------------------------------------------------------------------
# Blind detector.


def test_blind_detect_finds_a_big_spike():
    values = _sine(period=40.0) + np.random.default_rng(4).normal(0, 0.02, 1000)
    values[612] = 8.0
    intervals, label = blind_detect(values)
    assert label == "global point"
    assert any(a <= 612 < b for a, b in intervals) and all(b - a < 20 for a, b in intervals)


def test_blind_detect_clean_sine_is_normal():
    assert blind_detect(_sine(period=33.3)) == ([], "normal")
    assert blind_detect(np.full(500, 1.5)) == ([], "normal")  # constant: documented choice


def test_blind_detect_returns_valid_answers(samples):
    for sample in samples[::2]:
        intervals, label = blind_detect(sample.values)
        assert label in LABELS
        assert (label == "normal") == (intervals == [])
        previous = 0
        for a, b in intervals:
            assert isinstance(a, int) and isinstance(b, int)
            assert previous <= a < b <= sample.length
            previous = b


def test_blind_detect_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN/inf"):
        blind_detect(np.array([0.0, np.nan] * 100))
    with pytest.raises(ValueError, match="empty"):
        blind_detect([])
    with pytest.raises(ValueError, match="too short"):
        blind_detect(np.arange(20.0))
    with pytest.raises(ValueError, match="1-D"):
        blind_detect(np.zeros((10, 20)))


# ---------------------------------------------------------------------------------------------
# Parameters.


@pytest.mark.parametrize(
    "field, value",
    [("global_z", 0.0), ("range_z", 9.0), ("trend_window", 20), ("freq_step", 0), ("mp_window", 2),
     ("mp_backend", "faiss"), ("denoise_polyorder", 31), ("shapelet_step_share", 1.5), ("max_trace_words", 5)],
)
def test_params_validate_names_the_field(field, value):
    params = ExpertParams(**{field: value})
    with pytest.raises(ValueError, match=field):
        params.validate()
    with pytest.raises(ValueError, match=field):
        write_trace(Sample(values=_sine(), intervals=(), label="normal", family="point"), params)

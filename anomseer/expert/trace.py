"""Expert chain-of-thought traces (ExpCoT): the writer and the verifier (method.md section 3).

A trace is three short parts in a fixed phrasing, for example::

    Observation: Global scan: max |z| 1.41 at 7, below 5. Structural scan: 0 gradient flags;
    window periods 33.3 to 33.3 (std 0.00). Local scan: top discord z 4.87 at 402, above 3.5.
    Reasoning & Validation: [431, 460] discord z 4.87 at 402; elsewhere top discord z 0.00.
    The local pattern breaks. Conclusion: contextual point at [[431, 460]].

- Observation walks the cascade of method.md section 3 as far as the scan that matches the
  series' type: global (z-scores); then structural (smoothed-gradient flags, windowed FFT
  periods); then local (matrix-profile discords). Noisy series first say they are smoothed.
- Reasoning & Validation quotes the evidence that fits the type, measured on the anomalous
  intervals against the rest of the series: max |z| (global point), mean smoothed slope (trend),
  dominant period (seasonal), discord z-score (contextual point, shapelet).
- Conclusion states the type and every interval, ``[start, end]`` half-open as in the answer.

The writer is conditioned on the true intervals and label, but the text never mentions them as
given: it reads as observations of the series, which is what a model can say at inference.
Every number is computed by :mod:`anomseer.expert.analyses` on the values and printed with a
fixed number of decimals, so :func:`verify_trace` can recompute each one from the values and
the intervals the trace itself states. A claim holds when the recomputed value rounds to the
quoted one (tolerance half a unit of the last quoted decimal); indices must match exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from anomseer.expert.analyses import Scans, segment_period, series_period, subsequences_overlapping
from anomseer.expert.params import ExpertParams, resolve
from anomseer.series.sample import Sample
from anomseer.series.taxonomy import LABELS, NORMAL, normalize_label

# Decimals printed per statistic (part of the trace format: the verifier's tolerance follows
# the decimals actually written, so a model that writes fewer digits is judged at its precision).
Z_DECIMALS = 2
SLOPE_DECIMALS = 4
PERIOD_DECIMALS = 1
SHARE_DECIMALS = 2

#: Phrases a trace must never contain: they would tell the model the answer came from outside.
FORBIDDEN_PHRASES: tuple[str, ...] = ("ground truth", "label", "given", "annotat", "true interval")

_CLOSING = {
    "global point": "Values leave the normal range.",
    "trend": "The slope departs from the rest.",
    "seasonal": "The oscillation period changes.",
    "contextual point": "The local pattern breaks.",
    "shapelet": "A square-like shape replaces the wave.",
}
_CASCADE_DEPTH = {"global point": 1, "trend": 2, "seasonal": 2, "contextual point": 3, "shapelet": 3, NORMAL: 3}
_PRIMARY_STAT = {
    "global point": "z",
    "trend": "slope",
    "seasonal": "period",
    "contextual point": "discord",
    "shapelet": "discord",
}


def _fmt(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text


def _fmt_threshold(value: float) -> str:
    return f"{value:g}"


# --------------------------------------------------------------------------------------------
# The statistics (one definition, used by the writer and the verifier).


def _complement(length: int, intervals) -> np.ndarray:
    mask = np.ones(length, dtype=bool)
    for a, b in intervals:
        mask[a:b] = False
    return mask


def _stat_interval(sc: Scans, kind: str, interval) -> tuple[float, int | None] | None:
    """Statistic ``kind`` on one interval: (value, index or None), or None when undefined."""
    a, b = interval
    if kind == "z":
        return float(np.abs(sc.glob.z[a:b]).max()), None
    if kind == "slope":
        return float(sc.trend.gradient[a:b].mean()), None
    if kind == "period":
        period = segment_period(sc.values, interval, sc.params)
        return (period, None) if np.isfinite(period) else None
    if kind == "discord":
        d = sc.discord
        return d.max_in(subsequences_overlapping(interval, d.window, d.z.size))
    raise ValueError(f"unknown statistic {kind!r}")


def _stat_elsewhere(sc: Scans, kind: str, outside: np.ndarray) -> float | None:
    """Statistic ``kind`` on the points outside every interval (``outside``: bool (L,))."""
    if not outside.any():
        return None
    if kind == "z":
        return float(np.abs(sc.glob.z[outside]).max())
    if kind == "slope":
        return float(sc.trend.gradient[outside].mean())
    if kind == "period":
        period = series_period(sc.values, ~outside, sc.params)
        return period if np.isfinite(period) else None
    if kind == "discord":
        d = sc.discord
        inside = np.concatenate(([0], np.cumsum(~outside)))
        starts = np.arange(d.z.size)
        clean = (inside[starts + d.window] - inside[starts]) == 0
        clean[: d.valid[0]] = False
        clean[d.valid[1] :] = False
        return float(d.z[clean].max()) if clean.any() else None
    raise ValueError(f"unknown statistic {kind!r}")


def _within_bounds(sc: Scans) -> bool:
    p = sc.params
    return (
        sc.glob.max_abs_z <= p.global_z
        and sc.trend.n_flags == 0
        and not sc.frequency.flagged.any()
        and sc.discord.top_z <= p.discord_z
    )


def _periods_summary(sc: Scans) -> tuple[float, float, float] | None:
    periods = sc.frequency.periods[np.isfinite(sc.frequency.periods)]
    if periods.size == 0:
        return None
    return float(periods.min()), float(periods.max()), float(periods.std())


# --------------------------------------------------------------------------------------------
# Writer.


def _observation(sc: Scans, depth: int) -> list[str]:
    p = sc.params
    parts = []
    if sc.prepared.noisy:
        share = _fmt(sc.prepared.noise_share, SHARE_DECIMALS)
        parts.append(f"The line is noisy (noise share {share}), so it is smoothed first.")
    g = sc.glob
    side = "above" if g.max_abs_z > p.global_z else "below"
    z = _fmt(g.max_abs_z, Z_DECIMALS)
    parts.append(f"Global scan: max |z| {z} at {g.argmax}, {side} {_fmt_threshold(p.global_z)}.")
    if depth >= 2:
        text = f"Structural scan: {sc.trend.n_flags} gradient flags"
        summary = _periods_summary(sc)
        if summary is not None:
            lo, hi, std = summary
            lo_text, hi_text = _fmt(lo, PERIOD_DECIMALS), _fmt(hi, PERIOD_DECIMALS)
            text += f"; window periods {lo_text} to {hi_text} (std {_fmt(std, Z_DECIMALS)})"
        parts.append(text + ".")
    if depth >= 3:
        d = sc.discord
        side = "above" if d.top_z > p.discord_z else "below"
        z = _fmt(d.top_z, Z_DECIMALS)
        parts.append(f"Local scan: top discord z {z} at {d.top}, {side} {_fmt_threshold(p.discord_z)}.")
    return parts


def _interval_claim(kind: str, interval, stat) -> str:
    a, b = interval
    value, index = stat
    if kind == "z":
        return f"[{a}, {b}] max |z| {_fmt(value, Z_DECIMALS)}"
    if kind == "slope":
        return f"[{a}, {b}] slope {_fmt(value, SLOPE_DECIMALS)}"
    if kind == "period":
        return f"[{a}, {b}] period {_fmt(value, PERIOD_DECIMALS)}"
    return f"[{a}, {b}] discord z {_fmt(value, Z_DECIMALS)} at {index}"


def _elsewhere_claim(kind: str, value: float) -> str:
    if kind == "z":
        return f"elsewhere max |z| {_fmt(value, Z_DECIMALS)}"
    if kind == "slope":
        return f"elsewhere slope {_fmt(value, SLOPE_DECIMALS)}"
    if kind == "period":
        return f"elsewhere period {_fmt(value, PERIOD_DECIMALS)}"
    return f"elsewhere top discord z {_fmt(value, Z_DECIMALS)}"


def _reasoning(sc: Scans, label: str, intervals, n_quoted: int) -> str:
    if label == NORMAL:
        if _within_bounds(sc):
            return "Every scan is within bounds; no interval departs from the rest."
        return "The flags are isolated; no interval departs from the rest."
    for kind in (_PRIMARY_STAT[label], "z"):  # max |z| is always defined: the fallback
        stats = [(iv, _stat_interval(sc, kind, iv)) for iv in intervals]
        stats = [(iv, s) for iv, s in stats if s is not None]
        if stats:
            break
    other = _stat_elsewhere(sc, kind, _complement(sc.length, intervals))
    # Quote the intervals with the strongest evidence, in the order they appear.
    strongest = sorted(stats, key=lambda item: -_strength(kind, item[1][0], other))[:n_quoted]
    claims = [_interval_claim(kind, iv, s) for iv, s in sorted(strongest)]
    if other is not None:
        claims.append(_elsewhere_claim(kind, other))
    return "; ".join(claims) + ". " + _CLOSING[label]


def _strength(kind: str, value: float, other: float | None) -> float:
    """How far an interval's statistic departs from normal (larger = stronger evidence)."""
    if kind in ("z", "discord"):
        return value
    if other is None:
        return 0.0
    if kind == "period":
        return abs(float(np.log(value / other)))
    return abs(value - other)


def _conclusion(label: str, intervals) -> str:
    if label == NORMAL:
        return "Conclusion: normal, no anomalous interval."
    listed = "[" + ", ".join(f"[{a}, {b}]" for a, b in intervals) + "]"
    return f"Conclusion: {label} at {listed}."


def _check_sample(sample: Sample) -> None:
    if not isinstance(sample, Sample):
        raise ValueError(f"write_trace needs an anomseer Sample, got {type(sample).__name__}")
    if sample.label not in LABELS:
        raise ValueError(f"sample label {sample.label!r} is not one of {LABELS}")
    if (sample.label == NORMAL) != (len(sample.intervals) == 0):
        raise ValueError(
            f"sample {sample.uid or sample.family!r}: label {sample.label!r} disagrees with its "
            f"{len(sample.intervals)} intervals (normal iff no interval)"
        )
    previous_end = 0
    for start, end in sample.intervals:
        if not (previous_end <= start < end <= sample.length):
            raise ValueError(
                f"sample intervals must be sorted, disjoint, half-open within [0, {sample.length}]; "
                f"got {sample.intervals}"
            )
        previous_end = end


def write_trace(sample: Sample, params: ExpertParams | None = None) -> str:
    """The expert reasoning for ``sample`` (text only, no tags), deterministic.

    Args:
        sample: a labelled series; its ``intervals`` and ``label`` choose which evidence is
            quoted, its ``values`` give every number.
        params: scan parameters (default :class:`ExpertParams`).

    Returns:
        "Observation: ... Reasoning & Validation: ... Conclusion: ..." in the fixed phrasing
        that :func:`verify_trace` parses. At most ``params.max_quoted_intervals`` intervals are
        quoted with statistics (fewer if needed to stay within ``params.max_trace_words`` words
        outside the Conclusion's interval list); the Conclusion lists all of them.

    Raises:
        ValueError: invalid values (NaN/inf, empty, constant, too short) or a sample whose
            label and intervals disagree.
    """
    p = resolve(params)
    _check_sample(sample)
    sc = Scans(sample.values, p)
    label, intervals = sample.label, list(sample.intervals)
    observation = " ".join(_observation(sc, _CASCADE_DEPTH[label]))
    conclusion = _conclusion(label, intervals)
    n_quoted = min(p.max_quoted_intervals, len(intervals))
    while True:
        reasoning = _reasoning(sc, label, intervals, n_quoted)
        trace = f"Observation: {observation} Reasoning & Validation: {reasoning} {conclusion}"
        if n_quoted <= 1 or trace_words(trace) <= p.max_trace_words:
            return trace
        n_quoted -= 1


def trace_words(trace: str) -> int:
    """Words of ``trace`` outside the Conclusion's interval list (what the length bound counts)."""
    head, sep, tail = trace.partition("Conclusion:")
    tail = re.sub(r"\[\[.*\]\]", "", tail)
    return len((head + sep + tail).split())


# --------------------------------------------------------------------------------------------
# Verifier.

_NUM = r"(-?\d+(?:\.\d+)?)"
_INT = r"(\d+)"
_IV = r"\[\s*(\d+)\s*,\s*(\d+)\s*\]"
_FLAGS = re.IGNORECASE

_P_NOISE = re.compile(rf"noise share {_NUM}", _FLAGS)
_P_GLOBAL = re.compile(rf"global scan: max \|z\| {_NUM} at {_INT}, (above|below) {_NUM}", _FLAGS)
_P_GRAD = re.compile(rf"{_INT} gradient flags?", _FLAGS)
_P_PERIODS = re.compile(rf"window periods {_NUM} to {_NUM} \(std {_NUM}\)", _FLAGS)
_P_LOCAL = re.compile(rf"local scan: top discord z {_NUM} at {_INT}, (above|below) {_NUM}", _FLAGS)
_P_INTERVAL = {
    "z": re.compile(rf"{_IV} max \|z\| {_NUM}", _FLAGS),
    "slope": re.compile(rf"{_IV} slope {_NUM}", _FLAGS),
    "period": re.compile(rf"{_IV} period {_NUM}", _FLAGS),
    "discord": re.compile(rf"{_IV} discord z {_NUM} at {_INT}", _FLAGS),
}
_P_ELSEWHERE = {
    "z": re.compile(rf"elsewhere max \|z\| {_NUM}", _FLAGS),
    "slope": re.compile(rf"elsewhere slope {_NUM}", _FLAGS),
    "period": re.compile(rf"elsewhere period {_NUM}", _FLAGS),
    "discord": re.compile(rf"elsewhere top discord z {_NUM}", _FLAGS),
}
_P_BOUNDS = re.compile(r"every scan is within bounds", _FLAGS)
_P_CONCLUSION = re.compile(r"conclusion:(.*)", _FLAGS | re.DOTALL)
_P_LABEL = re.compile(r"contextual(?: point)?|global(?: point)?|seasonal|trend|shapelet|normal", _FLAGS)


@dataclass(frozen=True)
class Claim:
    """One numeric statement of a trace and whether the values bear it out.

    Attributes:
        kind: which statistic (``noise``, ``global``, ``gradient flags``, ``periods``, ``local``,
            ``interval z`` ...).
        text: the matched text.
        ok: every number in it matches the recomputed value.
        detail: what differs ("" when ``ok``).
    """

    kind: str
    text: str
    ok: bool
    detail: str = ""


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def _close(quoted: str, actual: float | None) -> bool:
    """True when ``actual`` rounds to ``quoted`` at the decimals ``quoted`` is written with."""
    if actual is None or not np.isfinite(actual):
        return False
    tolerance = 0.5 * 10.0 ** (-_decimals(quoted))
    return abs(float(quoted) - actual) <= tolerance * (1 + 1e-9) + 1e-12


def _num(value: float | None, decimals: int) -> str:
    return "undefined" if value is None or not np.isfinite(value) else _fmt(value, decimals)


def _check(kind: str, text: str, problems: list[str]) -> Claim:
    return Claim(kind=kind, text=text, ok=not problems, detail="; ".join(problems))


def _value_problem(name: str, quoted: str, actual: float | None, decimals: int) -> list[str]:
    return [] if _close(quoted, actual) else [f"{name} quoted {quoted}, recomputed {_num(actual, decimals)}"]


def _threshold_problems(actual: float, side: str, threshold: str, expected: float) -> list[str]:
    """The quoted bound must be the scan's, and the recomputed value must lie on the quoted side.

    The side is judged on the unrounded value: 3.5004 is "above 3.5" though it prints as 3.50.
    """
    problems = []
    if not _close(threshold, expected):
        problems.append(f"threshold quoted {threshold}, the scan uses {_fmt_threshold(expected)}")
    true_side = "above" if actual > expected else "below"
    if side.lower() != true_side:
        problems.append(f"the value is {true_side} {_fmt_threshold(expected)}, not {side.lower()}")
    return problems


def _parse_intervals(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(_IV, text)]


def _valid_interval(interval, length: int) -> bool:
    a, b = interval
    return 0 <= a < b <= length


def _claims(trace: str, sc: Scans | None) -> list[Claim]:
    """Parse every claim of ``trace``; check each against ``sc`` (all fail when ``sc`` is None)."""
    if sc is None:
        claims = []
        patterns = (_P_NOISE, _P_GLOBAL, _P_GRAD, _P_PERIODS, _P_LOCAL, *_P_INTERVAL.values(), *_P_ELSEWHERE.values())
        for pattern in patterns:
            claims += [Claim("unchecked", m.group(0), False, "series could not be scanned") for m in pattern.finditer(trace)]
        return claims
    p = sc.params
    claims: list[Claim] = []
    for m in _P_NOISE.finditer(trace):
        problems = _value_problem("noise share", m.group(1), sc.prepared.noise_share, SHARE_DECIMALS)
        if not sc.prepared.noisy:
            problems.append(f"the series is not noisy (share below {_fmt_threshold(p.noise_share_threshold)})")
        claims.append(_check("noise", m.group(0), problems))
    for m in _P_GLOBAL.finditer(trace):
        value, index, side, threshold = m.groups()
        problems = _value_problem("max |z|", value, sc.glob.max_abs_z, Z_DECIMALS)
        if int(index) != sc.glob.argmax:
            problems.append(f"max |z| is at {sc.glob.argmax}, not {index}")
        problems += _threshold_problems(sc.glob.max_abs_z, side, threshold, p.global_z)
        claims.append(_check("global", m.group(0), problems))
    for m in _P_GRAD.finditer(trace):
        n = sc.trend.n_flags
        problems = [] if int(m.group(1)) == n else [f"gradient flags quoted {m.group(1)}, recomputed {n}"]
        claims.append(_check("gradient flags", m.group(0), problems))
    for m in _P_PERIODS.finditer(trace):
        summary = _periods_summary(sc) or (None, None, None)
        problems = _value_problem("lowest window period", m.group(1), summary[0], PERIOD_DECIMALS)
        problems += _value_problem("highest window period", m.group(2), summary[1], PERIOD_DECIMALS)
        problems += _value_problem("window period std", m.group(3), summary[2], Z_DECIMALS)
        claims.append(_check("periods", m.group(0), problems))
    for m in _P_LOCAL.finditer(trace):
        value, index, side, threshold = m.groups()
        d = sc.discord
        problems = _value_problem("top discord z", value, d.top_z, Z_DECIMALS)
        if int(index) != d.top:
            problems.append(f"top discord is at {d.top}, not {index}")
        problems += _threshold_problems(d.top_z, side, threshold, p.discord_z)
        claims.append(_check("local", m.group(0), problems))

    conclusion = _P_CONCLUSION.search(trace)
    stated = _parse_intervals(conclusion.group(1)) if conclusion else []
    quoted = []
    decimals = {"z": Z_DECIMALS, "slope": SLOPE_DECIMALS, "period": PERIOD_DECIMALS, "discord": Z_DECIMALS}
    for kind, pattern in _P_INTERVAL.items():
        for m in pattern.finditer(trace):
            interval = (int(m.group(1)), int(m.group(2)))
            quoted.append(interval)
            if not _valid_interval(interval, sc.length):
                problem = f"interval {list(interval)} is outside [0, {sc.length}]"
                claims.append(_check(f"interval {kind}", m.group(0), [problem]))
                continue
            stat = _stat_interval(sc, kind, interval)
            actual, index = stat if stat is not None else (None, None)
            problems = _value_problem(f"{kind} on {list(interval)}", m.group(3), actual, decimals[kind])
            if kind == "discord" and stat is not None and int(m.group(4)) != index:
                problems.append(f"discord on {list(interval)} is at {index}, not {m.group(4)}")
            claims.append(_check(f"interval {kind}", m.group(0), problems))
    # "elsewhere" = outside the stated intervals (the Conclusion's, else those quoted).
    reference = [iv for iv in (stated or quoted) if _valid_interval(iv, sc.length)]
    outside = _complement(sc.length, reference)
    for kind, pattern in _P_ELSEWHERE.items():
        for m in pattern.finditer(trace):
            if not reference:
                claims.append(_check(f"elsewhere {kind}", m.group(0), ["no valid interval to compare against"]))
                continue
            actual = _stat_elsewhere(sc, kind, outside)
            problems = _value_problem(f"{kind} elsewhere", m.group(1), actual, decimals[kind])
            claims.append(_check(f"elsewhere {kind}", m.group(0), problems))
    for m in _P_BOUNDS.finditer(trace):
        claims.append(_check("bounds", m.group(0), [] if _within_bounds(sc) else ["a scan exceeds its bound"]))
    return claims


def _scans_or_none(values, params) -> Scans | None:
    try:
        return Scans(values, params)
    except ValueError:
        return None


def check_claims(trace: str, values, params: ExpertParams | None = None) -> list[Claim]:
    """Every numeric claim :func:`verify_trace` can parse in ``trace``, each checked on ``values``.

    Never raises on odd text (non-strings count as no text); when ``values`` cannot be scanned
    every parsed claim fails.
    """
    text = trace if isinstance(trace, str) else ""
    return _claims(text, _scans_or_none(values, resolve(params)))


def count_claims(trace: str, values, params: ExpertParams | None = None) -> tuple[int, int]:
    """(number of numeric claims parsed, number that the values bear out); never raises on text.

    For model output: the share ``n_verified / n_claims`` measures how grounded its numbers are.
    A claim is one statement (e.g. "max |z| 6.12 at 415, above 5"); it holds when every number
    in it matches.
    """
    claims = check_claims(trace, values, params)
    return len(claims), sum(c.ok for c in claims)


def verify_trace(trace: str, values, params: ExpertParams | None = None) -> list[str]:
    """Recompute every number ``trace`` quotes from ``values``; list the mismatches ([] = verified).

    Besides each claim (see :func:`check_claims`) it checks the structure the writer
    guarantees: the three parts are present, the Conclusion names a class, every interval quoted
    in the reasoning is listed in the Conclusion, and there is at least one numeric claim.

    Raises:
        ValueError: ``values`` are not a scannable series (NaN/inf, empty, constant, too short).
    """
    p = resolve(params)
    sc = Scans(values, p)
    text = trace if isinstance(trace, str) else ""
    claims = _claims(text, sc)
    problems = [f"{c.kind}: {c.detail} ('{c.text}')" for c in claims if not c.ok]
    if not claims:
        problems.append("no numeric claim found")
    for part in ("Observation:", "Reasoning & Validation:", "Conclusion:"):
        if part not in text:
            problems.append(f"missing part {part!r}")
    conclusion = _P_CONCLUSION.search(text)
    if conclusion:
        label = _P_LABEL.search(conclusion.group(1))
        if label is None or normalize_label(label.group(0)) is None:
            problems.append("the Conclusion names no class")
        stated = set(_parse_intervals(conclusion.group(1)))
        body = text[: conclusion.start()]
        for interval in _parse_intervals(body):
            if interval not in stated:
                problems.append(f"interval {list(interval)} is quoted but not in the Conclusion")
    return problems

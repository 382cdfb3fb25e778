"""The prompt, the completion format and the tolerant parser (anomseer.task)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anomseer.series.taxonomy import ANOMALY_LABELS, LABELS
from anomseer.task import (
    ParsedCompletion,
    build_messages,
    build_prompt,
    format_completion,
    parse_completion,
    parse_intervals,
)
from anomseer.task import _read_intervals


def test_prompt_states_every_element_of_the_reference_prompt():
    prompt = build_prompt(1000)
    assert "time series analysis expert" in prompt
    assert "length 1000" in prompt
    assert "x-axis" in prompt and "anomalous intervals" in prompt
    for label in ANOMALY_LABELS:
        assert label in prompt
    assert "<think>" in prompt and "</think>" in prompt
    assert "<answer>[[start, end], ...]</answer>" in prompt
    assert "<class>one of " + ", ".join(LABELS) + "</class>" in prompt
    assert "<answer>[]</answer> and <class>normal</class>" in prompt
    assert build_prompt(1000) == prompt  # deterministic
    assert "length 400" in build_prompt(400)


@pytest.mark.parametrize("bad", [0, -5, 3.0, True, "1000", None])
def test_prompt_rejects_a_bad_length(bad):
    with pytest.raises(ValueError, match="length"):
        build_prompt(bad)


def test_messages_are_one_user_turn_with_the_image_first():
    messages = build_messages(400)
    assert messages == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": build_prompt(400)}]}
    ]


def test_format_completion_renders_canonical_intervals_and_label():
    text = format_completion("a spike near 12", [(300, 331), (12, 40)], "contextual")
    assert text == (
        "<think>a spike near 12</think><answer>[[12, 40], [300, 331]]</answer>"
        "<class>contextual point</class>"
    )
    assert format_completion("flat", [], "normal") == "<think>flat</think><answer>[]</answer><class>normal</class>"


@pytest.mark.parametrize(
    "args, match",
    [
        (("r", [(5, 5)], "trend"), "start < end"),
        (("r", [(-1, 5)], "trend"), "start < end"),
        (("r", [(1.5, 5)], "trend"), "ints"),
        (("r", [(1, 2, 3)], "trend"), "pair"),
        (("r", [(1, 5)], "spike"), "unknown label"),
        (("a</think>b", [(1, 5)], "trend"), "</think>"),
    ],
)
def test_format_completion_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        format_completion(*args)


def test_parse_reads_a_well_formed_completion():
    text = "<think> The level jumps. </think>\n<answer>[[12, 40], [300, 331]]</answer>\n<class>Global</class>"
    parsed = parse_completion(text, 1000)
    assert parsed == ParsedCompletion(((12, 40), (300, 331)), "global point", "The level jumps.", True)


def test_parse_takes_the_last_answer_and_class_blocks():
    text = (
        "<think>first guess <answer>[[1, 2]]</answer><class>trend</class> no, wait</think>"
        "<answer>[[5, 9]]</answer><class>seasonal</class>"
    )
    parsed = parse_completion(text)
    assert parsed.intervals == ((5, 9),)
    assert parsed.label == "seasonal"
    assert parsed.well_formed


@pytest.mark.parametrize(
    "text, why",
    [
        ("<answer>[[1, 2]]</answer><class>trend</class>", "no think"),
        ("<think>x</think><class>trend</class>", "no answer"),
        ("<think>x</think><answer>somewhere early on</answer><class>trend</class>", "unparseable answer"),
        ("<think>x</think><answer>[[1, 2]]</answer>", "no class"),
        ("<think>x</think><answer>[[1, 2]]</answer><class>spiky</class>", "unknown class"),
        ("<think>x<answer>[[1, 2]]</answer><class>trend</class>", "think never closed"),
        ("<think>x</think><answer>[[1, 2]]<class>trend</class>", "answer never closed"),
    ],
)
def test_parse_flags_malformed_completions(text, why):
    assert not parse_completion(text).well_formed, why


def test_parse_positions_survive_case_mapping_that_changes_length():
    text = "İİİ <THINK>x</Think><Answer>[[1, 2]]</ANSWER><class>Trend</class>"
    assert parse_completion(text) == ParsedCompletion(((1, 2),), "trend", "x", True)


def test_parse_reports_missing_and_unknown_parts_as_none():
    parsed = parse_completion("just some text")
    assert parsed == ParsedCompletion(None, None, None, False)
    assert parse_completion("<class>anomalous</class>").label is None


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("[[12, 40], [300, 331]]", ((12, 40), (300, 331))),
        ("[]", ()),
        ("  [ ]  ", ()),
        ("()", ()),
        ("[[]]", ()),
        ("[(12, 40), (300, 331)]", ((12, 40), (300, 331))),
        ('[{"start": 12, "end": 40}, {"start": 300, "end": 331}]', ((12, 40), (300, 331))),
        ("[{start: 12, end: 40}]", ((12, 40),)),
        ('{"start": 12, "end": 40}', ((12, 40),)),
        ('{"intervals": [[12, 40]]}', ((12, 40),)),
        ("[12, 40, 300, 331]", ((12, 40), (300, 331))),
        ("[12, 40, 300]", ((12, 40),)),
        ("[12, 40]", ((12, 40),)),
        ("[[12.0, 40.0]]", ((12, 40),)),
        ("[[12.4, 39.5]]", ((12, 40),)),
        ('[["12", "40"]]', ((12, 40),)),
        ("```json\n[[12, 40]]\n```", ((12, 40),)),
        ("[[12, 40], [300, 331]] are the anomalies", ((12, 40), (300, 331))),
        ("[[12 40]; [300 331]]", ((12, 40), (300, 331))),
        ("[[12, 40], [300, 331", ((12, 40),)),
        ("from 12 to 40", ((12, 40),)),
        ("12-40", ((12, 40),)),
        ("[[40, 12]]", ()),  # start >= end: dropped
        ("[[-5, 10], [20, 30]]", ((20, 30),)),  # negative: dropped
        ("[[1e999, 5], [20, 30]]", ((20, 30),)),  # inf: dropped
        ("[[NaN, 5], [20, 30]]", ((20, 30),)),
        ("[[true, 5], [20, 30]]", ((20, 30),)),  # booleans are not numbers
        ("[[30, 50], [10, 35], [50, 60], [70, 80]]", ((10, 60), (70, 80))),  # sorted + merged
        ("[[[12, 40]]]", ((12, 40),)),
        ("", None),
        ("none", None),
        ("anomaly at 12", None),
        ('"[[1, 2]]"', ((1, 2),)),  # a JSON string is not a list: regex fallback reads the pair
        ("null", None),
    ],
)
def test_parse_intervals_accepts_the_documented_forms(answer, expected):
    assert parse_intervals(answer) == expected


def test_parse_clips_to_the_series_length():
    assert parse_intervals("[[990, 1200], [1000, 1100], [5, 10]]", 1000) == ((5, 10), (990, 1000))
    parsed = parse_completion("<think>t</think><answer>[[1200, 1300]]</answer><class>trend</class>", 1000)
    assert parsed.intervals == () and parsed.well_formed


def test_parse_rejects_a_bad_length_but_not_bad_text():
    with pytest.raises(ValueError, match="length"):
        parse_completion("<answer>[]</answer>", 0)
    with pytest.raises(ValueError, match="str"):
        parse_completion([{"role": "assistant", "content": "x"}])


def test_parse_survives_huge_numbers_and_deep_nesting():
    assert _read_intervals("[[" + "9" * 5000 + ", 1]]", None) == ()
    assert _read_intervals("[" * 100_000 + "]" * 100_000, None) == ()
    assert _read_intervals("[[1, " + "9" * 30 + "]]", 50) == ((1, 50),)


_intervals = st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 300)), max_size=8).map(
    lambda pairs: [(s, s + w) for s, w in pairs]
)


def _merge(pairs, length=None):
    clipped = sorted((s, min(e, length) if length else e) for s, e in pairs)
    out: list[list[int]] = []
    for s, e in clipped:
        if s >= e:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return tuple((s, e) for s, e in out)


@settings(max_examples=200, deadline=None)
@given(
    reasoning=st.text(max_size=80).filter(lambda r: "</think>" not in r.lower() and "<think>" not in r.lower()),
    intervals=_intervals,
    label=st.sampled_from(LABELS),
    length=st.one_of(st.none(), st.integers(1, 2500)),
)
def test_format_then_parse_round_trips(reasoning, intervals, label, length):
    text = format_completion(reasoning, intervals, label)
    parsed = parse_completion(text, length)
    assert parsed.intervals == _merge(intervals, length)
    assert parsed.label == label
    assert parsed.reasoning == reasoning.strip()
    assert parsed.well_formed


def _check(parsed: ParsedCompletion, length=None):
    assert isinstance(parsed, ParsedCompletion)
    assert parsed.label is None or parsed.label in LABELS
    if parsed.intervals is not None:
        prev_end = -1
        for s, e in parsed.intervals:
            assert type(s) is int and type(e) is int
            assert 0 <= s < e and s > prev_end  # sorted, disjoint, not adjacent
            assert length is None or e <= length
            prev_end = e
    if parsed.well_formed:
        assert parsed.intervals is not None and parsed.label is not None and parsed.reasoning is not None


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300), length=st.one_of(st.none(), st.integers(1, 2000)))
def test_parse_never_raises_on_arbitrary_text(text, length):
    result = _read_intervals(text, length)  # without the safety net of parse_intervals
    assert result is None or isinstance(result, tuple)
    _check(parse_completion(text, length), length)
    _check(parse_completion(f"<think>x</think><answer>{text}</answer><class>{text}</class>", length), length)


_atoms = st.sampled_from(
    ["[", "]", "(", ")", "{", "}", ",", ", ", ";", " ", ":", '"start"', '"end"', "start", "end", "-", ".",
     "e", "1e5", "1e999", "NaN", "Infinity", "true", "null", '"', "'", "\n", "```", "<answer>", "</answer>",
     "<class>", "</class>", "<think>", "</think>", "trend", "global", "normal"]
)
_near_miss = st.lists(
    st.one_of(_atoms, st.integers(-50, 5000).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str)),
    max_size=60,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(body=_near_miss, length=st.one_of(st.none(), st.integers(1, 2000)))
def test_parse_never_raises_on_near_miss_answers(body, length):
    _check(parse_completion(f"<think>r</think><answer>{body}</answer><class>trend</class>", length), length)
    _check(parse_completion(body, length), length)
    result = _read_intervals(body, length)  # without parse_intervals' safety net: nothing may raise
    assert result is None or isinstance(result, tuple)


@settings(max_examples=100, deadline=None)
@given(intervals=_intervals)
def test_json_dump_of_pairs_and_dicts_parses_back(intervals):
    as_pairs = json.dumps([list(p) for p in intervals])
    as_dicts = json.dumps([{"start": s, "end": e} for s, e in intervals])
    assert parse_intervals(as_pairs) == _merge(intervals)
    assert parse_intervals(as_dicts) == _merge(intervals)

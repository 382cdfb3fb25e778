"""The task contract: the prompt a model sees, the completion it must write, and a parser for it.

A completion is ``<think>reasoning</think><answer>[[start, end], ...]</answer><class>label</class>``
(method.md section 1). Intervals are integer, half-open ``[start, end)`` index pairs.

The parser reads model output, so it is tolerant and must never raise: it takes the *last*
``<answer>`` and ``<class>`` blocks (a model that revises itself is judged on its final word), tries
JSON first and falls back to a small regex scanner that accepts ``[s, e]``, ``(s, e)``,
``{"start": s, "end": e}`` items or a flat list of numbers read as consecutive pairs. It never calls
``eval`` or ``ast.literal_eval``: model output is untrusted text. Invalid pairs are dropped rather
than failing the whole answer, then the survivors are clipped, sorted and merged, so downstream
metrics always see sorted, disjoint, non-adjacent half-open intervals.
"""

from __future__ import annotations

import json
import math
import operator
import re
import string
from dataclasses import dataclass

from anomseer.series.taxonomy import ANOMALY_LABELS, LABELS, normalize_label

Interval = tuple[int, int]

#: Nesting deeper than this in a JSON answer is ignored (no sane answer nests past 3 levels).
_MAX_DEPTH = 16

_NUM = r"(?<![\w.])-?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?"
_NUM_RE = re.compile(_NUM)
# An innermost bracketed pair: [s, e], (s, e), [s e] or [s; e].
_PAIR_RE = re.compile(r"[\[(]\s*(" + _NUM + r")(?:\s*[,;]\s*|\s+)(" + _NUM + r")\s*[\])]")
_DICT_RE = re.compile(r"\{[^{}]*\}")
_KEY_RE = {
    key: re.compile(r"[\"']?\b" + key + r"\b[\"']?\s*[:=]\s*[\"']?(" + _NUM + r")", re.IGNORECASE)
    for key in ("start", "end")
}
_ITEM_RE = re.compile(_DICT_RE.pattern + "|" + _PAIR_RE.pattern)
# Tags are ASCII; str.lower() can change a string's length ("İ" -> "i̇") and shift positions.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_EMPTY_RE = re.compile(r"[\s\[\](){},]*")


def build_prompt(length: int) -> str:
    """The user instruction for a series of ``length`` points (method.md section 1, reference prompt).

    Deterministic: the same length always gives the same text (the tiny profile trains its
    tokenizer on this text).
    """
    length = _check_length(length)
    types = ", ".join(ANOMALY_LABELS)
    labels = ", ".join(LABELS)
    return (
        "You are a time series analysis expert. "
        f"A line plot of a univariate time series of length {length} is provided. "
        "Identify the anomalous intervals along the x-axis and infer the most plausible anomaly "
        f"type from [{types}]. "
        "Begin with detailed reasoning inside <think>...</think>. "
        "Then output the intervals as <answer>[[start, end], ...]</answer> "
        f"(integer x-axis indices, end exclusive, 0 <= start < end <= {length}) "
        f"and the type as <class>one of {labels}</class>. "
        "If there are no anomalies, return <answer>[]</answer> and <class>normal</class>."
    )


def build_messages(length: int) -> list[dict]:
    """The single user turn, image first, in the chat format TRL/transformers templates take."""
    return [
        {
            "role": "user",
            "content": [{"type": "image"}, {"type": "text", "text": build_prompt(length)}],
        }
    ]


def format_intervals(intervals) -> str:
    """Canonical rendering, e.g. ``[[12, 40], [300, 331]]`` (sorted by start), ``[]`` when empty."""
    pairs = sorted(_check_pair(pair) for pair in intervals)
    return "[" + ", ".join(f"[{s}, {e}]" for s, e in pairs) + "]"


def format_completion(reasoning: str, intervals, label: str) -> str:
    """The target completion ``<think>reasoning</think><answer>[[s, e], ...]</answer><class>label</class>``.

    ``label`` may be any form :func:`normalize_label` accepts; the canonical label is written.
    Raises ValueError on a label that is not one of the six, an invalid interval, or reasoning that
    contains a ``</think>`` tag (it would end the reasoning block early).
    """
    if not isinstance(reasoning, str):
        raise ValueError(f"reasoning must be a str, got {type(reasoning).__name__}")
    if "</think>" in reasoning.lower():
        raise ValueError("reasoning must not contain '</think>'; it would close the think block early")
    canonical = normalize_label(label)
    if canonical is None:
        raise ValueError(f"unknown label {label!r}; use one of {list(LABELS)}")
    return f"<think>{reasoning}</think><answer>{format_intervals(intervals)}</answer><class>{canonical}</class>"


@dataclass(frozen=True)
class ParsedCompletion:
    """What a completion says.

    Attributes:
        intervals: sorted, disjoint, non-adjacent half-open ``(start, end)`` pairs; ``()`` for an
            explicit empty answer; ``None`` when the ``<answer>`` block is missing or unparseable.
        label: one of :data:`LABELS`, or ``None`` when the ``<class>`` block is missing or unknown.
        reasoning: the text inside the first ``<think>...</think>`` (stripped), or ``None``.
        well_formed: True only with a ``<think>...</think>`` block, a parseable ``<answer>`` and a
            ``<class>`` that names a known label (the format reward).
    """

    intervals: tuple[Interval, ...] | None
    label: str | None
    reasoning: str | None
    well_formed: bool


def parse_completion(text: str, length: int | None = None) -> ParsedCompletion:
    """Parse a model completion; never raises on any string (ValueError only for a bad ``length``).

    ``length``, when given, clips intervals to ``[0, length]`` (pairs left empty are dropped).
    Tags are matched case-insensitively.
    """
    if not isinstance(text, str):
        raise ValueError(
            f"completion must be a str, got {type(text).__name__}; for chat-format completions pass "
            "the assistant message's content"
        )
    if length is not None:
        length = _check_length(length)
    lowered = text.translate(_ASCII_LOWER)  # same length as text, so positions carry over
    reasoning = _first_block(text, lowered, "think")
    answer = _last_block(text, lowered, "answer")
    label_text = _last_block(text, lowered, "class")
    intervals = parse_intervals(answer, length) if answer is not None else None
    label = normalize_label(label_text) if label_text is not None else None
    well_formed = reasoning is not None and intervals is not None and label is not None
    return ParsedCompletion(
        intervals=intervals,
        label=label,
        reasoning=reasoning.strip() if reasoning is not None else None,
        well_formed=well_formed,
    )


def parse_intervals(answer: str, length: int | None = None) -> tuple[Interval, ...] | None:
    """Read the content of an ``<answer>`` block; ``None`` when nothing interval-like is in it.

    JSON first; when that fails, innermost ``[s, e]`` / ``(s, e)`` / ``{"start":.., "end":..}`` items
    found by regex; when there are none, all numbers read as consecutive pairs. An answer made only
    of brackets (``[]``, ``()``, ``[[]]``) is an explicit empty answer. Never raises.
    """
    try:
        return _read_intervals(answer, length)
    except Exception:  # noqa: BLE001 - a safety net: model output must never crash a training run
        return None


def _read_intervals(answer: str, length: int | None) -> tuple[Interval, ...] | None:
    content = _strip_fence(answer.strip())
    pairs = _json_pairs(content)
    if pairs is None:
        pairs = _regex_pairs(content)
    if pairs is None:
        return None
    return _clean(pairs, length)


def _check_length(length) -> int:
    if isinstance(length, bool) or not hasattr(length, "__index__") or operator.index(length) < 1:
        raise ValueError(f"length must be a positive int (the number of points), got {length!r}")
    return operator.index(length)


def _check_pair(pair) -> Interval:
    try:
        s, e = pair
    except (TypeError, ValueError):
        raise ValueError(f"an interval must be a (start, end) pair, got {pair!r}") from None
    for v in (s, e):
        if isinstance(v, bool) or not hasattr(v, "__index__"):  # ints and numpy ints, not floats
            raise ValueError(f"interval bounds must be ints, got {pair!r}")
    s, e = int(s), int(e)
    if not 0 <= s < e:
        raise ValueError(f"interval {pair!r} must satisfy 0 <= start < end")
    return s, e


def _first_block(text: str, lowered: str, tag: str) -> str | None:
    start = lowered.find(f"<{tag}>")
    if start < 0:
        return None
    start += len(tag) + 2
    end = lowered.find(f"</{tag}>", start)
    return text[start:end] if end >= 0 else None


def _last_block(text: str, lowered: str, tag: str) -> str | None:
    end = lowered.rfind(f"</{tag}>")
    if end < 0:
        return None
    start = lowered.rfind(f"<{tag}>", 0, end)
    if start < 0:
        return None
    return text[start + len(tag) + 2 : end]


def _strip_fence(content: str) -> str:
    """Remove a Markdown code fence (```json ... ```) around the answer, if any."""
    if content.startswith("```"):
        newline = content.find("\n")
        content = content[newline + 1 :] if newline >= 0 else content.lstrip("`")
    if content.endswith("```"):
        content = content[:-3]
    return content.strip()


def _number(value) -> float | int | None:
    """An int/float from a JSON scalar or numeric string; None when it is not a finite number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str) and _NUM_RE.fullmatch(value.strip()):
        return _token_number(value.strip())
    return None


def _token_number(token: str) -> float | int | None:
    try:
        if re.fullmatch(r"-?\d+", token):
            return int(token)
        value = float(token)
    except (ValueError, OverflowError):  # e.g. more digits than int() accepts
        return None
    return value if math.isfinite(value) else None


def _json_pairs(content: str) -> list | None:
    try:
        obj = json.loads(content)
    except Exception:  # noqa: BLE001 - includes RecursionError on absurd nesting
        return None
    if not isinstance(obj, (list, dict)):
        return None
    pairs: list = []
    _collect(obj, pairs, 0)
    return pairs


def _collect(obj, pairs: list, depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(obj, dict):
        lowered = {str(k).strip().lower(): v for k, v in obj.items()}
        if "start" in lowered and "end" in lowered:
            pairs.append((_number(lowered["start"]), _number(lowered["end"])))
        else:  # a wrapper such as {"intervals": [[12, 40]]}
            for value in obj.values():
                _collect(value, pairs, depth + 1)
        return
    if not isinstance(obj, list):
        return
    if obj and all(isinstance(v, (int, float, str)) and not isinstance(v, bool) for v in obj):
        # A flat list [s1, e1, s2, e2, ...]; a trailing unpaired value is dropped.
        numbers = [_number(v) for v in obj]
        pairs.extend(zip(numbers[0::2], numbers[1::2]))
        return
    for item in obj:
        _collect(item, pairs, depth + 1)


def _regex_pairs(content: str) -> list | None:
    pairs: list = []
    for match in _ITEM_RE.finditer(content):
        item = match.group(0)
        if item.startswith("{"):
            found = {k: rx.search(item) for k, rx in _KEY_RE.items()}
            if found["start"] and found["end"]:
                pairs.append((_token_number(found["start"].group(1)), _token_number(found["end"].group(1))))
        else:
            pairs.append((_token_number(match.group(1)), _token_number(match.group(2))))
    if pairs:
        return pairs
    numbers = [_token_number(tok) for tok in _NUM_RE.findall(content)]
    if len(numbers) >= 2:
        return list(zip(numbers[0::2], numbers[1::2]))
    if _EMPTY_RE.fullmatch(content) and any(c in content for c in "[({"):
        return []
    return None


def _to_int(value: float | int) -> int:
    if isinstance(value, int):
        return value
    return int(math.floor(value + 0.5))  # round half up: 12.0 -> 12, 39.5 -> 40


def _clean(pairs: list, length: int | None) -> tuple[Interval, ...]:
    """Drop invalid pairs, clip to [0, length], sort and merge overlapping or adjacent intervals."""
    kept: list[Interval] = []
    for s, e in pairs:
        if s is None or e is None:
            continue
        s, e = _to_int(s), _to_int(e)
        if s < 0 or e < 0:
            continue
        if length is not None:
            s, e = min(s, length), min(e, length)
        if s < e:
            kept.append((s, e))
    kept.sort()
    merged: list[list[int]] = []
    for s, e in kept:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return tuple((s, e) for s, e in merged)


__all__ = [
    "ParsedCompletion",
    "build_messages",
    "build_prompt",
    "format_completion",
    "format_intervals",
    "parse_completion",
    "parse_intervals",
]

"""What a model's reasoning says: are its numbers true, and how do its words change with training.

- :func:`claim_verification`: every numeric claim the trace verifier can parse in a model's
  ``<think>`` text ("max |z| 6.12 at 415, above 5", "discord z 4.10 at 950") is recomputed from
  the series. The share that holds measures grounding: a model that learned to *say* expert-like
  numbers without reading them off the plot scores low even when its answers are right.
- :func:`word_shift`: the words whose relative frequency moves most between two models'
  reasoning (say SFT vs TimerPO), a cheap look at what optimisation did to the text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

#: Words: letters (with inner apostrophes or hyphens) or numbers; numbers collapse to one token.
_TOKEN_RE = re.compile(r"[a-z]+(?:['-][a-z]+)*|\d+(?:\.\d+)?")
NUM_TOKEN = "<num>"


def tokenize(text: str | None) -> list[str]:
    """Lowercase word tokens of ``text``; every number becomes ``<num>``; punctuation is dropped."""
    if not text:
        return []
    return [NUM_TOKEN if tok[0].isdigit() else tok for tok in _TOKEN_RE.findall(text.lower())]


def claim_verification(records_with_text: Sequence[Mapping], samples_by_uid: Mapping, expert_params=None) -> dict:
    """How many numeric claims in one model's reasoning the series bear out.

    Args:
        records_with_text: one model's records, each with ``uid`` and ``reasoning`` (the think
            text, None when missing). A record that already carries ``n_claims`` and
            ``n_verified`` (e.g. from the completion cache) is not recomputed.
        samples_by_uid: uid -> :class:`~anomseer.series.sample.Sample` (its values are checked).
        expert_params: the :class:`~anomseer.expert.ExpertParams` the traces were written with.

    Returns:
        ``{"n_completions", "n_with_claims", "share_with_claims", "n_claims", "n_verified",
        "verified_share"}``; ``verified_share`` = sum n_verified / sum n_claims, None when the
        model made no claim at all (a share of nothing is not 0 or 1).

    Raises:
        ValueError: a record whose uid is not in ``samples_by_uid``.
    """
    n_claims = n_verified = n_with = 0
    for rec in records_with_text:
        claims, verified = claim_counts(rec, samples_by_uid, expert_params)
        n_claims += claims
        n_verified += verified
        n_with += claims > 0
    n = len(records_with_text)
    return {
        "n_completions": n,
        "n_with_claims": n_with,
        "share_with_claims": n_with / n if n else None,
        "n_claims": n_claims,
        "n_verified": n_verified,
        "verified_share": n_verified / n_claims if n_claims else None,
    }


def claim_counts(record: Mapping, samples_by_uid: Mapping, expert_params=None) -> tuple[int, int]:
    """(claims parsed, claims verified) of one record's reasoning (cached counts are reused)."""
    if "n_claims" in record and "n_verified" in record:
        return int(record["n_claims"]), int(record["n_verified"])
    uid = record["uid"]
    if uid not in samples_by_uid:
        raise ValueError(f"record {uid!r} has no series in samples_by_uid; pass the split the records came from")
    text = record.get("reasoning")
    # Every claim the verifier parses quotes a number; text without digits cannot hold one, and
    # skipping it saves building the series' scans.
    if not text or not any(c.isdigit() for c in text):
        return 0, 0
    from anomseer.expert import count_claims

    return count_claims(text, samples_by_uid[uid].values, expert_params)


def word_shift(texts_a: Iterable[str | None], texts_b: Iterable[str | None], top: int = 15) -> list[dict]:
    """The ``top`` words whose relative frequency differs most between two corpora.

    Relative frequency = count / total tokens of that corpus (:func:`tokenize`). Sorted by
    ``|freq_b - freq_a|`` descending, ties by word. Each item:
    ``{"word", "freq_a", "freq_b", "shift" (= freq_b - freq_a), "count_a", "count_b"}``.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive int, got {top!r}")
    count_a = Counter(tok for text in texts_a for tok in tokenize(text))
    count_b = Counter(tok for text in texts_b for tok in tokenize(text))
    total_a, total_b = sum(count_a.values()), sum(count_b.values())
    rows = []
    for word in count_a.keys() | count_b.keys():
        fa = count_a[word] / total_a if total_a else 0.0
        fb = count_b[word] / total_b if total_b else 0.0
        rows.append(
            {"word": word, "freq_a": fa, "freq_b": fb, "shift": fb - fa, "count_a": count_a[word], "count_b": count_b[word]}
        )
    rows.sort(key=lambda r: (-abs(r["shift"]), r["word"]))
    return rows[:top]


__all__ = ["NUM_TOKEN", "claim_counts", "claim_verification", "tokenize", "word_shift"]

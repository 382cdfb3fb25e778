"""Synthetic series: the AnomLLM training families and the VisualTimeAnomaly held-out types.

One entry point, :func:`generate`, covers both. Every series is bit-reproducible from
``(family, n, seed, length)``; see :mod:`anomseer.series.anomllm` for the seeding rule.
"""

from __future__ import annotations

from anomseer.series.anomllm import FAMILIES, FAMILY_PARAMS, generate_anomllm
from anomseer.series.io import load_samples, save_samples
from anomseer.series.sample import Interval, Sample
from anomseer.series.taxonomy import (
    ANOMALY_LABELS,
    ANOMLLM_FAMILY_LABEL,
    FAMILY_LABEL,
    LABEL_ALIASES,
    LABELS,
    NORMAL,
    PAPER_GROUP,
    VTA_TYPE_LABEL,
    label_for,
    normalize_label,
)
from anomseer.series.vta import VTA_PARAMS, VTA_TYPES, generate_vta

#: Every name :func:`generate` accepts.
ALL_FAMILIES: tuple[str, ...] = FAMILIES + VTA_TYPES


def generate(family: str, n: int, seed: int, length: int | None = None) -> list[Sample]:
    """Generate ``n`` labelled series of one family.

    Args:
        family: an AnomLLM family (:data:`FAMILIES`: ``range``, ``point``, ``freq``, ``trend``,
            ``flat-trend``, ``noisy-point``, ``noisy-freq``, ``noisy-trend``) or a
            VisualTimeAnomaly type (:data:`VTA_TYPES`: ``vta-global`` ... ``vta-shapelet``).
        n: number of series (>= 0).
        seed: non-negative integer. Sample ``i`` depends only on ``(family, seed, i, length)``:
            growing ``n`` keeps the earlier samples, and call order never matters.
        length: series length; ``None`` means 1000 for AnomLLM families and 400 for
            VisualTimeAnomaly types. Time constants scale with it (see the family modules).

    Returns:
        ``n`` samples with float64 ``values`` of shape (length,), sorted disjoint half-open
        ``intervals``, ``label`` from :func:`taxonomy.label_for` and ``family``; ``uid`` is empty
        (the split builder sets it).

    Raises:
        ValueError: unknown family (the message lists the known ones), ``n < 0``, a negative or
            non-integer seed, or a length below the family's minimum.
    """
    if family in FAMILY_PARAMS:
        return generate_anomllm(family, n, seed, length)
    if family in VTA_TYPE_LABEL:
        return generate_vta(family, n, seed, length)
    raise ValueError(f"unknown family {family!r}; known: {', '.join(ALL_FAMILIES)}")


__all__ = [
    "ALL_FAMILIES",
    "ANOMALY_LABELS",
    "ANOMLLM_FAMILY_LABEL",
    "FAMILIES",
    "FAMILY_LABEL",
    "FAMILY_PARAMS",
    "Interval",
    "LABELS",
    "LABEL_ALIASES",
    "NORMAL",
    "PAPER_GROUP",
    "Sample",
    "VTA_PARAMS",
    "VTA_TYPES",
    "VTA_TYPE_LABEL",
    "generate",
    "label_for",
    "load_samples",
    "normalize_label",
    "save_samples",
]

"""The anomaly taxonomy: the six class labels and which family maps to which label.

The reference label mapping misspelled the ``noisy-*`` families and omitted ``flat-trend``, so half
of its training rows got the class "unknown". Here every family maps to a real label, and a series
with no anomaly interval is always ``normal`` whatever its family.
"""

from __future__ import annotations

LABELS: tuple[str, ...] = (
    "contextual point",
    "global point",
    "seasonal",
    "trend",
    "shapelet",
    "normal",
)
ANOMALY_LABELS: tuple[str, ...] = LABELS[:-1]
NORMAL = "normal"

#: Short forms a model (or a person) may write; the parser accepts them.
LABEL_ALIASES: dict[str, str] = {
    "contextual": "contextual point",
    "contextual point": "contextual point",
    "contextual-point": "contextual point",
    "global": "global point",
    "global point": "global point",
    "global-point": "global point",
    "seasonal": "seasonal",
    "trend": "trend",
    "shapelet": "shapelet",
    "normal": "normal",
}

#: AnomLLM training families (method.md section 2) -> the label of their anomalies.
ANOMLLM_FAMILY_LABEL: dict[str, str] = {
    "range": "global point",
    "point": "contextual point",
    "freq": "seasonal",
    "trend": "trend",
    "flat-trend": "trend",
    "noisy-point": "contextual point",
    "noisy-freq": "seasonal",
    "noisy-trend": "trend",
}

#: VisualTimeAnomaly univariate types (held-out set, never trained on) -> label.
VTA_TYPE_LABEL: dict[str, str] = {
    "vta-global": "global point",
    "vta-contextual": "contextual point",
    "vta-seasonal": "seasonal",
    "vta-trend": "trend",
    "vta-shapelet": "shapelet",
}

FAMILY_LABEL: dict[str, str] = {**ANOMLLM_FAMILY_LABEL, **VTA_TYPE_LABEL}

#: How the paper groups the AnomLLM families in its tables (method.md section 7).
PAPER_GROUP: dict[str, str] = {
    "freq": "freq",
    "noisy-freq": "freq",
    "trend": "trend",
    "flat-trend": "trend",
    "noisy-trend": "trend",
    "range": "range",
    "point": "point",
    "noisy-point": "point",
}


def normalize_label(text: str | None) -> str | None:
    """Map a free-form label to one of :data:`LABELS`, or ``None`` when it is not a label.

    Case, surrounding whitespace/quotes/punctuation, hyphens and underscores are ignored.
    """
    if text is None:
        return None
    key = " ".join(text.strip().strip("\"'`.,;:!").lower().replace("_", " ").replace("-", " ").split())
    return LABEL_ALIASES.get(key)


def label_for(family: str, intervals) -> str:
    """The class of a series: ``normal`` when it has no interval, else its family's label."""
    if family not in FAMILY_LABEL:
        raise ValueError(f"unknown family {family!r}; known: {sorted(FAMILY_LABEL)}")
    return FAMILY_LABEL[family] if len(intervals) else NORMAL

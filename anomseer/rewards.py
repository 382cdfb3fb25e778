"""The outcome reward of a completion (method.md section 4).

``R = w_format * format + w_class * class + w_loc * loc`` with ``loc`` the mean of the six
localization scores (point P/R/F1 and affiliation P/R/F1, see :func:`anomseer.metrics.localization_scores`).
The reference weights are 0.1 / 0.2 / 0.7. The reward is a plain function of text and ground
truth so trainers (TRL reward functions, the TimerPO advantage) and evaluation share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from anomseer.metrics import localization_scores
from anomseer.series.taxonomy import LABELS, NORMAL, normalize_label
from anomseer.task import parse_completion

_LOC_KEYS = ("P", "R", "F1", "AffP", "AffR", "AffF1")


@dataclass(frozen=True)
class RewardParams:
    """Weights of the outcome reward (AnomSeer, method.md section 4).

    Attributes:
        format_weight: weight of the format term (1 for a ``<think>``, a parseable ``<answer>`` and a
            known ``<class>``). Default 0.1, as in the paper.
        class_weight: weight of the class term (1 when the label is right). Default 0.2.
        loc_weight: weight of the localization term (mean of P, R, F1, AffP, AffR, AffF1).
            Default 0.7.

    The weights are non-negative and sum to 1, so the reward lies in [0, 1].
    """

    format_weight: float = 0.1
    class_weight: float = 0.2
    loc_weight: float = 0.7

    def validate(self) -> "RewardParams":
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"RewardParams.{f.name} must be a finite number >= 0, got {value!r}")
        total = self.format_weight + self.class_weight + self.loc_weight
        if abs(total - 1.0) > 1e-9:
            raise ValueError(
                "RewardParams weights (format_weight + class_weight + loc_weight) must sum to 1, "
                f"got {total!r}"
            )
        return self


def reward_components(
    completion: str, true_intervals, true_label: str, length: int, params: RewardParams | None = None
) -> dict[str, float]:
    """Every term of the outcome reward: format, class, loc, P, R, F1, AffP, AffR, AffF1, total.

    The true class is ``normal`` whenever ``true_intervals`` is empty (whatever ``true_label``
    says, as :func:`anomseer.series.taxonomy.label_for` defines it); a non-empty ``true_intervals``
    with the label ``normal`` is a contradiction and raises ValueError.
    """
    return _components(completion, true_intervals, true_label, length, (params or RewardParams()).validate())


def _components(completion, true_intervals, true_label, length, params: RewardParams) -> dict[str, float]:
    truth = _true_class(true_intervals, true_label)
    parsed = parse_completion(completion, length)
    scores = localization_scores(parsed.intervals, true_intervals, length)
    out = {
        "format": float(parsed.well_formed),
        "class": float(parsed.label == truth),
        "loc": sum(scores[k] for k in _LOC_KEYS) / len(_LOC_KEYS),
        **scores,
    }
    out["total"] = (
        params.format_weight * out["format"] + params.class_weight * out["class"] + params.loc_weight * out["loc"]
    )
    return out


def outcome_reward(
    completion: str, true_intervals, true_label: str, length: int, params: RewardParams | None = None
) -> float:
    """The scalar outcome reward in [0, 1] (the ``total`` of :func:`reward_components`)."""
    return reward_components(completion, true_intervals, true_label, length, params)["total"]


def batch_outcome_rewards(
    completions, true_intervals_list, true_labels, lengths, params: RewardParams | None = None
) -> list[float]:
    """Outcome rewards of aligned sequences (one entry per completion), for trainers."""
    completions, true_intervals_list = list(completions), list(true_intervals_list)
    true_labels, lengths = list(true_labels), list(lengths)
    sizes = {len(completions), len(true_intervals_list), len(true_labels), len(lengths)}
    if len(sizes) != 1:
        raise ValueError(
            "completions, true_intervals_list, true_labels and lengths must have the same length, got "
            f"{len(completions)}, {len(true_intervals_list)}, {len(true_labels)}, {len(lengths)}"
        )
    params = (params or RewardParams()).validate()
    return [
        _components(c, iv, lab, n, params)["total"]
        for c, iv, lab, n in zip(completions, true_intervals_list, true_labels, lengths)
    ]


def _true_class(true_intervals, true_label: str) -> str:
    if true_intervals is None:
        raise ValueError("true_intervals is None; pass () for a series without anomaly")
    if len(true_intervals) == 0:
        return NORMAL
    label = normalize_label(true_label)
    if label is None:
        raise ValueError(f"true_label {true_label!r} is not one of {list(LABELS)}")
    if label == NORMAL:
        raise ValueError(
            "true_label is 'normal' but true_intervals is not empty; pass the anomaly's label "
            "(taxonomy.label_for(family, intervals) gives it)"
        )
    return label


__all__ = ["RewardParams", "batch_outcome_rewards", "outcome_reward", "reward_components"]

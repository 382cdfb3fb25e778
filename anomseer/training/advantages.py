r"""TimerPO advantages: GRPO's outcome advantage plus an orthogonalised grounded term.

Implements method.md §5, steps 1 and 4-6, as pure functions over per-rollout scalars. Rollouts
are laid out as TRL lays them out: ``N = num_groups * group_size`` rows, and consecutive
``group_size`` rows are the G rollouts of one prompt.

.. math::
    A^{main}_i = r_i - \bar r_g \quad (\text{optionally} / (\sigma_g + \epsilon)), \qquad
    A^{sem}_i = s_i - \bar s_g

    \beta_g = \frac{\sum_{i \in g} A^{sem}_i A^{main}_i}
                   {\sum_{i \in g} (A^{main}_i)^2 + 10^{-8}}, \qquad
    A^{\perp}_i = A^{sem}_i - \beta_g A^{main}_i, \qquad A_i = A^{main}_i + \alpha A^{\perp}_i

Why the projection: the grounded signal should only add what the outcome reward does not already
say. Removing its component along :math:`A^{main}` (per group) keeps it from re-weighting the
outcome ranking, and when a group's rewards are all equal (:math:`A^{main} = 0`) the centred
similarity passes through unchanged, so the model still learns where the outcome reward is
silent. ``project=False`` is the paper's "no projection" ablation (direct add) and
``alpha=0`` is vanilla GRPO.

Group std: the reference code centres only (``scale="none"``, the default) although the paper's
text says "group-normalised"; ``scale="group"`` divides by the unbiased group standard deviation
plus ``eps``, as TRL (``scale_rewards="group"``) and veRL do.

References
----------
.. [1] AnomSeer: Reinforcing Multimodal LLMs to Reason for Time-Series Anomaly Detection,
   arXiv 2602.08868 (ICML 2026), TimerPO.
.. [2] Z. Shao et al., DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open
   Language Models, 2024 (GRPO).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

SCALES = ("none", "group")
# Fixed by the method (method.md §5, step 5): keeps beta finite when A_main is 0 in a group.
PROJECTION_EPS = 1e-8


@dataclass(frozen=True)
class AdvantageParams:
    """Parameters of the TimerPO advantage (method.md §5, steps 1, 5, 6).

    Attributes
    ----------
    alpha : float
        Weight of the grounded term, finite and >= 0 (reference 0.3; the paper calls 0.3-0.7
        stable; 0 gives vanilla GRPO).
    project : bool
        Remove the component of A_sem along A_main per group (True, reference) or add A_sem
        directly (False, the "no projection" ablation).
    scale : str
        ``"none"``: A_main = r - group mean (reference code, default). ``"group"``: also divide
        by the unbiased group std + ``eps`` (the paper's text; TRL's ``scale_rewards="group"``).
    eps : float
        Added to the group std when ``scale="group"``, > 0 (TRL uses 1e-4).
    """

    alpha: float = 0.3
    project: bool = True
    scale: str = "none"
    eps: float = 1e-8

    def validate(self) -> AdvantageParams:
        """Raise ValueError naming the first field outside its allowed range; return self."""
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)):
            raise ValueError(f"AdvantageParams.alpha must be a number >= 0, got {self.alpha!r}")
        if not 0 <= self.alpha < float("inf"):
            raise ValueError(f"AdvantageParams.alpha must be finite and >= 0, got {self.alpha!r}")
        if not isinstance(self.project, bool):
            raise ValueError(f"AdvantageParams.project must be True or False, got {self.project!r}")
        if self.scale not in SCALES:
            raise ValueError(f"AdvantageParams.scale must be one of {SCALES}, got {self.scale!r}")
        if not (isinstance(self.eps, (int, float)) and 0 < self.eps < float("inf")):
            raise ValueError(f"AdvantageParams.eps must be a finite number > 0, got {self.eps!r}")
        return self


@dataclass(frozen=True)
class TimerPOAdvantages:
    """The final advantage and its parts, all detached, in the dtype of the computation.

    Attributes
    ----------
    advantages : Tensor, shape (N,)
        :math:`A = A^{main} + \\alpha A^{\\perp}`; one value per rollout, constant over its tokens.
    a_main : Tensor, shape (N,)
        Group-centred (optionally scaled) outcome reward.
    a_sem : Tensor, shape (N,)
        Group-centred grounded similarity.
    a_perp : Tensor, shape (N,)
        A_sem minus its projection on A_main per group (A_sem itself when ``project=False``).
    beta : Tensor, shape (N // group_size,)
        Projection coefficient per group (zeros when ``project=False``).
    """

    advantages: Tensor
    a_main: Tensor
    a_sem: Tensor
    a_perp: Tensor
    beta: Tensor


def _as_groups(values: Tensor, group_size: int, name: str) -> Tensor:
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D (N,), got shape {tuple(values.shape)}")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be an integer >= 1, got {group_size!r}")
    if values.shape[0] % group_size:
        raise ValueError(
            f"{name} has {values.shape[0]} rows, not a multiple of group_size={group_size}: "
            "pass all G rollouts of every prompt, consecutive rows per group"
        )
    if not torch.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or inf: score every rollout before this step")
    dtype = torch.promote_types(values.dtype, torch.float32)
    return values.detach().to(dtype).view(-1, group_size)


def group_centered(
    values: Tensor, group_size: int, scale_by_std: bool = False, eps: float = 1e-8
) -> Tensor:
    r"""Subtract each group's mean; optionally divide by the group's standard deviation.

    .. math::
        x_i - \bar x_g \qquad \text{or} \qquad \frac{x_i - \bar x_g}{\sigma_g + \epsilon}

    with :math:`\sigma_g` the unbiased (Bessel-corrected) std of the group, as in TRL and veRL;
    a group of one has :math:`\sigma_g = 0` (TRL's convention).

    Parameters
    ----------
    values : Tensor, shape (N,)
        One value per rollout; consecutive ``group_size`` rows form a group.
    group_size : int
        G, >= 1, dividing N.
    scale_by_std : bool, optional
        Divide by the group std + ``eps``.
    eps : float, optional
        Added to the std when scaling.

    Returns
    -------
    centred : Tensor, shape (N,)
        Detached, float32 or wider; each group sums to 0 (to rounding).
    """
    groups = _as_groups(values, group_size, "values")
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale_by_std:
        if group_size > 1:
            std = groups.std(dim=1, keepdim=True)
        else:
            std = torch.zeros_like(groups[:, :1])
        centred = centred / (std + eps)
    return centred.reshape(-1)


def timerpo_advantages(
    rewards: Tensor,
    similarity: Tensor,
    group_size: int,
    params: AdvantageParams | None = None,
    *,
    alpha: float | None = None,
    project: bool | None = None,
    scale: str | None = None,
    eps: float | None = None,
) -> TimerPOAdvantages:
    r"""TimerPO's advantage per rollout: outcome advantage plus the orthogonalised grounded term.

    .. math::
        A_i = A^{main}_i + \alpha \left(A^{sem}_i - \beta_g A^{main}_i\right), \qquad
        \beta_g = \frac{\sum_{i \in g} A^{sem}_i A^{main}_i}
                       {\sum_{i \in g} (A^{main}_i)^2 + 10^{-8}}

    where :math:`A^{main}` is :func:`group_centered` of the rewards (scaled by the group std if
    ``scale="group"``) and :math:`A^{sem}` is :func:`group_centered` of the similarities
    (never scaled). Per group, :math:`A^{\perp}` is orthogonal to :math:`A^{main}` up to the
    1e-8 in the denominator, and every part sums to 0.

    Parameters
    ----------
    rewards : Tensor, shape (N,)
        Outcome reward per rollout, finite.
    similarity : Tensor, shape (N,)
        Grounded similarity per rollout (from
        :func:`anomseer.training.ot.grounded_similarity`), finite.
    group_size : int
        G: consecutive ``group_size`` rows are the rollouts of one prompt; must divide N.
    params : AdvantageParams, optional
        alpha, project, scale, eps; defaults to ``AdvantageParams()``.
    alpha, project, scale, eps : optional
        Override the matching field of ``params`` for this call.

    Returns
    -------
    TimerPOAdvantages
        ``advantages``, ``a_main``, ``a_sem``, ``a_perp`` (N,) and ``beta`` (N // group_size,),
        detached, in the promoted dtype of the inputs (at least float32).

    Examples
    --------
    >>> import torch
    >>> out = timerpo_advantages(torch.tensor([1.0, 1.0]), torch.tensor([0.9, 0.5]), 2)
    >>> out.advantages  # equal rewards: alpha * centred similarity passes through
    tensor([ 0.0600, -0.0600])
    """
    overrides = {"alpha": alpha, "project": project, "scale": scale, "eps": eps}
    params = replace(
        params or AdvantageParams(), **{k: v for k, v in overrides.items() if v is not None}
    ).validate()
    if similarity.shape != rewards.shape:
        raise ValueError(
            f"similarity has shape {tuple(similarity.shape)} but rewards has "
            f"{tuple(rewards.shape)}: give one similarity per rollout"
        )
    dtype = torch.promote_types(rewards.dtype, similarity.dtype)
    rewards, similarity = rewards.to(dtype), similarity.to(dtype)
    a_main = group_centered(rewards, group_size, params.scale == "group", params.eps)
    a_sem = group_centered(similarity, group_size)
    main_g, sem_g = a_main.view(-1, group_size), a_sem.view(-1, group_size)
    if params.project:
        beta = (sem_g * main_g).sum(dim=1) / ((main_g * main_g).sum(dim=1) + PROJECTION_EPS)
        a_perp = (sem_g - beta[:, None] * main_g).reshape(-1)
    else:
        beta = torch.zeros_like(main_g[:, 0])
        a_perp = a_sem
    return TimerPOAdvantages(
        advantages=a_main + params.alpha * a_perp,
        a_main=a_main,
        a_sem=a_sem,
        a_perp=a_perp,
        beta=beta,
    )

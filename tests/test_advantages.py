"""TimerPO advantages: invariants, ablation switches, and TRL's GRPO advantage as a reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from anomseer.training.advantages import (
    AdvantageParams,
    group_centered,
    timerpo_advantages,
)


def _trl_nanstd(tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """Copy of ``trl.trainer.utils.nanstd`` (trl 1.16): NaN-aware std with Bessel's correction."""
    mean = torch.nanmean(tensor, dim=dim, keepdim=True)
    variance = torch.nanmean((tensor - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(tensor), dim=dim, keepdim=True)
    correction = count / (count - 1)
    correction = torch.where(count > 1, correction, torch.full_like(correction, float("nan")))
    return torch.sqrt(variance * correction).squeeze(dim)


def _trl_grpo_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str):
    """Mirror of TRL 1.16 ``GRPOTrainer._generate_and_score_completions`` for one summed reward
    (``multi_objective_aggregation="sum_then_normalize"``, ``scale_rewards`` "none" or "group")."""
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    std_rewards = _trl_nanstd(rewards.view(-1, num_generations), dim=1)
    std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != "none":
        advantages = advantages / (std_rewards + 1e-4)
    return torch.nan_to_num(advantages, nan=0.0)


def _batch(seed: int, groups: int = 6, size: int = 5, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.rand(groups * size, generator=gen, dtype=dtype)
    similarity = torch.rand(groups * size, generator=gen, dtype=dtype)
    return rewards, similarity


def _per_group(x: torch.Tensor, size: int) -> torch.Tensor:
    return x.view(-1, size)


def test_projected_part_is_orthogonal_to_main_in_every_group():
    rewards, similarity = _batch(0)
    out = timerpo_advantages(rewards, similarity, 5)
    main, perp, sem = (_per_group(t, 5) for t in (out.a_main, out.a_perp, out.a_sem))
    inner = (main * perp).sum(dim=1)
    scale = main.norm(dim=1) * sem.norm(dim=1)
    assert (inner.abs() <= 1e-6 * scale).all()
    # and the removed part is exactly beta times A_main
    torch.testing.assert_close(sem - perp, out.beta[:, None] * main)


def test_beta_is_the_least_squares_coefficient_of_sem_on_main():
    rewards, similarity = _batch(1)
    out = timerpo_advantages(rewards, similarity, 5)
    main, sem = _per_group(out.a_main, 5), _per_group(out.a_sem, 5)
    for g in range(main.shape[0]):
        coef = torch.linalg.lstsq(main[g][:, None], sem[g][:, None]).solution.item()
        assert out.beta[g].item() == pytest.approx(coef, rel=1e-6)


@pytest.mark.parametrize("scale", ["none", "group"])
def test_alpha_zero_is_trl_grpo_advantage(scale):
    rewards, similarity = _batch(2, dtype=torch.float32)
    rewards[:5] = 0.7  # one group with equal rewards: std 0
    out = timerpo_advantages(rewards, similarity, 5, alpha=0.0, scale=scale, eps=1e-4)
    expected = _trl_grpo_advantages(rewards, 5, scale)
    torch.testing.assert_close(out.advantages, expected, rtol=1e-6, atol=1e-7)
    # and a direct computation of the mean-only GRPO advantage
    if scale == "none":
        direct = rewards - rewards.view(-1, 5).mean(dim=1).repeat_interleave(5)
        assert torch.equal(out.advantages, direct)


def test_equal_rewards_pass_the_centred_similarity_through():
    similarity = torch.tensor([0.9, 0.2, 0.5, 0.6, 0.3, 0.1], dtype=torch.float64)
    rewards = torch.tensor([0.4] * 3 + [1.0] * 3, dtype=torch.float64)
    out = timerpo_advantages(rewards, similarity, 3, alpha=0.5)
    centred = similarity - similarity.view(2, 3).mean(dim=1).repeat_interleave(3)
    # r - mean(r) is 0 up to one rounding of the mean (mean(0.4, 0.4, 0.4) != 0.4 in binary);
    # the 1e-8 in beta's denominator keeps that residue from inflating beta.
    assert out.a_main.abs().max().item() < 1e-15
    assert out.beta.abs().max().item() < 1e-15
    torch.testing.assert_close(out.advantages, 0.5 * centred, rtol=0, atol=1e-15)


def test_project_false_adds_centred_similarity_directly():
    rewards, similarity = _batch(3)
    out = timerpo_advantages(rewards, similarity, 5, alpha=0.4, project=False)
    assert torch.equal(out.a_perp, out.a_sem)
    assert out.beta.abs().sum().item() == 0.0
    torch.testing.assert_close(out.advantages, out.a_main + 0.4 * out.a_sem, rtol=0, atol=0)
    projected = timerpo_advantages(rewards, similarity, 5, alpha=0.4)
    assert not torch.allclose(projected.advantages, out.advantages)


def test_final_advantage_by_hand_on_one_group():
    rewards = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64)
    similarity = torch.tensor([0.8, 0.2, 0.2], dtype=torch.float64)
    out = timerpo_advantages(rewards, similarity, 3, alpha=0.3)
    a_main = torch.tensor([0.5, -0.5, 0.0], dtype=torch.float64)
    a_sem = torch.tensor([0.4, -0.2, -0.2], dtype=torch.float64)
    beta = 0.3 / (0.5 + 1e-8)  # sum(A_sem * A_main) = 0.2 + 0.1, sum(A_main^2) = 0.5
    torch.testing.assert_close(out.beta, torch.tensor([beta], dtype=torch.float64))
    torch.testing.assert_close(out.advantages, a_main + 0.3 * (a_sem - beta * a_main))


def test_group_std_scaling_matches_torch_std():
    rewards, _ = _batch(4)
    got = group_centered(rewards, 5, scale_by_std=True, eps=1e-8)
    groups = rewards.view(-1, 5)
    want = (groups - groups.mean(1, keepdim=True)) / (groups.std(1, keepdim=True) + 1e-8)
    torch.testing.assert_close(got, want.reshape(-1))
    # a group of one has std 0 (TRL's convention), so its advantage is 0, not NaN
    assert group_centered(rewards[:3], 1, scale_by_std=True).tolist() == [0.0, 0.0, 0.0]


def test_group_scaling_applies_to_rewards_only():
    rewards, similarity = _batch(8)
    out = timerpo_advantages(rewards, similarity, 5, scale="group")
    torch.testing.assert_close(out.a_main, group_centered(rewards, 5, scale_by_std=True))
    torch.testing.assert_close(out.a_sem, group_centered(similarity, 5), rtol=0, atol=0)


@settings(max_examples=60, deadline=None)
@given(
    groups=st.integers(1, 6),
    size=st.integers(1, 8),
    alpha=st.floats(0.0, 1.0),
    project=st.booleans(),
    scale=st.sampled_from(["none", "group"]),
    seed=st.integers(0, 2**16),
    ties=st.booleans(),
)
def test_invariants_hold_for_any_batch(groups, size, alpha, project, scale, seed, ties):
    rewards, similarity = _batch(seed, groups, size)
    if ties:  # discrete rewards, as the outcome reward often is
        rewards = (rewards * 3).round() / 3
    out = timerpo_advantages(rewards, similarity, size, alpha=alpha, project=project, scale=scale)
    n = groups * size
    for t in (out.advantages, out.a_main, out.a_sem, out.a_perp):
        assert t.shape == (n,) and t.dtype == torch.float64 and torch.isfinite(t).all()
        tolerance = 1e-12 * max(1.0, t.abs().max().item())
        assert (_per_group(t, size).sum(dim=1).abs() <= tolerance).all()
    assert out.beta.shape == (groups,)
    torch.testing.assert_close(out.advantages, out.a_main + alpha * out.a_perp, rtol=0, atol=0)
    if project:
        main = _per_group(out.a_main, size)
        inner = (main * _per_group(out.a_perp, size)).sum(dim=1)
        # Exact algebra: <A_main, A_perp> = <A_main, A_sem> * 1e-8 / (|A_main|^2 + 1e-8), so the
        # residual is relative 1e-8 / |A_main|^2: tiny unless the group's rewards nearly tie.
        sq = (main * main).sum(dim=1)
        bound = main.norm(dim=1) * _per_group(out.a_sem, size).norm(dim=1) * 1e-8 / (sq + 1e-8)
        assert (inner.abs() <= bound * (1 + 1e-6) + 1e-15).all()


def test_dtypes_and_detachment():
    rewards, similarity = _batch(5, dtype=torch.float32)
    similarity.requires_grad_(True)
    out = timerpo_advantages(rewards, similarity, 5)
    assert out.advantages.dtype == torch.float32 and not out.advantages.requires_grad
    mixed = timerpo_advantages(rewards, similarity.detach().double(), 5)
    assert mixed.advantages.dtype == torch.float64
    ints = timerpo_advantages(torch.tensor([1, 0, 1, 1]), torch.tensor([0.5, 0.1, 0.2, 0.2]), 2)
    assert ints.advantages.dtype == torch.float32


def test_bad_input_raises_value_error_naming_the_problem():
    rewards, similarity = _batch(6)
    with pytest.raises(ValueError, match="not a multiple of group_size=4"):
        timerpo_advantages(rewards, similarity, 4)
    with pytest.raises(ValueError, match="similarity has shape"):
        timerpo_advantages(rewards, similarity[:-5], 5)
    with pytest.raises(ValueError, match="1-D"):
        timerpo_advantages(rewards.view(6, 5), similarity.view(6, 5), 5)
    with pytest.raises(ValueError, match="group_size"):
        group_centered(rewards, 0)
    broken = rewards.clone()
    broken[3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        timerpo_advantages(broken, similarity, 5)
    bad_fields = [
        ("alpha", -0.1), ("alpha", float("inf")), ("scale", "batch"), ("eps", 0.0), ("project", 1)
    ]
    for field, value in bad_fields:
        with pytest.raises(ValueError, match=f"AdvantageParams.{field}"):
            timerpo_advantages(rewards, similarity, 5, params=AdvantageParams(**{field: value}))


def test_params_object_and_keyword_overrides_agree():
    rewards, similarity = _batch(7)
    params = AdvantageParams(alpha=0.6, scale="group")
    by_params = timerpo_advantages(rewards, similarity, 5, params)
    by_keywords = timerpo_advantages(rewards, similarity, 5, alpha=0.6, scale="group")
    assert torch.equal(by_params.advantages, by_keywords.advantages)
    reference = AdvantageParams(alpha=0.3, project=True, scale="none", eps=1e-8)
    assert AdvantageParams().validate() == reference

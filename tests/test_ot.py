"""Batched Sinkhorn and grounded similarity against POT and against their invariants."""

from __future__ import annotations

import warnings

import numpy as np
import ot
import pytest
import torch

from anomseer.training.ot import (
    EMPTY_SIDE_COST,
    GroundingParams,
    batched_sinkhorn_cost,
    batched_sinkhorn_plan,
    cosine_cost,
    grounded_similarity,
    token_marginals,
)

EPS, N_ITER = 0.08, 50


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Thousands of tiny bmm calls: on a busy 2-core machine each intra-op parallel region can
    wait milliseconds for a descheduled worker (measured 60-1200 us vs 7 us per call), so these
    tests run single-threaded and restore the setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _pot_cost(a, b, cost, n_iter=N_ITER, stop=0.0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # POT warns when it stops at numItermax
        return float(
            ot.sinkhorn2(a, b, cost, reg=EPS, method="sinkhorn", numItermax=n_iter, stopThr=stop)
        )


def _np_cosine_cost(x, y):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    yn = y / np.linalg.norm(y, axis=1, keepdims=True)
    return np.maximum(0.0, 1.0 - xn @ yn.T)


def _np_norm_softmax(h):
    norms = np.linalg.norm(h, axis=1)
    e = np.exp(norms - norms.max())
    return e / e.sum()


def _random_problem(rng, n, m, kind):
    """One problem (a, b, cost) as numpy float64, of a few shapes of cost and marginal."""
    if kind == "cosine":
        common = rng.normal(size=16)
        x, y = rng.normal(size=(n, 16)) + common, rng.normal(size=(m, 16)) + common
        return rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m)), _np_cosine_cost(x, y)
    if kind == "uniform":
        return rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m)), rng.uniform(0, 2, (n, m))
    # 1-D points with peaked marginals: 50 iterations are visibly short of convergence.
    x, y = np.sort(rng.random(n)), np.sort(rng.random(m))
    a, b = rng.dirichlet(np.full(n, 0.5)), rng.dirichlet(np.full(m, 0.5))
    return a, b, 2 * np.abs(x[:, None] - y[None, :])


def _pad(problems, fill_rng=None, dtype=torch.float64):
    """Stack problems into a right-padded batch; padded cost entries get random junk."""
    n = max(p[0].size for p in problems)
    m = max(p[1].size for p in problems)
    a = torch.zeros(len(problems), n, dtype=dtype)
    b = torch.zeros(len(problems), m, dtype=dtype)
    cost = torch.zeros(len(problems), n, m, dtype=dtype)
    if fill_rng is not None:
        cost += torch.from_numpy(fill_rng.uniform(-5, 50, cost.shape))
    for k, (pa, pb, pc) in enumerate(problems):
        a[k, : pa.size] = torch.from_numpy(pa)
        b[k, : pb.size] = torch.from_numpy(pb)
        cost[k, : pa.size, : pb.size] = torch.from_numpy(pc)
    return a, b, cost


@pytest.mark.parametrize("kind", ["cosine", "uniform", "line"])
def test_cost_matches_pot_sinkhorn2_on_padded_random_batches(kind):
    rng = np.random.default_rng({"cosine": 0, "uniform": 1, "line": 2}[kind])
    for _ in range(4):
        problems = [_random_problem(rng, *rng.integers(2, 40, 2), kind) for _ in range(6)]
        a, b, cost = _pad(problems, fill_rng=rng)
        got = batched_sinkhorn_cost(a, b, cost, eps=EPS, n_iter=N_ITER).numpy()
        want = np.array([_pot_cost(*p) for p in problems])
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


def test_plan_matches_pot_sinkhorn_matrix():
    rng = np.random.default_rng(3)
    problems = [_random_problem(rng, 17, 9, "line"), _random_problem(rng, 5, 12, "cosine")]
    a, b, cost = _pad(problems, fill_rng=rng)
    plan = batched_sinkhorn_plan(a, b, cost, eps=EPS, n_iter=N_ITER)
    for k, (pa, pb, pc) in enumerate(problems):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "did not converge": 50 iterations is the point here
            want = ot.sinkhorn(pa, pb, pc, reg=EPS, method="sinkhorn", numItermax=N_ITER, stopThr=0)
        got = plan[k, : pa.size, : pb.size].numpy()
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
        assert plan[k, pa.size :].abs().sum().item() == 0.0  # padded rows
        assert plan[k, :, pb.size :].abs().sum().item() == 0.0  # padded columns


def test_many_iterations_converge_to_pot_converged_cost():
    rng = np.random.default_rng(4)
    problems = [_random_problem(rng, *rng.integers(10, 35, 2), "line") for _ in range(5)]
    a, b, cost = _pad(problems)
    converged = np.array([_pot_cost(*p, n_iter=200_000, stop=1e-14) for p in problems])
    short = batched_sinkhorn_cost(a, b, cost, n_iter=N_ITER).numpy()
    long = batched_sinkhorn_cost(a, b, cost, n_iter=5000).numpy()
    # The check is meaningful: 50 iterations have not converged on these problems.
    assert np.max(np.abs(short / converged - 1)) > 1e-5
    np.testing.assert_allclose(long, converged, rtol=1e-10, atol=0)


def test_plan_rows_equal_a_and_columns_approach_b():
    rng = np.random.default_rng(5)
    a, b, cost = _pad([_random_problem(rng, 30, 20, "line"), _random_problem(rng, 12, 25, "line")])
    col_err = []
    for n_iter in (1, 10, 50, 2000):
        plan = batched_sinkhorn_plan(a, b, cost, eps=EPS, n_iter=n_iter)
        # The u-update comes last (as in POT), so rows hold a to rounding after any n_iter.
        torch.testing.assert_close(plan.sum(dim=2), a, rtol=1e-12, atol=1e-15)
        col_err.append((plan.sum(dim=1) - b).abs().max().item())
    assert col_err[0] > col_err[2] > col_err[3]
    assert col_err[3] < 1e-10


def test_padding_anywhere_does_not_change_the_cost():
    rng = np.random.default_rng(6)
    problems = [_random_problem(rng, *rng.integers(3, 30, 2), "cosine") for _ in range(5)]
    alone = torch.cat([batched_sinkhorn_cost(*_pad([p])) for p in problems])
    a, b, cost = _pad(problems, fill_rng=rng)
    padded = batched_sinkhorn_cost(a, b, cost)
    torch.testing.assert_close(padded, alone, rtol=1e-12, atol=0)
    # Zero-mass tokens in the middle (left padding, or dropped tokens) are ignored too.
    perm_n, perm_m = torch.randperm(a.shape[1]), torch.randperm(b.shape[1])
    shuffled = batched_sinkhorn_cost(a[:, perm_n], b[:, perm_m], cost[:, perm_n][:, :, perm_m])
    torch.testing.assert_close(shuffled, alone, rtol=1e-12, atol=0)


@pytest.mark.parametrize("chunk", [None, 1, 10_000, 10**9])
def test_cpu_chunking_does_not_change_results(chunk):
    rng = np.random.default_rng(7)
    problems = [_random_problem(rng, *rng.integers(2, 50, 2), "uniform") for _ in range(7)]
    a, b, cost = _pad(problems, rng)
    reference = batched_sinkhorn_cost(a, b, cost, cpu_chunk_bytes=None)
    chunked = batched_sinkhorn_cost(a, b, cost, cpu_chunk_bytes=chunk)
    torch.testing.assert_close(chunked, reference, rtol=1e-13, atol=0)
    plan = batched_sinkhorn_plan(a, b, cost, cpu_chunk_bytes=chunk)
    torch.testing.assert_close((plan * cost).sum(dim=(1, 2)), reference, rtol=1e-12, atol=0)


def test_all_zero_side_gives_zero_plan_without_nan():
    a = torch.tensor([[0.0, 0.0], [0.5, 0.5]], dtype=torch.float64)
    b = torch.tensor([[0.3, 0.7], [0.0, 0.0]], dtype=torch.float64)
    cost = torch.rand(2, 2, 2, dtype=torch.float64)
    assert batched_sinkhorn_plan(a, b, cost).abs().sum().item() == 0.0
    assert batched_sinkhorn_cost(a, b, cost).tolist() == [0.0, 0.0]


def test_float32_is_stable_and_close_to_float64_at_paper_eps():
    rng = np.random.default_rng(8)
    # Costs up to 2 (K down to e^-25) and strongly peaked marginals: the float32 stress case.
    problems = [_random_problem(rng, 60, 40, kind) for kind in ("line", "uniform", "cosine")]
    peaked_a, peaked_b = rng.dirichlet(np.full(30, 0.1)), rng.dirichlet(np.full(20, 0.1))
    problems.append((peaked_a, peaked_b, np.full((30, 20), 2.0)))
    a, b, cost = _pad(problems)
    w64 = batched_sinkhorn_cost(a, b, cost)
    w32 = batched_sinkhorn_cost(a.float(), b.float(), cost.float())
    assert w32.dtype == torch.float32 and torch.isfinite(w32).all()
    torch.testing.assert_close(w32.double(), w64, rtol=1e-4, atol=1e-6)
    assert w64[-1].item() == pytest.approx(2.0, rel=1e-12)  # constant cost: W = C whatever the plan


def test_solver_rejects_bad_input():
    a = torch.full((1, 3), 1 / 3, dtype=torch.float64)
    b = torch.full((1, 2), 0.5, dtype=torch.float64)
    cost = torch.rand(1, 3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="shapes disagree"):
        batched_sinkhorn_cost(a, b, cost.mT)
    with pytest.raises(ValueError, match="expected a"):
        batched_sinkhorn_cost(a[0], b, cost)
    with pytest.raises(ValueError, match="float32 or float64"):
        batched_sinkhorn_cost(a.half(), b.half(), cost.half())
    with pytest.raises(ValueError, match="share one dtype"):
        batched_sinkhorn_cost(a.float(), b, cost)
    with pytest.raises(ValueError, match="marginal a"):
        batched_sinkhorn_cost(-a, b, cost)
    with pytest.raises(ValueError, match="eps"):
        batched_sinkhorn_cost(a, b, cost, eps=0.0)
    with pytest.raises(ValueError, match="n_iter"):
        batched_sinkhorn_cost(a, b, cost, n_iter=0)
    for bad in (float("nan"), float("inf"), -float("inf")):
        broken = cost.clone()
        broken[0, 1, 1] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            batched_sinkhorn_cost(a, b, broken)


def test_token_marginals_softmax_of_norms_over_valid_tokens():
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    weights = token_marginals(hidden, mask)
    want0, want1 = _np_norm_softmax(hidden[0, :3].numpy()), _np_norm_softmax(hidden[1].numpy())
    np.testing.assert_allclose(weights[0, :3].numpy(), want0, rtol=1e-12)
    np.testing.assert_allclose(weights[1].numpy(), want1, rtol=1e-12)
    assert weights[0, 3:].tolist() == [0.0, 0.0] and weights[2].tolist() == [0.0] * 5
    assert token_marginals(hidden.bfloat16(), mask).dtype == torch.float32
    with pytest.raises(ValueError, match="bool mask"):
        token_marginals(hidden, mask.long())


def test_cosine_cost_matches_numpy_and_maps_zero_vectors_to_one():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 8, generator=gen, dtype=torch.float64)
    y = torch.randn(2, 4, 8, generator=gen, dtype=torch.float64)
    y[1, 0] = -x[1, 0]  # antipodal: cost 2
    x[0, 5] = 0.0  # zero (padding) vector: cost 1
    cost = cosine_cost(x, y)
    for k in range(2):
        with np.errstate(invalid="ignore", divide="ignore"):
            want = np.nan_to_num(_np_cosine_cost(x[k].numpy(), y[k].numpy()), nan=1.0)
        np.testing.assert_allclose(cost[k].numpy(), want, rtol=1e-12, atol=1e-12)
    assert cost[1, 0, 0].item() == pytest.approx(2.0) and cost[0, 5].tolist() == [1.0] * 4
    assert cosine_cost(x, x).min().item() >= 0.0  # clamped where rounding gives cos > 1
    assert cosine_cost(x.bfloat16(), y.bfloat16()).dtype == torch.float32


def _reference_similarity(hr, hf, tau=0.5):
    """Independent pipeline: numpy marginals and cosine cost, POT Sinkhorn, exp(-W/tau)."""
    w = _pot_cost(_np_norm_softmax(hr), _np_norm_softmax(hf), _np_cosine_cost(hr, hf))
    return float(np.clip(np.exp(-w / tau), 0, 1)), w


def test_grounded_similarity_matches_pot_pipeline_and_handles_empty_sides():
    gen = torch.Generator().manual_seed(2)
    common = torch.randn(32, generator=gen, dtype=torch.float64)
    h_resp = torch.randn(4, 12, 32, generator=gen, dtype=torch.float64) + common
    ref_one = torch.randn(1, 9, 32, generator=gen, dtype=torch.float64) + common
    h_ref = ref_one.expand(4, -1, -1)  # one shared reference, expanded to the group
    resp_len, ref_len = [12, 7, 0, 3], [9, 9, 9, 0]
    resp_mask = torch.arange(12)[None] < torch.tensor(resp_len)[:, None]
    ref_mask = torch.arange(9)[None] < torch.tensor(ref_len)[:, None]
    sim, w = grounded_similarity(h_resp, resp_mask, h_ref, ref_mask)
    for k in (0, 1):
        want_s, want_w = _reference_similarity(h_resp[k, : resp_len[k]].numpy(), ref_one[0].numpy())
        assert w[k].item() == pytest.approx(want_w, rel=1e-6)
        assert sim[k].item() == pytest.approx(want_s, rel=1e-6)
    assert w[2:].tolist() == [EMPTY_SIDE_COST, EMPTY_SIDE_COST]
    torch.testing.assert_close(sim[2:], torch.full((2,), np.exp(-1 / 0.5), dtype=torch.float64))
    assert ((sim >= 0) & (sim <= 1)).all()


def test_similarity_is_higher_for_a_response_that_repeats_the_reference():
    gen = torch.Generator().manual_seed(3)
    ref = torch.randn(1, 10, 16, generator=gen).expand(2, -1, -1)
    h_resp = torch.stack([ref[0], torch.randn(10, 16, generator=gen)])
    mask = torch.ones(2, 10, dtype=torch.bool)
    sim, w = grounded_similarity(h_resp, mask, ref, mask, GroundingParams(tau=0.5))
    assert sim[0] > sim[1] and 0 <= w[0] < w[1]
    torch.testing.assert_close(sim, torch.exp(-w / 0.5))
    sharper, w_again = grounded_similarity(h_resp, mask, ref, mask, tau=0.1)
    torch.testing.assert_close(w_again, w)
    torch.testing.assert_close(sharper, torch.exp(-w / 0.1))


def test_grounded_similarity_float32_matches_float64_and_carries_no_gradient():
    gen = torch.Generator().manual_seed(4)
    h_resp = torch.randn(3, 20, 24, generator=gen, dtype=torch.float64) + 1.0
    h_ref = torch.randn(3, 15, 24, generator=gen, dtype=torch.float64) + 1.0
    resp_mask, ref_mask = torch.ones(3, 20, dtype=torch.bool), torch.ones(3, 15, dtype=torch.bool)
    resp_mask[1, 11:] = False
    s64, _ = grounded_similarity(h_resp, resp_mask, h_ref, ref_mask)
    leaf = h_resp.float().requires_grad_(True)
    s32, w32 = grounded_similarity(leaf, resp_mask, h_ref.float(), ref_mask)
    assert s32.dtype == torch.float32 and not s32.requires_grad and not w32.requires_grad
    torch.testing.assert_close(s32.double(), s64, rtol=1e-5, atol=1e-6)


def test_grounded_similarity_rejects_unexpanded_reference_and_bad_params():
    h = torch.randn(4, 5, 8)
    mask = torch.ones(4, 5, dtype=torch.bool)
    with pytest.raises(ValueError, match="repeat_interleave"):
        grounded_similarity(h, mask, h[:1], mask[:1])
    for bad in (GroundingParams(eps=-1.0), GroundingParams(n_iter=2.5), GroundingParams(tau=0)):
        with pytest.raises(ValueError, match="GroundingParams"):
            grounded_similarity(h, mask, h, mask, bad)

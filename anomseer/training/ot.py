r"""Batched entropic optimal transport for TimerPO's grounded advantage (method.md §5, steps 2-4).

Each rollout ``i`` of a GRPO group is compared with the expert chain-of-thought (ExpCoT) of its
prompt: the policy's last-layer hidden states of the response tokens and of the ExpCoT tokens are
two weighted point clouds, and the entropic OT cost between them says how far the rollout's
reasoning is from the expert's. The cost becomes a similarity in [0, 1] that
:mod:`anomseer.training.advantages` turns into an auxiliary advantage.

Design decisions
----------------
* **Plain multiplicative Sinkhorn** (Cuturi 2013) on :math:`K = e^{-C/\varepsilon}`, the same
  algorithm and iteration count as POT's ``ot.sinkhorn2(method="sinkhorn")``, so a fixed budget
  of 50 iterations reproduces the reference code's numbers, not only its fixed point. With
  :math:`\varepsilon = 0.08` and a cosine cost in [0, 2], :math:`K \ge e^{-25} \approx 1.4\cdot
  10^{-11}`: far above the smallest normal float32 (1.2e-38), so neither float64 nor float32
  underflows and no log-domain stabilisation is needed (the tests check float32 against float64).
  A naive batched log-domain version (logsumexp per iteration) was measured earlier in this
  project at about 25x slower on CPU.
  Costs above about ``87 * eps`` (float32; ``708 * eps`` in float64) underflow ``K`` to 0, so this
  module is meant for bounded costs such as :func:`cosine_cost`.
* **Padding by zero mass.** Rollouts have different lengths, so a batch is padded; a padded token
  carries zero mass in ``a`` or ``b``. Its scaling starts and stays at exactly 0, so it never
  enters the sums, and the result equals POT's on the unpadded problem, whatever finite value the
  padded cost entries hold. On CPU, tokens after the last positive weight (right padding) are
  also cut off before solving, which saves their work.
* **No gradient.** TimerPO detaches the OT signal (method.md §5, step 6), so everything here runs
  under ``torch.no_grad()`` and overwrites the kernel buffer in place.
* **Batched bmm, cache-sized slices on CPU.** Each half-iteration is one ``torch.bmm`` over a
  batch of problems, on whatever device and dtype the inputs have (float32 or float64; half
  precision is refused because :math:`e^{-25}` underflows in float16). Both products are written
  as (row vector) x (matrix), ``u^T K`` and ``v^T K^T`` (a transposed view): torch's CPU ``bmm``
  with a (B, m, 1) column right operand runs several times slower. Sinkhorn reads the whole
  kernel twice per iteration, so on CPU it is memory-bound: at paper sizes (1024 x 512 per
  rollout) a batch of 10-40 kernels (20-170 MB) streams from DRAM 100 times, while one rollout's
  kernel (2-4 MB) stays in cache for all its iterations. The CPU path therefore runs the batched
  code on slices of the batch whose kernels total at most ``cpu_chunk_bytes`` (2 MiB by default:
  one rollout at paper sizes, the whole batch at the tiny profile's sizes); this measured 2-3x
  faster than one pass over the batch and faster than a loop of POT calls
  (``benchmarks/bench_sinkhorn.py``). GPUs get the whole batch in one pass.

References
----------
.. [1] M. Cuturi, Sinkhorn Distances: Lightspeed Computation of Optimal Transport, NeurIPS 2013.
.. [2] AnomSeer: Reinforcing Multimodal LLMs to Reason for Time-Series Anomaly Detection,
   arXiv 2602.08868 (ICML 2026), TimerPO.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor

DEFAULT_EPS = 0.08
DEFAULT_N_ITER = 50
DEFAULT_TAU = 0.5
EMPTY_SIDE_COST = 1.0
DEFAULT_CPU_CHUNK_BYTES = 2 * 2**20
_SUPPORTED_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class GroundingParams:
    """Parameters of TimerPO's grounded similarity (method.md §5, steps 3-4).

    Attributes
    ----------
    eps : float
        Entropic regularisation of Sinkhorn, > 0 (reference: 0.08). Smaller values sharpen the
        plan but need more iterations; for costs up to 2, ``exp(-C/eps)`` stays a normal float32
        only for eps above about 0.03.
    n_iter : int
        Number of Sinkhorn iterations, >= 1 (reference: 50, no early stop).
    tau : float
        Temperature of ``s = exp(-W / tau)``, > 0 (reference: 0.5).
    """

    eps: float = DEFAULT_EPS
    n_iter: int = DEFAULT_N_ITER
    tau: float = DEFAULT_TAU

    def validate(self) -> GroundingParams:
        """Raise ValueError naming the first field outside its allowed range; return self."""
        if not (isinstance(self.eps, (int, float)) and self.eps > 0):
            raise ValueError(f"GroundingParams.eps must be a number > 0, got {self.eps!r}")
        if isinstance(self.n_iter, bool) or not isinstance(self.n_iter, int) or self.n_iter < 1:
            raise ValueError(f"GroundingParams.n_iter must be an integer >= 1, got {self.n_iter!r}")
        if not (isinstance(self.tau, (int, float)) and self.tau > 0):
            raise ValueError(f"GroundingParams.tau must be a number > 0, got {self.tau!r}")
        return self


_NON_FINITE_COST = (
    "cost has NaN or infinite entries; fill padded positions with any finite value (e.g. 0)"
)


def _check_inputs(a: Tensor, b: Tensor, cost: Tensor, eps: float, n_iter: int) -> None:
    if a.ndim != 2 or b.ndim != 2 or cost.ndim != 3:
        raise ValueError(
            f"expected a (B, n), b (B, m) and cost (B, n, m); got shapes {tuple(a.shape)}, "
            f"{tuple(b.shape)}, {tuple(cost.shape)}"
        )
    if cost.shape != (a.shape[0], a.shape[1], b.shape[1]) or b.shape[0] != a.shape[0]:
        raise ValueError(
            f"shapes disagree: a {tuple(a.shape)}, b {tuple(b.shape)}, cost {tuple(cost.shape)}; "
            "cost[k] must be (len(a[k]), len(b[k])) for every batch row k"
        )
    if cost.dtype not in _SUPPORTED_DTYPES:
        raise ValueError(
            f"cost dtype {cost.dtype} is not supported: use float32 or float64 "
            "(exp(-C/eps) underflows in half precision)"
        )
    if a.dtype != cost.dtype or b.dtype != cost.dtype:
        raise ValueError(
            f"a, b and cost must share one dtype, got {a.dtype}, {b.dtype}, {cost.dtype}"
        )
    for name, weights in (("a", a), ("b", b)):
        if not bool(((weights >= 0) & torch.isfinite(weights)).all()):
            raise ValueError(f"marginal {name} must be finite and >= 0 (padding has mass 0)")
    GroundingParams(eps=eps, n_iter=n_iter).validate()
    # The cost itself is checked through the results (see _sinkhorn_into and
    # batched_sinkhorn_cost): a NaN or infinite entry always reaches them, and checking B numbers
    # is cheaper than another pass over the (B, n, m) cost.


def _sinkhorn_into(
    kernel: Tensor, a: Tensor, b: Tensor, cost: Tensor, eps: float, n_iter: int
) -> Tensor:
    """Overwrite ``kernel`` (shape of ``cost``) with the Sinkhorn plan and return it."""
    # A problem with an all-zero side gets an all-zero plan: zeroing its other side too keeps every
    # scaling at 0 (b / tiny would overflow). The clamps below then only guard 0 / 0.
    tiny = torch.finfo(cost.dtype).tiny
    a_has_mass = (a > 0).any(dim=1, keepdim=True)
    b_has_mass = (b > 0).any(dim=1, keepdim=True)
    a_row = (a * b_has_mass).unsqueeze(1)  # (B, 1, n)
    b_row = (b * a_has_mass).unsqueeze(1)  # (B, 1, m)
    torch.mul(cost, -1.0 / eps, out=kernel).exp_()
    kernel_t = kernel.mT
    # Starting u at 1 on real tokens and 0 on padded ones equals POT's uniform start up to a
    # constant factor (which the plan does not see) on the unpadded problem.
    u = (a_row > 0).to(cost.dtype)
    v = torch.empty_like(b_row)
    kt_u, k_v = torch.empty_like(b_row), torch.empty_like(a_row)
    for _ in range(n_iter):
        torch.bmm(u, kernel, out=kt_u)  # (K^T u)^T
        torch.div(b_row, kt_u.clamp_min_(tiny), out=v)
        torch.bmm(v, kernel_t, out=k_v)  # (K v)^T
        torch.div(a_row, k_v.clamp_min_(tiny), out=u)
    if not (torch.isfinite(u).all() and torch.isfinite(v).all()):
        raise ValueError(_NON_FINITE_COST)
    return kernel.mul_(u.mT).mul_(v)


def _mass_extent(weights: Tensor) -> list[int]:
    """Per batch row, the length of the prefix that ends at the last positive weight."""
    positions = torch.arange(1, weights.shape[1] + 1, device=weights.device)
    return torch.where(weights > 0, positions, 0).amax(dim=1).tolist()


def _solve_in_slices(
    a: Tensor, b: Tensor, cost: Tensor, eps: float, n_iter: int, cpu_chunk_bytes: int | None
) -> Iterator[tuple[slice, Tensor]]:
    """Yield ``(rows, plan)`` covering the batch; ``plan`` is (rows, n', m') with n' <= n, m' <= m.

    Each yielded plan may live in a buffer that the next one overwrites. Tokens after the last
    positive weight of every problem in a slice are cut off before solving (they would carry
    exactly zero plan), which on CPU saves the work spent on right padding.
    """
    batch, n, m = cost.shape
    if cost.device.type != "cpu" or cpu_chunk_bytes is None:
        # One pass, no host-device sync for trimming.
        kernel = torch.empty_like(cost, memory_format=torch.contiguous_format)
        yield slice(0, batch), _sinkhorn_into(kernel, a, b, cost, eps, n_iter)
        return
    step = max(1, cpu_chunk_bytes // max(1, n * m * cost.element_size()))
    extent_a, extent_b = _mass_extent(a), _mass_extent(b)
    buffer = cost.new_empty(min(step, batch) * n * m)
    for start in range(0, batch, step):
        rows = slice(start, min(start + step, batch))
        n_used = max(1, *extent_a[rows]) if n else 0
        m_used = max(1, *extent_b[rows]) if m else 0
        count = rows.stop - rows.start
        kernel = buffer[: count * n_used * m_used].view(count, n_used, m_used)
        a_part, b_part, cost_part = a[rows, :n_used], b[rows, :m_used], cost[rows, :n_used, :m_used]
        yield rows, _sinkhorn_into(kernel, a_part, b_part, cost_part, eps, n_iter)


@torch.no_grad()
def batched_sinkhorn_plan(
    a: Tensor,
    b: Tensor,
    cost: Tensor,
    eps: float = DEFAULT_EPS,
    n_iter: int = DEFAULT_N_ITER,
    *,
    cpu_chunk_bytes: int | None = DEFAULT_CPU_CHUNK_BYTES,
) -> Tensor:
    r"""Entropic OT plans of a batch of problems after a fixed number of Sinkhorn iterations.

    Approximately solves, for every batch row independently,

    .. math::
        \gamma = \mathop{\arg \min}_\gamma \quad \langle \gamma, \mathbf{C} \rangle_F +
        \varepsilon \sum_{i,j} \gamma_{i,j} \log \gamma_{i,j}

        s.t. \ \gamma \mathbf{1} = \mathbf{a}, \quad \gamma^T \mathbf{1} = \mathbf{b},
        \quad \gamma \geq 0

    with the Sinkhorn-Knopp iterations of POT's ``ot.sinkhorn(method="sinkhorn")``:
    :math:`\mathbf{K} = e^{-\mathbf{C}/\varepsilon}`, then ``n_iter`` times
    :math:`\mathbf{v} \leftarrow \mathbf{b} \oslash \mathbf{K}^T\mathbf{u}` followed by
    :math:`\mathbf{u} \leftarrow \mathbf{a} \oslash \mathbf{K}\mathbf{v}`, and
    :math:`\gamma = \mathrm{diag}(\mathbf{u})\,\mathbf{K}\,\mathrm{diag}(\mathbf{v})`.
    The ``u``-update comes last, so the row marginals equal ``a`` exactly (to rounding) and the
    column marginals approach ``b`` as ``n_iter`` grows. There is no early stop (POT with
    ``stopThr=0``).

    Parameters
    ----------
    a : Tensor, shape (B, n)
        Source weights per batch row, >= 0; a zero marks a padded (or massless) token. Each row
        should sum to 1 (as in POT; ``a`` and ``b`` rows must have equal sums).
    b : Tensor, shape (B, m)
        Target weights, same conventions as ``a``.
    cost : Tensor, shape (B, n, m)
        Cost matrices, finite, same dtype (float32 or float64) and device as ``a`` and ``b``.
        Entries in padded rows or columns may hold any finite value.
    eps : float, optional
        Entropic regularisation :math:`\varepsilon > 0` (POT's ``reg``).
    n_iter : int, optional
        Number of iterations, >= 1 (POT's ``numItermax``).
    cpu_chunk_bytes : int or None, optional
        On CPU, solve slices of the batch whose kernels total at most this many bytes (at least
        one problem per slice), so each kernel stays in cache across iterations; ``None`` solves
        the whole batch in one pass. Ignored on other devices. Does not change the result.

    Returns
    -------
    plan : Tensor, shape (B, n, m)
        Transport plans; rows and columns of padded tokens are exactly 0. A batch row whose ``a``
        or ``b`` is all zero gets an all-zero plan.

    References
    ----------
    .. [1] M. Cuturi, Sinkhorn Distances: Lightspeed Computation of Optimal Transport,
       NeurIPS 2013.

    See Also
    --------
    batched_sinkhorn_cost : :math:`\langle \gamma, \mathbf{C} \rangle_F` of this plan.
    ot.sinkhorn : POT's single-problem equivalent.
    """
    _check_inputs(a, b, cost, eps, n_iter)
    plan = None
    for rows, part in _solve_in_slices(a, b, cost, eps, n_iter, cpu_chunk_bytes):
        if part.shape == cost.shape:  # the whole batch in one untrimmed pass
            return part
        if plan is None:
            plan = torch.zeros_like(cost, memory_format=torch.contiguous_format)
        plan[rows, : part.shape[1], : part.shape[2]] = part
    return plan if plan is not None else torch.zeros_like(cost)


@torch.no_grad()
def batched_sinkhorn_cost(
    a: Tensor,
    b: Tensor,
    cost: Tensor,
    eps: float = DEFAULT_EPS,
    n_iter: int = DEFAULT_N_ITER,
    *,
    cpu_chunk_bytes: int | None = DEFAULT_CPU_CHUNK_BYTES,
) -> Tensor:
    r"""Linear transport cost of the entropic Sinkhorn plan, for a batch of problems.

    .. math::
        W = \langle \gamma^{(T)}, \mathbf{C} \rangle_F = \sum_{i,j} \gamma_{i,j} C_{i,j}

    where :math:`\gamma^{(T)}` is the plan of :func:`batched_sinkhorn_plan` after ``n_iter``
    iterations. Like ``ot.sinkhorn2(a, b, M, reg=eps, method="sinkhorn", numItermax=n_iter,
    stopThr=0)``, the entropic term is not included.

    Parameters
    ----------
    a : Tensor, shape (B, n)
        Source weights (zero = padded), see :func:`batched_sinkhorn_plan`.
    b : Tensor, shape (B, m)
        Target weights (zero = padded).
    cost : Tensor, shape (B, n, m)
        Finite cost matrices, float32 or float64.
    eps : float, optional
        Entropic regularisation (POT's ``reg``).
    n_iter : int, optional
        Number of Sinkhorn iterations (POT's ``numItermax``; no early stop).
    cpu_chunk_bytes : int or None, optional
        CPU cache blocking, see :func:`batched_sinkhorn_plan`.

    Returns
    -------
    W : Tensor, shape (B,)
        Transport cost per batch row, in the dtype and on the device of ``cost``. A row with an
        all-zero ``a`` or ``b`` gets 0 (:func:`grounded_similarity` maps empty sides to 1).

    Examples
    --------
    >>> import torch
    >>> a = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    >>> M = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    >>> round(float(batched_sinkhorn_cost(a, a, M, eps=1.0, n_iter=1000)[0]), 6)
    0.268941
    """
    _check_inputs(a, b, cost, eps, n_iter)
    w = cost.new_empty(cost.shape[0])
    for rows, plan in _solve_in_slices(a, b, cost, eps, n_iter, cpu_chunk_bytes):
        count, n_used, m_used = plan.shape
        # <plan, cost> as a batched dot product: no (B, n, m) temporary.
        used_cost = cost[rows, :n_used, :m_used].reshape(count, -1, 1)
        w[rows] = torch.bmm(plan.reshape(count, 1, -1), used_cost).reshape(count)
    if not torch.isfinite(w).all():
        raise ValueError(_NON_FINITE_COST)
    return w


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half-precision hidden states are upcast: bf16 cosines carry ~1e-2 error, which exp(-C/0.08)
    # would magnify into a ~13% change of the kernel.
    return torch.promote_types(dtype, torch.float32)


def token_marginals(hidden: Tensor, mask: Tensor) -> Tensor:
    r"""Token weights from hidden-state norms: a softmax of :math:`\|h_t\|_2` over valid tokens.

    .. math::
        a_t = \frac{\mathbb{1}[t \text{ valid}]\, e^{\|h_t\|_2}}
                   {\sum_{s \text{ valid}} e^{\|h_s\|_2}}

    TimerPO weights tokens this way rather than uniformly (method.md §5, step 3).

    Parameters
    ----------
    hidden : Tensor, shape (B, n, d)
        Hidden states, any floating dtype (half precision is upcast to float32).
    mask : Tensor, shape (B, n), bool
        True for real tokens, False for padding.

    Returns
    -------
    weights : Tensor, shape (B, n)
        Non-negative, each row sums to 1, except rows without any valid token, which are all 0.
        Padded tokens get exactly 0. Dtype float32 (or float64 for float64 input).
    """
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(
            f"expected hidden (B, n, d) and a bool mask (B, n); got hidden {tuple(hidden.shape)} "
            f"and mask {tuple(mask.shape)} of dtype {mask.dtype}"
        )
    norms = torch.linalg.vector_norm(hidden, dim=-1, dtype=_compute_dtype(hidden.dtype))
    logits = norms.masked_fill(~mask, float("-inf"))
    has_token = mask.any(dim=1, keepdim=True)
    # A row with no valid token would softmax to NaN; give it zero mass instead.
    weights = torch.softmax(logits.masked_fill(~has_token, 0.0), dim=1)
    return weights.masked_fill(~mask, 0.0)


def cosine_cost(h_resp: Tensor, h_ref: Tensor) -> Tensor:
    r"""Pairwise cosine cost between two token clouds.

    .. math::
        C_{i,j} = \max\left(0,\; 1 - \frac{\langle h_i, g_j \rangle}{\|h_i\|_2 \|g_j\|_2}\right)
        \in [0, 2]

    A zero vector (e.g. padding) has cosine 0 with everything, hence cost 1; padded entries
    are finite and ignored by the solvers through zero mass.

    Parameters
    ----------
    h_resp : Tensor, shape (B, n, d)
        Response-token hidden states.
    h_ref : Tensor, shape (B, m, d)
        Reference-token hidden states (same B and d).

    Returns
    -------
    cost : Tensor, shape (B, n, m)
        float32, or float64 if either input is float64 (half precision is upcast).
    """
    if (
        h_resp.ndim != 3
        or h_ref.ndim != 3
        or h_resp.shape[0] != h_ref.shape[0]
        or h_resp.shape[2] != h_ref.shape[2]
    ):
        raise ValueError(
            f"expected h_resp (B, n, d) and h_ref (B, m, d) with equal B and d; got "
            f"{tuple(h_resp.shape)} and {tuple(h_ref.shape)}"
        )
    dtype = _compute_dtype(torch.promote_types(h_resp.dtype, h_ref.dtype))
    resp = F.normalize(h_resp.to(dtype), dim=-1)
    ref = F.normalize(h_ref.to(dtype), dim=-1)
    # Rounding can put cos slightly above 1; the max(0, .) keeps the cost non-negative.
    one = torch.ones((), dtype=dtype, device=resp.device)
    return torch.baddbmm(one, resp, ref.mT, alpha=-1.0).clamp_min_(0.0)


@torch.no_grad()
def grounded_similarity(
    h_resp: Tensor,
    resp_mask: Tensor,
    h_ref: Tensor,
    ref_mask: Tensor,
    params: GroundingParams | None = None,
    *,
    eps: float | None = None,
    n_iter: int | None = None,
    tau: float | None = None,
) -> tuple[Tensor, Tensor]:
    r"""TimerPO's grounded similarity of each rollout to its reference reasoning.

    .. math::
        W_k = \langle \gamma_k, C_k \rangle_F, \qquad s_k = \mathrm{clip}(e^{-W_k/\tau}, 0, 1)

    with :math:`a_k, b_k` from :func:`token_marginals`, :math:`C_k` from :func:`cosine_cost` and
    :math:`\gamma_k` from :func:`batched_sinkhorn_plan` (``params.eps``, ``params.n_iter``).
    A rollout with no valid response token, or whose reference has no valid token, gets
    :math:`W = 1` (method.md §5, step 3). No gradient flows (TimerPO detaches this signal).

    The reference text (ExpCoT) is shared by the G rollouts of a prompt; pass it already expanded
    to one row per rollout, e.g. ``h_ref_per_prompt.repeat_interleave(G, dim=0)`` for TRL's
    layout (consecutive rows form a group), or ``h.expand(B, -1, -1)`` for a single prompt.

    Parameters
    ----------
    h_resp : Tensor, shape (B, n, d)
        Last-layer hidden states of each rollout's response tokens (padded to n).
    resp_mask : Tensor, shape (B, n), bool
        True for real response tokens.
    h_ref : Tensor, shape (B, m, d)
        Hidden states of the reference text encoded alone, one row per rollout.
    ref_mask : Tensor, shape (B, m), bool
        True for real reference tokens.
    params : GroundingParams, optional
        eps, n_iter, tau; defaults to ``GroundingParams()`` (0.08, 50, 0.5).
    eps, n_iter, tau : optional
        Override the matching field of ``params`` for this call.

    Returns
    -------
    similarity : Tensor, shape (B,)
        :math:`s \in [0, 1]`.
    W : Tensor, shape (B,)
        Transport cost per rollout (1 for an empty side).
    """
    overrides = {"eps": eps, "n_iter": n_iter, "tau": tau}
    params = replace(
        params or GroundingParams(), **{k: v for k, v in overrides.items() if v is not None}
    ).validate()
    if h_ref.shape[0] != h_resp.shape[0]:
        raise ValueError(
            f"h_ref has batch {h_ref.shape[0]} but h_resp has {h_resp.shape[0]}: expand the shared "
            "reference to one row per rollout (e.g. repeat_interleave(G, dim=0))"
        )
    a = token_marginals(h_resp, resp_mask)
    b = token_marginals(h_ref, ref_mask)
    cost = cosine_cost(h_resp, h_ref)
    dtype = cost.dtype
    w = batched_sinkhorn_cost(a.to(dtype), b.to(dtype), cost, eps=params.eps, n_iter=params.n_iter)
    empty = ~resp_mask.any(dim=1) | ~ref_mask.any(dim=1)
    w = w.masked_fill(empty, EMPTY_SIDE_COST)
    similarity = torch.exp(-w / params.tau).clamp_(0.0, 1.0)
    return similarity, w

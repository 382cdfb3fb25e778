"""Batched torch Sinkhorn vs a per-rollout loop of POT's ``ot.sinkhorn2``, at paper-like sizes.

TimerPO solves one entropic OT problem per rollout: n ~ 1024 response tokens against m = 512
ExpCoT tokens, hidden size d = 2048 (Qwen2.5-VL-3B), B = 10 or 40 rollouts per micro-batch.
This script times, side by side, on the same costs and marginals:

1. a Python loop of ``ot.sinkhorn2(a, b, M, reg=0.08, method="sinkhorn", numItermax=50,
   stopThr=0)`` on per-rollout numpy arrays (each rollout trimmed to its own length),
2. :func:`anomseer.training.ot.batched_sinkhorn_cost` on CPU (one padded batch), as shipped
   (cache-sized slices of the batch) and as one pass over the whole batch
   (``cpu_chunk_bytes=None``), to show why the CPU path slices,
3. the same on CUDA when a GPU is visible (one pass).

The cosine cost (the (B, n, d) x (B, d, m) product, about 2 n m d B flops) is timed separately
in its own column with :func:`anomseer.training.ot.cosine_cost`, since both solvers take the same
cost matrices. Every row repeats each solver several times, interleaved, and reports the fastest
run, which is the least disturbed by other processes on a shared machine. The CPU thread count
is set for torch and for numpy's BLAS (through threadpoolctl when installed) alike, so both
solvers get the same cores.

Usage::

    python benchmarks/bench_sinkhorn.py          # B = 10, 40; float32, float64; 1, 2 threads
    python benchmarks/bench_sinkhorn.py --quick  # B = 10 only, 1 thread
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import numpy as np
import ot
import torch

from anomseer.training.ot import (
    DEFAULT_EPS,
    DEFAULT_N_ITER,
    batched_sinkhorn_cost,
    cosine_cost,
    token_marginals,
)

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # the benchmark still runs; numpy's BLAS then uses its own default threads
    threadpool_limits = None


def make_batch(batch: int, n: int, m: int, d: int, dtype: torch.dtype, seed: int = 0):
    """Hidden states with a shared direction (LLM states are anisotropic) and ragged lengths.

    Returns h_resp (B, n, d), resp_mask (B, n), h_ref (B, m, d), ref_mask (B, m).
    """
    gen = torch.Generator().manual_seed(seed)
    common = 1.5 * torch.randn(1, 1, d, generator=gen)
    h_resp = (torch.randn(batch, n, d, generator=gen) + common).to(dtype)
    h_ref = (torch.randn(batch, m, d, generator=gen) + common).to(dtype)
    resp_len = torch.randint(n // 2, n + 1, (batch,), generator=gen)
    resp_len[0] = n
    resp_mask = torch.arange(n)[None, :] < resp_len[:, None]
    ref_mask = torch.ones(batch, m, dtype=torch.bool)
    h_resp.masked_fill_(~resp_mask[:, :, None], 0.0)
    return h_resp, resp_mask, h_ref, ref_mask


def best_of(fn, repeats: int, sync=lambda: None) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return min(times), out


def thread_limit(threads: int):
    if threadpool_limits is None:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads)


def bench_row(batch, n, m, d, dtype, threads, repeats, use_cuda):
    torch.set_num_threads(threads)
    h_resp, resp_mask, h_ref, ref_mask = make_batch(batch, n, m, d, dtype)
    with thread_limit(threads):
        t_cost, cost = best_of(lambda: cosine_cost(h_resp, h_ref), max(1, repeats - 1))
        a = token_marginals(h_resp, resp_mask)
        b = token_marginals(h_ref, ref_mask)
        lengths = resp_mask.sum(dim=1).tolist()
        a_np = [a[k, : lengths[k]].numpy() for k in range(batch)]
        b_np = [b[k].numpy() for k in range(batch)]
        cost_np = [cost[k, : lengths[k]].numpy() for k in range(batch)]

        def pot_loop():
            kwargs = {"reg": DEFAULT_EPS, "method": "sinkhorn", "numItermax": DEFAULT_N_ITER}
            problems = zip(a_np, b_np, cost_np)
            costs = [ot.sinkhorn2(pa, pb, pc, stopThr=0, **kwargs) for pa, pb, pc in problems]
            return np.array(costs)

        def torch_cpu(chunk="default"):
            if chunk == "default":
                return batched_sinkhorn_cost(a, b, cost)
            return batched_sinkhorn_cost(a, b, cost, cpu_chunk_bytes=chunk)

        pot_times, torch_times, one_pass_times = [], [], []
        w_pot = w_torch = None
        for _ in range(repeats):  # interleaved, so a burst of load hits all alike
            t, w_pot = best_of(pot_loop, 1)
            pot_times.append(t)
            t, w_torch = best_of(torch_cpu, 1)
            torch_times.append(t)
            one_pass_times.append(best_of(lambda: torch_cpu(None), 1)[0])
    rel = float(np.max(np.abs(w_torch.numpy() - w_pot) / np.abs(w_pot)))

    t_cuda = t_cuda_cost = None
    if use_cuda:
        dev = torch.device("cuda")
        hr, hf = h_resp.to(dev), h_ref.to(dev)
        ac, bc, cc = a.to(dev), b.to(dev), cost.to(dev)
        sync = torch.cuda.synchronize
        best_of(lambda: batched_sinkhorn_cost(ac, bc, cc), 1, sync)  # warm-up
        t_cuda_cost, _ = best_of(lambda: cosine_cost(hr, hf), repeats, sync)
        t_cuda, _ = best_of(lambda: batched_sinkhorn_cost(ac, bc, cc), repeats, sync)
    return {
        "B": batch, "dtype": str(dtype).removeprefix("torch."), "threads": threads,
        "cost_cpu": t_cost, "pot_loop": min(pot_times), "torch_cpu": min(torch_times),
        "one_pass": min(one_pass_times),
        "cost_cuda": t_cuda_cost, "torch_cuda": t_cuda, "max_rel_diff": rel,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--n", type=int, default=1024, help="max response tokens")
    parser.add_argument("--m", type=int, default=512, help="reference (ExpCoT) tokens")
    parser.add_argument("--d", type=int, default=2048, help="hidden size")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--dtypes", nargs="+", default=["float32", "float64"], choices=["float32", "float64"]
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="B = 10, 1 thread, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.threads, args.repeats = [10], [1], 2
    use_cuda = torch.cuda.is_available()
    print(
        f"n={args.n} (ragged, n/2..n) m={args.m} d={args.d} eps={DEFAULT_EPS} "
        f"n_iter={DEFAULT_N_ITER}; torch {torch.__version__}, POT {ot.__version__}, "
        f"cpus={os.cpu_count()}, load={os.getloadavg()[0]:.1f}, "
        f"threadpoolctl={'yes' if threadpool_limits else 'no'}, cuda={'yes' if use_cuda else 'no'}"
    )
    header = (
        f"{'B':>3} {'dtype':>7} {'thr':>3} | {'cost cpu s':>10} | {'POT loop s':>10} "
        f"{'torch cpu s':>11} {'POT/torch':>9} {'1-pass s':>8} | {'cost cuda s':>11} "
        f"{'torch cuda s':>12} | {'max rel diff':>12}"
    )
    print(header)
    print("-" * len(header))
    for batch in args.batch:
        for name in args.dtypes:
            for threads in args.threads:
                dtype = getattr(torch, name)
                r = bench_row(batch, args.n, args.m, args.d, dtype, threads, args.repeats, use_cuda)
                na = "n/a"
                cuda_cost = f"{r['cost_cuda']:11.4f}" if r["cost_cuda"] is not None else f"{na:>11}"
                cuda = f"{r['torch_cuda']:12.4f}" if r["torch_cuda"] is not None else f"{na:>12}"
                print(
                    f"{r['B']:>3} {r['dtype']:>7} {r['threads']:>3} | {r['cost_cpu']:10.3f} | "
                    f"{r['pot_loop']:10.3f} {r['torch_cpu']:11.3f} "
                    f"{r['pot_loop'] / r['torch_cpu']:9.2f} {r['one_pass']:8.3f} | "
                    f"{cuda_cost} {cuda} | {r['max_rel_diff']:12.2e}",
                    flush=True,
                )
    print(
        "POT/torch > 1: the batched torch solver is faster. 1-pass: the torch solver with "
        "cpu_chunk_bytes=None. Times are the best of the repeats."
    )


if __name__ == "__main__":
    main()

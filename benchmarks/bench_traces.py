"""Throughput of the expert traces and the blind detector, and the blind detector's accuracy.

For every family it generates ``--n`` series (seed ``--seed``), writes and verifies each trace,
runs the blind detector, and prints one table row: traces/s, verifications/s, blind series/s,
whether every trace verified, the longest trace (words outside the Conclusion's interval list),
and the blind detector's class accuracy (predicted label == the series' label), next to the
accuracy of always answering "normal" (the share of normal series).

    python benchmarks/bench_traces.py                      # 100 per family, seed 42 (eval seed)
    python benchmarks/bench_traces.py --n 20 --stumpy      # also time stumpy's first call

Run single-threaded BLAS for comparable numbers: OPENBLAS_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from anomseer.expert import ExpertParams, blind_detect, matrix_profile, trace_words, verify_trace, write_trace
from anomseer.series import ALL_FAMILIES, generate


def _time_stumpy(values: np.ndarray, m: int) -> None:
    start = time.perf_counter()
    first = matrix_profile(values, m, "stumpy")
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(5):
        matrix_profile(values, m, "stumpy")
    stumpy_s = (time.perf_counter() - start) / 5
    start = time.perf_counter()
    for _ in range(5):
        reference = matrix_profile(values, m, "numpy")
    numpy_s = (time.perf_counter() - start) / 5
    print(
        f"matrix profile (L={values.size}, m={m}): stumpy first call {compile_s:.1f} s (import + JIT), "
        f"then {stumpy_s * 1e3:.1f} ms/call; numpy {numpy_s * 1e3:.1f} ms/call; "
        f"max |difference| {np.abs(first - reference).max():.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="series per family")
    parser.add_argument("--seed", type=int, default=42, help="generator seed (42 = eval split)")
    parser.add_argument("--families", nargs="*", default=list(ALL_FAMILIES))
    parser.add_argument("--stumpy", action="store_true", help="also time stumpy.stump (JIT compile)")
    args = parser.parse_args()
    params = ExpertParams()

    if args.stumpy:
        _time_stumpy(generate("point", 1, args.seed)[0].values, params.mp_window)

    columns = ("n", "trace/s", "verify/s", "blind/s", "verified", "words", "blind acc", "all-normal")
    widths = (4, 8, 9, 8, 9, 6, 9, 10)
    header = f"{'family':15s} " + " ".join(f"{c:>{w}s}" for c, w in zip(columns, widths))
    print(header)
    print("-" * len(header))
    totals = {"n": 0, "trace": 0.0, "verify": 0.0, "blind": 0.0, "correct": 0, "normal": 0, "failed": 0}
    for family in args.families:
        samples = generate(family, args.n, args.seed)
        start = time.perf_counter()
        traces = [write_trace(s, params) for s in samples]
        trace_s = time.perf_counter() - start
        start = time.perf_counter()
        failed = sum(bool(verify_trace(t, s.values, params)) for t, s in zip(traces, samples))
        verify_s = time.perf_counter() - start
        start = time.perf_counter()
        predictions = [blind_detect(s.values, params) for s in samples]
        blind_s = time.perf_counter() - start
        correct = sum(label == s.label for (_, label), s in zip(predictions, samples))
        normal = sum(s.label == "normal" for s in samples)
        n = len(samples)
        print(
            f"{family:15s} {n:4d} {n / trace_s:8.1f} {n / verify_s:9.1f} {n / blind_s:8.1f} "
            f"{n - failed:4d}/{n:<4d} {max(trace_words(t) for t in traces):6d} {correct / n:9.2f} {normal / n:10.2f}"
        )
        for key, value in (("n", n), ("trace", trace_s), ("verify", verify_s), ("blind", blind_s),
                           ("correct", correct), ("normal", normal), ("failed", failed)):
            totals[key] += value
    n = totals["n"]
    print("-" * len(header))
    print(
        f"{'all':15s} {n:4d} {n / totals['trace']:8.1f} {n / totals['verify']:9.1f} {n / totals['blind']:8.1f} "
        f"{n - totals['failed']:4d}/{n:<4d} {'':6s} {totals['correct'] / n:9.2f} {totals['normal'] / n:10.2f}"
    )


if __name__ == "__main__":
    main()

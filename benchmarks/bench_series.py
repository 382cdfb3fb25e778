"""Generation speed of every synthetic family: ``python benchmarks/bench_series.py [--n 400]``.

Prints one row per family: series generated, best wall time of ``--repeat`` runs, series per
second. A split is 400 series per AnomLLM family and 100 per VisualTimeAnomaly type, so the
default sizes are those of one split.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from anomseer.series import ALL_FAMILIES, VTA_TYPES, generate


def bench(family: str, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        generate(family, n, seed=3407)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="series per family (default: 400, VTA 100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per family; the best is reported")
    args = parser.parse_args()

    print(f"{'family':<16}{'n':>6}{'seconds':>10}{'series/s':>11}")
    total_n, total_s = 0, 0.0
    for family in ALL_FAMILIES:
        n = args.n if args.n is not None else (100 if family in VTA_TYPES else 400)
        seconds = bench(family, n, args.repeat)
        total_n, total_s = total_n + n, total_s + seconds
        print(f"{family:<16}{n:>6}{seconds:>10.3f}{n / seconds:>11.0f}")
    print(f"{'all':<16}{total_n:>6}{total_s:>10.3f}{total_n / total_s:>11.0f}")


if __name__ == "__main__":
    main()

"""Benchmark: the reference's per-series rendering loop against ``render_many``.

Both methods render the same N series (sine + noise, length 1000 by default) to PNG files in a
temporary directory, in one run, and the script prints one table:

    method, n, seconds, images/s, ratio (images/s over the naive loop's), CPU ms per image

Wall-clock images/s is the goal; CPU ms per image (this process plus its finished worker
processes) shows the per-image cost, which stays meaningful when other jobs share the cores and
the pool cannot get both of them. ``--repeat`` keeps each method's fastest run.

* ``naive``: :func:`anomseer.render.naive_render_png` in one process: a new pyplot figure per
  series, ``plt.plot``, ``plt.savefig`` (the reference's approach).
* ``render_png``: the fast renderer in this process (figure reuse, static parts drawn once, cheap
  PNG encoder), to separate the single-process gain from the parallel one.
* ``render_many``: the same renderer in a pool of ``--workers`` processes (default: all CPUs).
  Its time includes starting the pool.

Run::

    python benchmarks/bench_render.py [--n 400] [--width 1000 --height 150]
                                      [--workers N] [--repeat K]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from anomseer.render import (
    RenderParams,
    default_workers,
    naive_render_png,
    render_many,
    render_png,
)


def make_series(n: int, length: int, seed: int = 0) -> list[np.ndarray]:
    """N sine + Gaussian-noise series of the given length, with varied period and amplitude."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return [
        rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * t / rng.uniform(50, 300))
        + 0.1 * rng.standard_normal(length)
        for _ in range(n)
    ]


def cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children (render_many's forked workers)."""
    own = time.process_time()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own + children.ru_utime + children.ru_stime


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    fn()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=400, help="number of series (default 400)")
    parser.add_argument("--length", type=int, default=1000, help="series length (default 1000)")
    parser.add_argument("--width", type=int, default=1000, help="image width in px")
    parser.add_argument("--height", type=int, default=150, help="image height in px")
    parser.add_argument("--workers", type=int, default=None, help="render_many workers "
                        "(default: all CPUs)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per method; the fastest "
                        "counts (default 1)")
    args = parser.parse_args()

    params = RenderParams(width_px=args.width, height_px=args.height)
    params.validate()
    series = make_series(args.n, args.length)
    workers = args.workers or default_workers()

    results: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_render_") as tmp:
        out = Path(tmp)
        paths = {m: [out / m / f"{i:05d}.png" for i in range(args.n)]
                 for m in ("naive", "render_png", "render_many")}
        for m in ("naive", "render_png"):
            (out / m).mkdir()

        def naive() -> None:
            for values, path in zip(series, paths["naive"], strict=True):
                naive_render_png(values, path, params)

        def single() -> None:
            for values, path in zip(series, paths["render_png"], strict=True):
                render_png(values, path, params)

        def many() -> None:
            render_many(series, paths["render_many"], params, workers=args.workers)

        names = {"naive": "naive (1 process)", "render_png": "render_png (1 process)",
                 "render_many": f"render_many ({workers} processes)"}
        # Interleave the repeats so that a change in machine load hits every method alike.
        for _ in range(args.repeat):
            for key, fn in (("naive", naive), ("render_png", single), ("render_many", many)):
                wall, cpu = timed(fn)
                if key not in results or wall < results[key][0]:
                    results[key] = (wall, cpu)
        sizes = {m: np.mean([p.stat().st_size for p in paths[m]]) / 1024 for m in paths}

    print(f"{args.n} series of length {args.length} -> {args.width}x{args.height} PNG, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"best of {args.repeat}")
    print(f"{'method':<28}{'n':>6}{'seconds':>10}{'images/s':>11}{'ratio':>8}{'CPU ms/img':>12}")
    naive_rate = args.n / results["naive"][0]
    for key, (wall, cpu) in results.items():
        rate = args.n / wall
        print(f"{names[key]:<28}{args.n:>6}{wall:>10.2f}{rate:>11.1f}{rate / naive_rate:>7.2f}x"
              f"{1000 * cpu / args.n:>12.1f}")
    print("mean file size: " + ", ".join(f"{m} {kb:.1f} KiB" for m, kb in sizes.items()))


if __name__ == "__main__":
    main()

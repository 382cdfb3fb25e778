"""Data checks shared by the Dagster asset checks and the tests: each returns a list of problems
(empty = passed), never raises on bad data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anomseer import datasets
from anomseer.series.taxonomy import LABELS


def check_series(root: Path) -> list[str]:
    problems = []
    for split in datasets.SPLITS:
        for s in datasets.load_split(root, split):
            if not np.isfinite(s.values).all():
                problems.append(f"{s.uid}: {int((~np.isfinite(s.values)).sum())} non-finite values")
            if s.label not in LABELS:
                problems.append(f"{s.uid}: unknown label {s.label!r}")
            prev_end = 0
            for start, end in s.intervals:
                if not (prev_end <= start < end <= s.length):
                    problems.append(f"{s.uid}: invalid or overlapping interval {(start, end)}")
                prev_end = end
            if (s.label == "normal") != (len(s.intervals) == 0):
                problems.append(f"{s.uid}: label {s.label!r} inconsistent with {len(s.intervals)} intervals")
    return problems


def check_images(root: Path) -> list[str]:
    problems = []
    for split in datasets.SPLITS:
        uids = {s.uid for s in datasets.load_split(root, split)}
        files = {p.stem for p in datasets.image_dir(root, split).glob("*.png")}
        problems += [f"{split}: missing image for {u}" for u in sorted(uids - files)]
        problems += [f"{split}: stray image {u}.png" for u in sorted(files - uids)]
    return problems


def check_traces(root: Path) -> list[str]:
    problems = []
    for split in datasets.SPLITS:
        path = datasets.traces_path(root, split)
        rows = datasets.read_jsonl(path)
        uids = {s.uid for s in datasets.load_split(root, split)}
        if {r["uid"] for r in rows} != uids:
            problems.append(f"{split}: traces do not cover exactly the series of the split")
        problems += [f"{r['uid']}: trace does not verify" for r in rows if not r["verified"]]
    return problems

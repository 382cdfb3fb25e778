"""Splits of synthetic series and the on-disk layout every stage agrees on.

Layout under a project root (the repo, or a temporary folder in tests)::

    data/series/{train,eval,heldout}.npz     anomseer.series.io format
    data/images/{split}/{uid}.png            one clean plot per series
    data/traces/{train,eval}.jsonl           expert trace + full target completion per series

``train`` and ``eval`` hold the eight AnomLLM families (reference seeds 3407 and 42); ``heldout``
holds the five VisualTimeAnomaly types, never trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SPLITS = ("train", "eval", "heldout")


@dataclass(frozen=True)
class DataParams:
    """Sizes and seeds of the three splits.

    Attributes:
        train_per_family: series per AnomLLM family in ``train`` (paper: 400 x 8 = 3,200).
        eval_per_family: series per AnomLLM family in ``eval`` (paper: 400).
        heldout_per_type: series per VisualTimeAnomaly type in ``heldout`` (paper: 100).
        train_seed / eval_seed / heldout_seed: reference seeds 3407 / 42; held-out 2025.
        length: AnomLLM series length (1000).
        heldout_length: VisualTimeAnomaly series length (400).
    """

    train_per_family: int = 400
    eval_per_family: int = 400
    heldout_per_type: int = 100
    train_seed: int = 3407
    eval_seed: int = 42
    heldout_seed: int = 2025
    length: int = 1000
    heldout_length: int = 400

    def validate(self) -> None:
        for name in ("train_per_family", "eval_per_family", "heldout_per_type"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("length", "heldout_length"):
            if not 64 <= getattr(self, name) <= 100_000:
                raise ValueError(f"{name} must be in [64, 100000], got {getattr(self, name)}")
        if len({self.train_seed, self.eval_seed, self.heldout_seed}) < 3:
            raise ValueError("train_seed, eval_seed and heldout_seed must differ (splits would overlap)")


def build_split(split: str, params: DataParams):
    """Generate one split; uids are ``{split}-{family}-{i:05d}`` so files sort by family."""
    from anomseer.series import FAMILIES, VTA_TYPES, generate
    from anomseer.series.sample import Sample

    if split == "heldout":
        families, n, seed, length = VTA_TYPES, params.heldout_per_type, params.heldout_seed, params.heldout_length
    elif split in ("train", "eval"):
        n = params.train_per_family if split == "train" else params.eval_per_family
        seed = params.train_seed if split == "train" else params.eval_seed
        families, length = FAMILIES, params.length
    else:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    out = []
    for family in families:
        for i, s in enumerate(generate(family, n, seed, length=length)):
            out.append(Sample(s.values, s.intervals, s.label, s.family, uid=f"{split}-{family}-{i:05d}"))
    return out


def series_path(root: Path, split: str) -> Path:
    return Path(root) / "data" / "series" / f"{split}.npz"


def image_dir(root: Path, split: str) -> Path:
    return Path(root) / "data" / "images" / split


def image_path(root: Path, split: str, uid: str) -> Path:
    return image_dir(root, split) / f"{uid}.png"


def traces_path(root: Path, split: str) -> Path:
    return Path(root) / "data" / "traces" / f"{split}.jsonl"


def load_split(root: Path, split: str):
    """The samples of one split, with a clear error when the stage has not run."""
    from anomseer.series.io import load_samples

    return load_samples(series_path(root, split))


def read_jsonl(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: run the stage that writes it (see `dvc dag`)")
    rows = []
    with path.open() as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno} is not valid JSON ({exc}); rerun the stage") from None
    return rows


def write_jsonl(path: Path, rows) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")


def training_rows(root: Path, split: str = "train") -> list[dict]:
    """Rows for SFT and TimerPO: image path, prompt, target completion and the truth.

    Keys: uid, family, image, prompt, completion, reference_text (the ExpCoT), true_intervals
    (JSON string, so Arrow keeps one column type), true_label, length.
    """
    from anomseer.task import build_prompt

    rows = []
    for tr in read_jsonl(traces_path(root, split)):
        rows.append(
            {
                "uid": tr["uid"],
                "family": tr["family"],
                "image": str(image_path(root, split, tr["uid"])),
                "prompt": build_prompt(tr["length"]),
                "completion": tr["completion"],
                "reference_text": tr["trace"],
                "true_intervals": json.dumps(tr["intervals"]),
                "true_label": tr["label"],
                "length": tr["length"],
            }
        )
    return rows

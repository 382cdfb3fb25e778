"""Detection on a user's own series: read, validate, window/resample, ask the model, map back.

The model was trained on plots of series of one length L (1000 for AnomLLM). A shorter series is
resampled to L and the answer scaled back; a longer one is cut into windows of L with 50%
overlap, each window answered on its own, intervals mapped to the user's indices and merged.
Every model folder carries ``anomseer_meta.json`` (series length, render params) written by the
training stages, so a served model renders plots exactly as in training.
"""

from __future__ import annotations

import collections
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from anomseer.series.sample import merge_intervals

META_FILE = "anomseer_meta.json"
MIN_LENGTH = 16


class InputError(ValueError):
    """The user's series cannot be analysed as given; the message says why and what to do."""


def write_model_meta(model_dir: Path, length: int, render_params) -> None:
    (Path(model_dir) / META_FILE).write_text(
        json.dumps({"length": int(length), "render": asdict(render_params)}, indent=2, sort_keys=True)
    )


def read_model_meta(model_dir: Path) -> dict:
    path = Path(model_dir) / META_FILE
    if not path.exists():
        return {"length": 1000, "render": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is corrupt ({exc}); re-run the training stage that wrote it") from None


def read_series(path: str | Path, column: str | None = None) -> np.ndarray:
    """Read one univariate series from a CSV (a header row is optional) or ``.npy`` file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if path.suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"{path} is not a plain numeric .npy array ({exc})") from None
        arr = np.asarray(arr)
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        if arr.ndim != 1:
            raise InputError(f"{path} holds an array of shape {arr.shape}; save one series as a 1-D array")
        if not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"{path} holds {arr.dtype} values, not numbers")
        return arr.astype(np.float64)
    import pandas as pd

    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a readable CSV ({exc})") from None
    if df.shape[1] >= 1 and all(_is_number(c) for c in df.columns):
        df = pd.read_csv(path, header=None)  # no header row: the first line is data
    if column is not None:
        if column not in df.columns:
            raise InputError(f"{path} has no column {column!r}; columns are {[str(c) for c in df.columns]}")
        series = df[column]
    else:
        numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
        if not numeric:
            raise InputError(f"{path} has no numeric column; columns are {[str(c) for c in df.columns]}")
        if len(numeric) > 1:
            raise InputError(
                f"{path} has {len(numeric)} numeric columns {[str(c) for c in numeric]}; choose one with --column NAME"
            )
        series = df[numeric[0]]
    if not pd.api.types.is_numeric_dtype(series):
        bad = pd.to_numeric(series, errors="coerce").isna() & series.notna()
        raise InputError(f"column {series.name!r} has non-numeric values at rows {np.flatnonzero(bad)[:10].tolist()}")
    return series.to_numpy(dtype=np.float64)


def _is_number(text) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def validate_series(values: np.ndarray, interpolate: bool = False) -> np.ndarray:
    """Check a series before analysis; NaN/inf are reported (or linearly interpolated on request)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise InputError("the series is empty")
    bad = ~np.isfinite(values)
    if bad.any():
        where = np.flatnonzero(bad)
        if not interpolate:
            raise InputError(
                f"the series has {int(bad.sum())} NaN/inf values (first at indices {where[:10].tolist()}); "
                "clean them or pass --interpolate to fill them linearly"
            )
        if bad.all():
            raise InputError("every value of the series is NaN/inf")
        good = np.flatnonzero(~bad)
        values = values.copy()
        values[bad] = np.interp(where, good, values[good])
    if values.size < MIN_LENGTH:
        raise InputError(f"the series has {values.size} points; at least {MIN_LENGTH} are needed")
    if np.ptp(values) == 0:
        raise InputError("the series is constant: there is nothing to detect (every value is %g)" % values[0])
    return values


def _windows(n: int, length: int) -> list[tuple[int, int]]:
    """Window starts/ends covering [0, n) with windows of ``length`` and 50% overlap."""
    if n <= length:
        return [(0, n)]
    step = length // 2
    starts = list(range(0, n - length + 1, step))
    if starts[-1] + length < n:
        starts.append(n - length)
    return [(s, s + length) for s in starts]


@dataclass
class Detection:
    intervals: list[tuple[int, int]]
    label: str
    reasoning: str
    windows: int
    well_formed: bool

    def to_dict(self) -> dict:
        return {
            "intervals": [list(iv) for iv in self.intervals],
            "label": self.label,
            "reasoning": self.reasoning,
            "windows": self.windows,
            "well_formed": self.well_formed,
        }


class Detector:
    """A loaded model ready to explain series of any length."""

    def __init__(self, model, processor, length: int, render_params, max_new_tokens: int = 384):
        self.model, self.processor = model, processor
        self.length, self.render_params, self.max_new_tokens = int(length), render_params, max_new_tokens

    @classmethod
    def from_dir(cls, model_dir: str | Path, max_new_tokens: int = 384) -> "Detector":
        from anomseer.modeling.loading import load_model_and_processor
        from anomseer.render import RenderParams

        meta = read_model_meta(Path(model_dir))
        model, processor = load_model_and_processor(str(model_dir))
        return cls(model, processor, meta["length"], RenderParams(**meta.get("render", {})), max_new_tokens)

    def _answer_windows(self, chunks: list[np.ndarray]):
        import tempfile

        from anomseer.modeling.generation import generate_completions
        from anomseer.render import load_image, render_png
        from anomseer.task import build_prompt, parse_completion

        images = []
        with tempfile.TemporaryDirectory() as tmp:
            for i, chunk in enumerate(chunks):
                path = Path(tmp) / f"w{i}.png"
                render_png(chunk, path, self.render_params)
                images.append(load_image(path))
            prompts = [build_prompt(self.length)] * len(chunks)
            texts = generate_completions(self.model, self.processor, images, prompts, self.max_new_tokens)
        return [parse_completion(t, self.length) for t in texts]

    def detect(self, values: np.ndarray, interpolate: bool = False) -> Detection:
        values = validate_series(values, interpolate=interpolate)
        n, L = values.size, self.length
        if n < L:  # resample to the trained length, answer, scale indices back
            x = np.linspace(0, n - 1, L)
            chunks, spans, scale = [np.interp(x, np.arange(n), values)], [(0, n)], n / L
        else:
            spans = _windows(n, L)
            chunks, scale = [values[s:e] for s, e in spans], 1.0
        parsed = self._answer_windows(chunks)
        intervals, labels, reasons = [], [], []
        for (s, _e), p in zip(spans, parsed):
            for a, b in p.intervals or ():
                lo, hi = int(np.floor(a * scale)) + s, int(np.ceil(b * scale)) + s
                intervals.append((max(0, lo), min(n, max(hi, lo + 1))))
            if p.label and p.label != "normal" and p.intervals:
                labels.append(p.label)
            if p.reasoning:
                reasons.append(p.reasoning if len(spans) == 1 else f"[{s}, {_e}): {p.reasoning}")
        label = collections.Counter(labels).most_common(1)[0][0] if labels else "normal"
        merged = merge_intervals(intervals) if label != "normal" else []
        return Detection(merged, label, "\n".join(reasons), len(spans), all(p.well_formed for p in parsed))


def plot_detection(values: np.ndarray, detection: Detection, path: str | Path) -> Path:
    """An annotated PNG: the series with the detected intervals shaded and the class in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 3), dpi=100)
    ax.plot(np.arange(len(values)), values, color="steelblue", lw=1)
    for s, e in detection.intervals:
        ax.axvspan(s, e, color="crimson", alpha=0.25)
    ax.set_title(f"AnomSeer: {detection.label} ({len(detection.intervals)} interval(s))")
    ax.set_xlabel("index")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

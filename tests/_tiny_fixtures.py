"""Shared helpers for the model-layer tests: synthetic sine plots and a very small Qwen2.5-VL.

Import the fixtures into a test module (``from _tiny_fixtures import micro_model_dir, ...``);
pytest then discovers them there. Everything is built locally in seconds; nothing downloads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anomseer.modeling.tiny import TinyModelParams

#: Even smaller than the tiny profile so the tests stay fast on 2 shared cores: 224 x 56 px plots
#: (16 image tokens), a 64-wide text model and a 32-wide ViT, integers up to 100.
MICRO_PARAMS = TinyModelParams(
    text_hidden_size=64,
    text_layers=2,
    text_heads=2,
    text_kv_heads=1,
    text_intermediate_size=128,
    mrope_section=(4, 6, 6),
    max_position_embeddings=1024,
    vision_depth=2,
    vision_hidden_size=32,
    vision_heads=2,
    vision_intermediate_size=64,
    fullatt_block_indexes=(1,),
    window_size=56,
    image_width=224,
    image_height=56,
    vocab_size=600,
    max_int=100,
    seed=0,
)

PROMPT = (
    "You are a time series analysis expert. A time series plot of length {length} is provided. "
    "Identify anomalous intervals and the anomaly type."
)


def sine_completion(start: int, end: int) -> str:
    """A target in the task format, anomalous interval [start, end)."""
    return (
        f"<think>The sine wave is regular except for a jump near index {start}.</think>"
        f"<answer>[[{start}, {end}]]</answer><class>global point</class>"
    )


def render_sine(path: Path, length: int, spike_at: int, size: tuple[int, int] = (448, 112)) -> Path:
    """Render a sine with a spike at ``spike_at`` as a ``size`` px PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(length)
    values = np.sin(2 * np.pi * 0.05 * t)
    values[spike_at : spike_at + 3] += 3.0
    fig = plt.figure(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    ax = fig.add_axes((0.05, 0.2, 0.93, 0.75))
    ax.plot(t, values, color="steelblue", linewidth=1)
    ax.set_xlim(0, length)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def sine_rows(folder: Path, n: int, length: int = 100) -> list[dict[str, str]]:
    """``n`` rows (image, prompt, completion) with spikes at distinct positions."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        start = 5 + (i * 37) % (length - 20)
        image = render_sine(folder / f"sine_{i}.png", length, start)
        rows.append({"image": str(image), "prompt": PROMPT.format(length=length), "completion": sine_completion(start, start + 3)})
    return rows


def corpus_for(rows: list[dict[str, str]]) -> list[str]:
    return [r["prompt"] for r in rows] + [r["completion"] for r in rows]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Two OpenMP threads on two cores shared with other jobs run several times slower than one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def sine_dataset(tmp_path_factory) -> list[dict[str, str]]:
    return sine_rows(tmp_path_factory.mktemp("sine_plots"), 8)


@pytest.fixture(scope="session")
def micro_model_dir(tmp_path_factory, sine_dataset) -> Path:
    from anomseer.modeling.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("micro_model"), corpus_for(sine_dataset), MICRO_PARAMS)

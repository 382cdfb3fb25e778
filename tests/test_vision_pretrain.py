"""Dense ViT pre-training and the answer-only warm-up of the tiny base model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _tiny_fixtures import MICRO_PARAMS, render_sine  # noqa: F401
from anomseer.modeling.source import BaseModelParams
from anomseer.training.align import alignment_rows, alignment_sft_params, answer_only
from anomseer.training.vision_pretrain import column_targets, pretrain_vision, token_grid


def test_column_targets_mark_every_column_an_interval_touches():
    # 100 steps over 10 columns: column c covers [10c, 10c + 10).
    assert column_targets([], 100, 10).tolist() == [0.0] * 10
    assert column_targets([(0, 10)], 100, 10).tolist() == [1.0] + [0.0] * 9  # half-open: 10 is column 1
    assert column_targets([(9, 11)], 100, 10).tolist() == [1.0, 1.0] + [0.0] * 8
    assert column_targets([(95, 100), (42, 43)], 100, 10).tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    # Clipped to the series and empty intervals ignored.
    assert column_targets([(90, 500), (30, 30)], 100, 10).tolist() == [0.0] * 9 + [1.0]
    with pytest.raises(ValueError, match="columns"):
        column_targets([(0, 1)], 100, 0)


def test_token_grid_is_the_merged_patch_grid_and_rejects_mixed_sizes():
    assert token_grid(torch.tensor([[1, 8, 32], [1, 8, 32]]), 2) == (4, 16)
    with pytest.raises(ValueError, match="same size"):
        token_grid(torch.tensor([[1, 8, 32], [1, 4, 16]]), 2)
    with pytest.raises(ValueError, match="grid"):
        token_grid(torch.tensor([[1, 7, 32]]), 2)


@pytest.fixture(scope="module")
def spikes(tmp_path_factory):
    """12 micro plots: half normal sines, half with a spike (class + interval targets)."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("vision_plots")
    images, labels, intervals = [], [], []
    for i in range(12):
        spiky = i % 2 == 0
        at = 10 + 7 * i
        path = render_sine(folder / f"p{i}.png", 100, at if spiky else 0, size=(224, 56))
        if not spiky:  # render_sine always spikes; redraw a clean one over it
            import matplotlib.pyplot as plt

            fig = plt.figure(figsize=(2.24, 0.56), dpi=100)
            ax = fig.add_axes((0.05, 0.2, 0.93, 0.75))
            ax.plot(np.sin(2 * np.pi * 0.05 * np.arange(100)), color="steelblue", linewidth=1)
            fig.savefig(path, dpi=100)
            plt.close(fig)
        images.append(Image.open(path).convert("RGB"))
        labels.append("global point" if spiky else "normal")
        intervals.append([(at, at + 3)] if spiky else [])
    return images, labels, intervals


def test_pretraining_trains_the_vit_only_and_lowers_its_loss(tmp_path, spikes):
    from anomseer.modeling.loading import load_model_and_processor
    from anomseer.modeling.tiny import build_tiny_model

    build_tiny_model(tmp_path / "m", ["<answer>[]</answer><class>normal</class> 0 1 2"], MICRO_PARAMS)
    model, processor = load_model_and_processor(tmp_path / "m")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images, labels, intervals = spikes
    seen = []
    history = pretrain_vision(model, processor, images, labels, intervals, [100] * 12, epochs=6, learning_rate=3e-3,
                              batch_size=4, progress=lambda e, n, r: seen.append((e, n)))
    assert seen == [(e, 6) for e in range(1, 7)]
    assert [h["epoch"] for h in history] == list(range(1, 7))
    assert history[-1]["loss"] < history[0]["loss"]
    after = model.state_dict()
    assert set(after) == set(before), "the throw-away heads must not be attached to the model"
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".visual." in k or k.startswith("model.visual") for k in changed), sorted(changed)[:5]
    assert any("merger" in k for k in changed)
    # Same seed, same data -> same history (reproducible).
    model2, _ = load_model_and_processor(tmp_path / "m")
    again = pretrain_vision(model2, processor, images, labels, intervals, [100] * 12, epochs=6, learning_rate=3e-3, batch_size=4)
    assert [round(h["loss"], 6) for h in again] == [round(h["loss"], 6) for h in history]


def test_pretraining_rejects_bad_input(tmp_path, spikes):
    from anomseer.modeling.loading import load_model_and_processor
    from anomseer.modeling.tiny import build_tiny_model

    build_tiny_model(tmp_path / "m", ["<answer>[]</answer>"], MICRO_PARAMS)
    model, processor = load_model_and_processor(tmp_path / "m")
    images, labels, intervals = spikes
    assert pretrain_vision(model, processor, images, labels, intervals, [100] * 12, epochs=0) == []
    with pytest.raises(ValueError, match="differ in length"):
        pretrain_vision(model, processor, images, labels[:3], intervals, [100] * 12, epochs=1)
    with pytest.raises(ValueError, match="taxonomy"):
        pretrain_vision(model, processor, images, ["spike"] * 12, intervals, [100] * 12, epochs=1)


def test_answer_only_rows_keep_image_and_answer_and_drop_reasoning():
    full = "<think>Observation: spike at 40.</think><answer>[[40, 43]]</answer><class>global point</class>"
    assert answer_only(full) == "<answer>[[40, 43]]</answer><class>global point</class>"
    rows = alignment_rows([{"image": "a.png", "prompt": "long prompt", "completion": full, "uid": "x"}], prompt="Find it.")
    assert rows == [{"image": "a.png", "prompt": "Find it.", "completion": "<answer>[[40, 43]]</answer><class>global point</class>"}]
    with pytest.raises(ValueError, match="<answer>"):
        answer_only("<think>no answer</think>")


def test_alignment_hyper_parameters_come_from_the_base_section():
    base = BaseModelParams(align_steps=40, align_learning_rate=2e-4, align_batch_size=3, align_seed=5)
    sft = alignment_sft_params(base)
    sft.validate()
    assert (sft.max_steps, sft.learning_rate, sft.per_device_batch_size, sft.seed) == (40, 2e-4, 3, 5)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"vision_epochs": -1}, "vision_epochs"),
        ({"source": "pretrained", "path": "x", "vision_epochs": 2}, "from-scratch"),
        ({"source": "pretrained", "path": "x", "align_steps": 2}, "from-scratch"),
        ({"vision_learning_rate": 0.0}, "vision_learning_rate"),
        ({"vision_batch_size": 0}, "vision_batch_size"),
        ({"align_steps": -3}, "align_steps"),
        ({"align_warmup_ratio": 1.0}, "align_warmup_ratio"),
    ],
)
def test_base_params_name_the_bad_field(fields, message):
    with pytest.raises(ValueError, match=message):
        BaseModelParams(**fields).validate()

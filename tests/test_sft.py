"""SFT with TRL: completion-only labels, learning, checkpoint resume, LoRA merge."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from transformers import TrainerCallback

from _tiny_fixtures import micro_model_dir, one_torch_thread, sine_dataset  # noqa: F401
from anomseer.modeling.loading import load_model_and_processor
from anomseer.training.sft import SFTParams, build_trainer, make_dataset, run_sft

FAST = SFTParams(per_device_batch_size=4, learning_rate=3e-3, logging_steps=1, save_steps=1000, warmup_ratio=0.0, lr_scheduler="constant")


def test_labels_cover_exactly_the_completion_and_end_of_turn(tmp_path, micro_model_dir, sine_dataset):
    model, processor = load_model_and_processor(micro_model_dir)
    rows = [sine_dataset[0], {**sine_dataset[1], "completion": sine_dataset[1]["completion"] + " A longer target."}]
    dataset = make_dataset(rows)
    trainer = build_trainer(model, processor, dataset, replace(FAST, max_steps=1), tmp_path)
    batch = trainer.data_collator([dataset[0], dataset[1]])
    tok = processor.tokenizer
    for i, row in enumerate(rows):
        ids, labels, mask = batch["input_ids"][i], batch["labels"][i], batch["attention_mask"][i]
        kept = labels != -100
        assert torch.equal(labels[kept], ids[kept])
        assert tok.decode(ids[kept]) == row["completion"] + "<|im_end|>\n"
        # Everything before the completion (system turn, image pads, prompt) is masked, and so is padding.
        first = int(kept.nonzero()[0])
        assert tok.decode(ids[:first]).endswith(row["prompt"] + "<|im_end|>\n<|im_start|>assistant\n")
        assert not kept[ids == processor.image_token_id].any()
        assert not kept[mask == 0].any()
    assert batch["image_grid_thw"].tolist() == [[1, 4, 16], [1, 4, 16]]


def test_rows_are_checked(tmp_path, sine_dataset):
    with pytest.raises(ValueError, match="lacks"):
        make_dataset([{"image": sine_dataset[0]["image"], "prompt": "p"}])
    with pytest.raises(FileNotFoundError, match="rendered_images"):
        make_dataset([{"image": str(tmp_path / "nope.png"), "prompt": "p", "completion": "c"}])
    with pytest.raises(ValueError, match="rows is empty"):
        make_dataset([])


def test_sft_params_validate_names_the_field():
    SFTParams().validate()
    for change, field in [(dict(max_steps=0), "max_steps"), (dict(learning_rate=0.0), "learning_rate"), (dict(lr_scheduler="step"), "lr_scheduler"), (dict(max_length=16), "max_length"), (dict(per_device_batch_size=0), "per_device_batch_size")]:
        with pytest.raises(ValueError, match=field):
            replace(SFTParams(), **change).validate()


def test_loss_falls_on_a_small_repeated_dataset_and_the_result_reloads(tmp_path, micro_model_dir, sine_dataset):
    summary = run_sft(micro_model_dir, sine_dataset, tmp_path / "sft", replace(FAST, max_steps=24, logging_steps=4))
    losses = [loss for _, loss in summary["loss_curve"]]
    assert [step for step, _ in summary["loss_curve"]] == [4, 8, 12, 16, 20, 24]
    assert summary["steps"] == 24 and summary["resumed_from"] is None
    assert losses[-1] < 0.5 * losses[0], losses
    assert summary["samples_per_second"] > 0 and summary["final_loss"] == losses[-1]
    tuned, _ = load_model_and_processor(tmp_path / "sft")
    base, _ = load_model_and_processor(micro_model_dir)
    name = "model.language_model.embed_tokens.weight"
    assert not torch.equal(tuned.state_dict()[name], base.state_dict()[name])


class _KillAfterSave(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"simulated kill after checkpoint {self.step}")


def test_killed_run_resumes_from_its_last_checkpoint_and_matches_an_unbroken_run(tmp_path, micro_model_dir, sine_dataset):
    params = replace(FAST, max_steps=4, save_steps=1)
    unbroken = run_sft(micro_model_dir, sine_dataset, tmp_path / "unbroken", params)
    with pytest.raises(KeyboardInterrupt):
        run_sft(micro_model_dir, sine_dataset, tmp_path / "broken", params, callbacks=[_KillAfterSave(2)])
    assert not (tmp_path / "broken" / "model.safetensors").exists()
    resumed = run_sft(micro_model_dir, sine_dataset, tmp_path / "broken", params)
    assert resumed["resumed_from"].endswith("checkpoint-2")
    assert resumed["steps"] == 4
    assert [s for s, _ in resumed["loss_curve"]] == [1, 2, 3, 4]
    # Same data order and same restored weights/optimizer: the resumed steps repeat the unbroken ones.
    for (step, a), (_, b) in zip(unbroken["loss_curve"], resumed["loss_curve"]):
        assert a == pytest.approx(b, rel=1e-4), step
    fresh = run_sft(micro_model_dir, sine_dataset, tmp_path / "broken", replace(params, max_steps=1), resume=False)
    assert fresh["resumed_from"] is None and fresh["steps"] == 1


def test_lora_run_saves_a_merged_standard_folder(tmp_path, micro_model_dir, sine_dataset):
    params = replace(FAST, max_steps=2, lora=True, lora_r=4, lora_alpha=8, learning_rate=1e-2)
    summary = run_sft(micro_model_dir, sine_dataset, tmp_path / "lora", params)
    assert summary["steps"] == 2
    assert not (tmp_path / "lora" / "adapter_config.json").exists()
    merged, _ = load_model_and_processor(tmp_path / "lora")
    base, _ = load_model_and_processor(micro_model_dir)
    assert not any("lora" in name for name in merged.state_dict())
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], base.state_dict()[q])
    emb = "model.language_model.embed_tokens.weight"
    assert torch.equal(merged.state_dict()[emb], base.state_dict()[emb])

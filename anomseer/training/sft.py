"""Supervised fine-tuning (the ExpCoT cold start) with TRL's ``SFTTrainer``.

Each training row is one plot, its prompt and the target completion
(``<think>trace</think><answer>[[s, e], ...]</answer><class>label</class>``). Rows become TRL's
conversational prompt-completion format with an ``image`` column:

    prompt     = [{"role": "user", "content": prompt}]       # TRL inserts the image first
    completion = [{"role": "assistant", "content": completion}]

TRL's vision collator renders both through the chat template, so the loss covers exactly the
assistant turn (the completion, ``<|im_end|>`` and the newline after it) and never the system
turn, the image placeholders or the prompt.

The same function trains the tiny model from scratch (full fine-tuning, fp32, CPU) and a real
Qwen2.5-VL-3B/7B-Instruct (bf16, optional LoRA on the text and vision projections, several GPUs
under ``accelerate launch``). Checkpoints go to ``out_dir/checkpoints``; a rerun with
``resume=True`` continues from the newest one, so a killed stage loses at most ``save_steps``.
The final weights and processor are saved to ``out_dir`` as a standard folder
(``anomseer.modeling.loading.load_model_and_processor`` reloads it); LoRA adapters are merged
first so downstream stages never need peft.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anomseer.training.sft_params import SFTParams  # noqa: F401  (re-exported)

CHECKPOINTS_DIR = "checkpoints"
_ROW_KEYS = ("image", "prompt", "completion")


def _check_rows(rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        raise ValueError("rows is empty: SFT needs at least one (image, prompt, completion) row")
    for i, row in enumerate(rows):
        missing = [k for k in _ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"row {i} lacks {missing}; each row needs keys {list(_ROW_KEYS)}")
        if not Path(row["image"]).is_file():
            raise FileNotFoundError(f"row {i}: image {row['image']} does not exist; run the `rendered_images` stage first")
        for key in ("prompt", "completion"):
            if not isinstance(row[key], str) or not row[key]:
                raise ValueError(f"row {i}: {key} must be a non-empty string")


def make_dataset(rows: Sequence[dict[str, Any]]):
    """Rows -> a ``datasets.Dataset`` in TRL's conversational prompt-completion + image format.

    Images stay on disk as paths and decode to PIL lazily, one batch at a time.
    """
    import datasets

    _check_rows(rows)
    records = {
        "image": [str(row["image"]) for row in rows],
        "prompt": [[{"role": "user", "content": row["prompt"]}] for row in rows],
        "completion": [[{"role": "assistant", "content": row["completion"]}] for row in rows],
    }
    return datasets.Dataset.from_dict(records).cast_column("image", datasets.Image())


def sft_config(params: SFTParams, out_dir: str | Path):
    """The ``trl.SFTConfig`` for ``params``; checkpoints go to ``out_dir/checkpoints``."""
    from trl import SFTConfig

    on_gpu = torch.cuda.is_available()
    return SFTConfig(
        output_dir=str(Path(out_dir) / CHECKPOINTS_DIR),
        num_train_epochs=float(params.epochs),
        max_steps=params.max_steps,
        per_device_train_batch_size=params.per_device_batch_size,
        gradient_accumulation_steps=params.grad_accumulation,
        learning_rate=params.learning_rate,
        lr_scheduler_type=params.lr_scheduler,
        warmup_steps=params.warmup_ratio,  # a float < 1 is a ratio (warmup_ratio is deprecated)
        weight_decay=params.weight_decay,
        max_grad_norm=params.max_grad_norm,
        max_length=params.max_length,
        seed=params.seed,
        data_seed=params.seed,
        logging_steps=params.logging_steps,
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=params.save_total_limit,
        bf16=bool(params.bf16 and on_gpu),
        use_cpu=not on_gpu,
        gradient_checkpointing=params.gradient_checkpointing,
        completion_only_loss=True,
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=True,
        save_only_model=False,
    )


def lora_config(params: SFTParams):
    """The ``peft.LoraConfig`` for ``params`` (causal LM task, adapters on the named projections)."""
    from peft import LoraConfig

    return LoraConfig(
        r=params.lora_r,
        lora_alpha=params.lora_alpha,
        lora_dropout=params.lora_dropout,
        target_modules=list(params.lora_target_modules),
        task_type="CAUSAL_LM",
    )


def build_trainer(model, processor, dataset, params: SFTParams, out_dir: str | Path, callbacks=None):
    """An ``SFTTrainer`` over ``dataset`` (from :func:`make_dataset`), with the image-only processor."""
    from trl import SFTTrainer

    return SFTTrainer(
        model=model,
        args=sft_config(params, out_dir),
        train_dataset=dataset,
        processing_class=processor,
        peft_config=lora_config(params) if params.lora else None,
        callbacks=list(callbacks or []),
    )


def last_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest ``checkpoint-N`` folder under ``out_dir/checkpoints``, or None."""
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(out_dir) / CHECKPOINTS_DIR
    if not folder.is_dir():
        return None
    found = get_last_checkpoint(str(folder))
    return Path(found) if found else None


class _DropRawLoadWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not message.startswith(("There were missing keys in the checkpoint", "There were unexpected keys in the checkpoint"))


@contextmanager
def _quiet_raw_resume_load(active: bool):
    """Hide the Trainer's key-mismatch warnings of its raw resume load (see ``run_sft``): the
    weights were already loaded correctly, and the warning would list every parameter."""
    if not active:
        yield
        return
    trainer_logger = logging.getLogger("transformers.trainer")
    drop = _DropRawLoadWarnings()
    trainer_logger.addFilter(drop)
    try:
        yield
    finally:
        trainer_logger.removeFilter(drop)


def _save_final(trainer, processor, out_dir: Path, lora: bool) -> None:
    model = trainer.model
    if lora:
        model = model.merge_and_unload()
    # A stale weight shard or index from an earlier save would shadow or mix with this one.
    for pattern in ("model*.safetensors", "model.safetensors.index.json", "adapter_*"):
        for path in out_dir.glob(pattern):
            path.unlink()
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def run_sft(
    model_dir: str | Path,
    rows: Sequence[dict[str, Any]],
    out_dir: str | Path,
    params: SFTParams | None = None,
    resume: bool = True,
    callbacks=None,
) -> dict[str, Any]:
    """Fine-tune the checkpoint at ``model_dir`` on ``rows`` and save the result to ``out_dir``.

    Args:
        model_dir: a Qwen2.5-VL folder (``build_tiny_model`` output or a real checkpoint).
        rows: dicts with ``image`` (PNG path), ``prompt`` and ``completion`` (target text).
        out_dir: gets the final model + processor; checkpoints go to ``out_dir/checkpoints``.
        params: hyper-parameters; None means ``SFTParams()``.
        resume: continue from the newest checkpoint in ``out_dir/checkpoints`` if there is one;
            False deletes old checkpoints and starts over.
        callbacks: extra ``transformers.TrainerCallback`` objects (MLflow logging, ...).

    Returns:
        ``steps`` (global step reached), ``epochs``, ``loss_curve`` [(step, loss)],
        ``token_accuracy_curve`` [(step, accuracy on completion tokens)], ``final_loss`` (last
        logged loss), ``train_rows``, ``resumed_from`` (checkpoint path or None),
        ``wall_seconds`` and ``samples_per_second`` (this call's training loop only; samples are
        steps x effective batch), ``output_dir``.
    """
    from accelerate import PartialState

    from anomseer.modeling.loading import load_model_and_processor

    params = params or SFTParams()
    params.validate()
    out = Path(out_dir)
    dataset = make_dataset(rows)
    processes = PartialState()
    if processes.is_main_process:
        if not resume and (out / CHECKPOINTS_DIR).exists():
            shutil.rmtree(out / CHECKPOINTS_DIR)
        out.mkdir(parents=True, exist_ok=True)
    processes.wait_for_everyone()
    checkpoint = last_checkpoint(out) if resume else None

    dtype = torch.bfloat16 if params.bf16 and torch.cuda.is_available() else None
    # transformers 5.2 saves Qwen2.5-VL checkpoints under the released (legacy) weight names but
    # Trainer's resume loads them raw, matching nothing and keeping the initial weights. So load
    # the weights from the checkpoint ourselves (from_pretrained converts the names); the Trainer
    # still restores optimizer, scheduler, RNG and data position from it. LoRA checkpoints hold
    # adapters only, which the Trainer loads correctly onto the base model.
    weights_from = checkpoint if checkpoint is not None and not params.lora else model_dir
    model, processor = load_model_and_processor(weights_from, dtype=dtype)
    model.train()
    trainer = build_trainer(model, processor, dataset, params, out, callbacks)

    start_step = 0
    if checkpoint is not None:
        from transformers import TrainerState

        start_step = TrainerState.load_from_json(str(checkpoint / "trainer_state.json")).global_step
    threads_before = torch.get_num_threads()
    if params.cpu_threads and not torch.cuda.is_available():
        torch.set_num_threads(params.cpu_threads)
    began = time.perf_counter()
    try:
        with _quiet_raw_resume_load(active=checkpoint is not None and not params.lora):
            trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        torch.set_num_threads(threads_before)
    wall = time.perf_counter() - began

    if trainer.is_world_process_zero():
        _save_final(trainer, processor, out, params.lora)
    trainer.accelerator.wait_for_everyone()

    state = trainer.state
    history = state.log_history
    loss_curve = [(int(h["step"]), float(h["loss"])) for h in history if "loss" in h]
    acc_curve = [(int(h["step"]), float(h["mean_token_accuracy"])) for h in history if "mean_token_accuracy" in h and "loss" in h]
    rows_per_step = params.per_device_batch_size * params.grad_accumulation * trainer.accelerator.num_processes
    # Nominal: a short last batch of an epoch counts as full, so this overstates by < 1 batch per epoch.
    samples = (state.global_step - start_step) * rows_per_step
    return {
        "steps": int(state.global_step),
        "epochs": float(state.epoch or 0.0),
        "loss_curve": loss_curve,
        "token_accuracy_curve": acc_curve,
        "final_loss": loss_curve[-1][1] if loss_curve else float("nan"),
        "train_rows": len(rows),
        "resumed_from": str(checkpoint) if checkpoint else None,
        "wall_seconds": wall,
        "samples_per_second": samples / wall if wall > 0 else float("nan"),
        "output_dir": str(out),
    }

"""Vision-language alignment warm-up of a from-scratch tiny Qwen2.5-VL (stage ``base_model``).

A pretrained Qwen2.5-VL reads charts before SFT starts; the tiny model is random. Trained
directly on expert traces it learns the trace grammar but not to look at the plot: of ~150
completion tokens only a handful depend on the image, and the cheapest fit is the majority answer.
The warm-up is ordinary SFT (the same TRL trainer as ``training/sft.py``) on the train split's
own answers, ``<answer>[[s, e]]</answer><class>label</class>``, behind a short prompt: every
supervised token depends on the plot, and a sample is ~3x shorter than a trace row. It uses no
data and no label that SFT does not already use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anomseer.modeling.source import ALIGN_PROMPT, BaseModelParams
from anomseer.training.sft_params import SFTParams

ANSWER_TAG = "<answer>"


def answer_only(completion: str) -> str:
    """The ``<answer>..</answer><class>..</class>`` tail of a full SFT target (reasoning dropped)."""
    at = completion.find(ANSWER_TAG)
    if at < 0:
        raise ValueError(f"completion has no {ANSWER_TAG} block: {completion[:80]!r}")
    return completion[at:]


def alignment_rows(training_rows: list[dict[str, Any]], prompt: str = ALIGN_PROMPT) -> list[dict[str, Any]]:
    """SFT rows (``datasets.training_rows``) -> warm-up rows: same image, short prompt, answer only."""
    return [{"image": row["image"], "prompt": prompt, "completion": answer_only(row["completion"])} for row in training_rows]


def alignment_sft_params(base: BaseModelParams, cpu_threads: int = 0) -> SFTParams:
    """The SFT hyper-parameters of the warm-up, from the ``base`` section."""
    return SFTParams(
        epochs=1.0,
        max_steps=base.align_steps,
        per_device_batch_size=base.align_batch_size,
        learning_rate=base.align_learning_rate,
        lr_scheduler="cosine",
        warmup_ratio=base.align_warmup_ratio,
        max_length=512,
        seed=base.align_seed,
        logging_steps=max(1, min(25, base.align_steps // 10 or 1)),
        save_steps=max(1, min(200, base.align_steps // 4 or 1)),
        cpu_threads=cpu_threads,
    )


def run_alignment(scratch_dir: str | Path, training_rows: list[dict[str, Any]], out_dir: str | Path, base: BaseModelParams, cpu_threads: int = 0, resume: bool = True) -> dict[str, Any]:
    """Warm up the model at ``scratch_dir`` and save it to ``out_dir`` (``run_sft``'s result dict)."""
    from anomseer.training.sft import run_sft

    return run_sft(scratch_dir, alignment_rows(training_rows), out_dir, alignment_sft_params(base, cpu_threads), resume=resume)

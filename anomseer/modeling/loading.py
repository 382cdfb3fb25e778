"""Load any Qwen2.5-VL checkpoint folder (tiny, SFT/TimerPO output, or a real 3B/7B-Instruct).

One loader for every stage keeps the tiny and paper profiles on the same code path. It never
runs remote code, and always returns the image-only processor (a real checkpoint's folder may
ship a video processor config; we ignore it because loading it needs torchvision).
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from anomseer.modeling.processor import ImageOnlyQwen25VLProcessor

QWEN25_VL_MODEL_TYPE = "qwen2_5_vl"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@contextmanager
def _no_progress_bar():
    # transformers draws one progress-bar update per tensor while loading, ~100 log lines per
    # load of even the tiny model; every stage loads models, so keep stage logs readable.
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _missing(path_or_id: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"no checkpoint at {path_or_id}: run the `sft_checkpoint` stage or pass a Qwen2.5-VL-3B/7B-Instruct path"
    )


def _resolve(path_or_id: str | Path) -> str:
    """A local folder path, or a hub id that resolves from the local Hugging Face cache."""
    text = str(path_or_id)
    path = Path(text).expanduser()
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise _missing(text)
        model_type = json.loads(config.read_text()).get("model_type")
        if model_type != QWEN25_VL_MODEL_TYPE:
            raise ValueError(
                f"{text} holds a {model_type!r} checkpoint, not Qwen2.5-VL (model_type {QWEN25_VL_MODEL_TYPE!r}): "
                "pass a Qwen2.5-VL-3B/7B-Instruct folder or a folder built by `build_tiny_model`"
            )
        return str(path)
    if path.exists() or not _HUB_ID.match(text):
        raise _missing(text)
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(text, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise _missing(text) from err
    if config.model_type != QWEN25_VL_MODEL_TYPE:
        raise ValueError(f"{text} is a {config.model_type!r} checkpoint, not Qwen2.5-VL (model_type {QWEN25_VL_MODEL_TYPE!r})")
    return text


def load_processor(path_or_id: str | Path) -> ImageOnlyQwen25VLProcessor:
    """The image-only processor of a checkpoint folder (see the module docstring)."""
    return ImageOnlyQwen25VLProcessor.from_pretrained(_resolve(path_or_id), trust_remote_code=False)


def load_model_and_processor(
    path_or_id: str | Path,
    dtype: torch.dtype | str | None = None,
    device: str | torch.device | None = None,
) -> tuple[Qwen2_5_VLForConditionalGeneration, ImageOnlyQwen25VLProcessor]:
    """Load a Qwen2.5-VL model and its image-only processor.

    Args:
        path_or_id: a checkpoint folder, or a hub id already in the local Hugging Face cache.
        dtype: weights dtype (``torch.bfloat16`` for the paper profile); None keeps the dtype the
            checkpoint was saved in.
        device: where to put the model (``"cpu"``, ``"cuda:0"``); None leaves it on the CPU.

    Returns:
        ``(model, processor)``, the model in eval mode.

    Raises:
        FileNotFoundError: nothing loadable at ``path_or_id``.
        ValueError: the folder holds some other architecture (the message names it).
    """
    source = _resolve(path_or_id)
    with _no_progress_bar():
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            source, dtype=dtype if dtype is not None else "auto", trust_remote_code=False
        )
    if device is not None:
        model = model.to(device)
    processor = ImageOnlyQwen25VLProcessor.from_pretrained(source, trust_remote_code=False)
    return model.eval(), processor


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """Parameter counts ``{"total", "text", "vision"}``; tied weights count once.

    ``vision`` is the ViT plus its patch merger (``model.model.visual``); ``text`` is the rest
    (embeddings, decoder, head).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    visual = base.model.visual
    total = sum(p.numel() for p in base.parameters())
    vision = sum(p.numel() for p in visual.parameters())
    return {"total": total, "text": total - vision, "vision": vision}

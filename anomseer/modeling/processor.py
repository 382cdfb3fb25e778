"""An image-only Qwen2.5-VL processor that works without torchvision.

transformers' stock ``Qwen2_5_VLProcessor`` (and ``AutoProcessor``) insist on a video processor,
and the only video processors need torchvision, whose wheels here are CUDA builds that break CPU
torch. Time-series plots are still images, so the subclass below drops the video processor and
otherwise behaves exactly like the stock one: same tokens, same chat template, same
``pixel_values`` / ``image_grid_thw``. It saves a standard folder whose ``processor_class`` is the
stock ``Qwen2_5_VLProcessor``, so a machine that has torchvision (a GPU box running vLLM) loads the
same folder with ``AutoProcessor``; here ``ImageOnlyQwen25VLProcessor.from_pretrained`` loads it.

``plot_size`` pins every image to one grid: images are resized to exactly ``(width, height)``
before the Qwen image processor, whose ``min_pixels == max_pixels == width * height`` then keeps
them there, so every plot costs the same number of image tokens. ``None`` (real checkpoints)
keeps Qwen's own dynamic resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from transformers import PreTrainedTokenizerBase, Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin

try:  # the PIL backend's name in newer transformers; 5.2 calls it plainly Qwen2VLImageProcessor
    from transformers import Qwen2VLImageProcessorPil as QwenImageProcessor  # type: ignore[attr-defined]
except ImportError:
    from transformers import Qwen2VLImageProcessor as QwenImageProcessor

#: Qwen2.5-VL's ViT patch side and the 2x2 patch merge before the language model.
QWEN_PATCH_SIZE = 14
QWEN_MERGE_SIZE = 2
QWEN_TEMPORAL_PATCH_SIZE = 2


def check_plot_size(width: int, height: int, patch_size: int = QWEN_PATCH_SIZE, merge_size: int = QWEN_MERGE_SIZE) -> None:
    """Raise ValueError unless both sides are positive multiples of ``patch_size * merge_size``."""
    factor = patch_size * merge_size
    for name, side in (("width", width), ("height", height)):
        if not isinstance(side, int) or side < factor or side % factor:
            raise ValueError(f"image {name} must be a positive multiple of {factor} px (patch {patch_size} x merge {merge_size}), got {side!r}")


def build_image_processor(
    width: int,
    height: int,
    patch_size: int = QWEN_PATCH_SIZE,
    merge_size: int = QWEN_MERGE_SIZE,
    temporal_patch_size: int = QWEN_TEMPORAL_PATCH_SIZE,
) -> QwenImageProcessor:
    """Qwen's PIL/numpy image processor fixed to one ``width x height`` grid (Qwen's normalisation)."""
    check_plot_size(width, height, patch_size, merge_size)
    pixels = width * height
    return QwenImageProcessor(
        min_pixels=pixels,
        max_pixels=pixels,
        patch_size=patch_size,
        merge_size=merge_size,
        temporal_patch_size=temporal_patch_size,
    )


def _fit(image: Any, size: tuple[int, int]) -> Any:
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            image = opened.convert("RGB")
    if isinstance(image, Image.Image) and image.size != size:
        return image.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    return image


def _fit_all(images: Any, size: tuple[int, int]) -> Any:
    if isinstance(images, (list, tuple)):
        return [_fit_all(item, size) for item in images]
    return _fit(images, size)


class ImageOnlyQwen25VLProcessor(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without the video processor (see the module docstring).

    Args:
        image_processor: a ``Qwen2VLImageProcessor`` (PIL backend).
        tokenizer: the checkpoint's tokenizer (Qwen's, or the project-trained one).
        chat_template: Jinja chat template; defaults to the tokenizer's.
        plot_size: ``(width, height)`` every image is resized to, or None for Qwen's dynamic size.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        chat_template: str | None = None,
        plot_size: Sequence[int] | None = None,
        **kwargs,
    ):
        if not isinstance(tokenizer, PreTrainedTokenizerBase):
            raise ValueError("ImageOnlyQwen25VLProcessor needs a tokenizer")
        if plot_size is not None:
            plot_size = [int(v) for v in plot_size]
            if len(plot_size) != 2:
                raise ValueError(f"plot_size must be (width, height), got {plot_size!r}")
            check_plot_size(plot_size[0], plot_size[1], image_processor.patch_size, image_processor.merge_size)
        self.plot_size = plot_size
        self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
        self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
        self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(self.image_token)
        self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(self.video_token)
        if chat_template is None:
            chat_template = tokenizer.chat_template
        # Skip Qwen2_5_VLProcessor.__init__: it forwards a video_processor argument that the mixin
        # would then require.
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    def __call__(self, images=None, text=None, videos=None, **kwargs):
        if videos is not None:
            raise ValueError("ImageOnlyQwen25VLProcessor handles images only; render the series as a plot instead of passing videos")
        if images is not None and self.plot_size is not None:
            images = _fit_all(images, (self.plot_size[0], self.plot_size[1]))
        return super().__call__(images=images, text=text, videos=None, **kwargs)

    @property
    def model_input_names(self):
        names = list(dict.fromkeys(self.tokenizer.model_input_names + self.image_processor.model_input_names))
        return names

    def to_dict(self) -> dict[str, Any]:
        # The stock class name lets AutoProcessor load the folder wherever torchvision exists.
        output = super().to_dict()
        output["processor_class"] = Qwen2_5_VLProcessor.__name__
        return output

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        result = super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        # ProcessorMixin stamps our class name into tokenizer_config.json; restore the stock one
        # for the same reason as in to_dict.
        self.tokenizer._set_processor_class(Qwen2_5_VLProcessor.__name__)
        self.tokenizer.save_pretrained(save_directory)
        return result


def image_token_count(processor: ImageOnlyQwen25VLProcessor, image_size: tuple[int, int] | None = None) -> int:
    """Image tokens one plot costs in the language model's sequence.

    Args:
        processor: the model's processor.
        image_size: ``(width, height)`` of the input image; defaults to ``processor.plot_size``
            (required when the processor has no fixed plot size).
    """
    ip = processor.image_processor
    size = processor.plot_size if processor.plot_size is not None else image_size
    if size is None:
        raise ValueError("this processor has no fixed plot_size: pass image_size=(width, height)")
    width, height = int(size[0]), int(size[1])
    if processor.plot_size is None:
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

        height, width = smart_resize(
            height, width, factor=ip.patch_size * ip.merge_size, min_pixels=ip.min_pixels, max_pixels=ip.max_pixels
        )
    patches = (height // ip.patch_size) * (width // ip.patch_size)
    return math.floor(patches / ip.merge_size**2)

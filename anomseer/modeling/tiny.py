"""Build a small Qwen2.5-VL from scratch: the tiny profile's base model.

The architecture is exactly ``Qwen2_5_VLForConditionalGeneration`` (window-attention ViT, 2x2
patch merger, M-RoPE language model), only narrower and shallower, so SFT, GRPO/TimerPO,
evaluation and serving run the same code on it as on Qwen2.5-VL-3B/7B-Instruct.

Why these default sizes (2 shared CPU cores, minutes per epoch):

- Image tokens dominate the sequence. A 448 x 112 px plot is 32 x 8 ViT patches of 14 px; the
  2x2 merge leaves 16 x 4 = 64 tokens for the language model, about a third of a typical
  sample (system + image + prompt + completion ~ 200-300 tokens). Qwen's default resolution
  would give the reference 1000 x 150 plot ~180 tokens and triple the cost. The 4:1 aspect
  keeps the time axis long (16 merged columns, one per ~62 points of a 1000-point series, with
  the ViT seeing 14 px patches below that); the height only needs to show the amplitude.
  Width is the lever for localization precision vs cost (design.md): any multiple of 28 works.
- The vision tower is cheap on 256 patches: hidden 128, depth 4 (4 heads of 32). Qwen's window
  attention (112 px = 8 x 8 patch windows) alternates with full attention at blocks 1 and 3 so
  every patch sees the whole plot twice.
- The language model does the reading and writing: hidden 256, 4 layers, 4 query / 2 key-value
  heads of 64 (Qwen's grouped-query ratio), SwiGLU 512, tied embeddings (a small vocabulary makes
  the untied head a waste). The MLPs are 2x wide, not Qwen's ~5x: at 3x the MLP was three
  quarters of the text FLOPs, and a training step here is bound by matrix products (measured). M-RoPE sections [8, 12, 12] split the 32 rotary frequencies in
  Qwen's 16:24:24 proportion.
- The vocabulary (2048) is trained on the project corpus with every integer 0..1000 as one token
  (see tokenizer.py): about 1,000 integers, 22 special tokens and ~770 learnt merges.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

from anomseer.modeling.processor import (
    QWEN_MERGE_SIZE,
    ImageOnlyQwen25VLProcessor,
    build_image_processor,
    check_plot_size,
)
from anomseer.modeling.tokenizer import PAD_TOKEN, fixed_token_count, train_tokenizer

TINY_PARAMS_FILE = "anomseer_tiny_params.json"


@dataclass(frozen=True)
class TinyModelParams:
    """Dimensions of the from-scratch Qwen2.5-VL (the module docstring says why these defaults).

    Text model: ``text_hidden_size`` (256), ``text_layers`` (4), ``text_heads`` (4),
    ``text_kv_heads`` (2; divides ``text_heads``), ``text_intermediate_size`` (512, SwiGLU),
    ``max_position_embeddings`` (4096), ``rope_theta`` (1e6, Qwen2.5's),
    ``mrope_section`` ((8, 12, 12); sums to head_dim / 2), ``tie_word_embeddings`` (True).
    Vision tower: ``vision_depth`` (4), ``vision_hidden_size`` (128), ``vision_heads`` (4),
    ``vision_intermediate_size`` (256), ``fullatt_block_indexes`` ((1, 3); the other blocks use
    window attention over ``window_size`` px (112)), ``patch_size`` (14), ``spatial_merge_size``
    (2), ``temporal_patch_size`` (2): Qwen's.
    Plot: ``image_width`` x ``image_height`` px (448 x 112: 32 x 8 patches, 64 image tokens).
    Tokenizer: ``vocab_size`` target (2048) and ``max_int`` (1000; every integer up to it is one
    token, use the longest series length).
    ``seed`` (0): the random initialisation is a pure function of it.
    """

    text_hidden_size: int = 256
    text_layers: int = 4
    text_heads: int = 4
    text_kv_heads: int = 2
    text_intermediate_size: int = 512
    max_position_embeddings: int = 4096
    rope_theta: float = 1_000_000.0
    mrope_section: tuple[int, int, int] = (8, 12, 12)
    tie_word_embeddings: bool = True
    vision_depth: int = 4
    vision_hidden_size: int = 128
    vision_heads: int = 4
    vision_intermediate_size: int = 256
    fullatt_block_indexes: tuple[int, ...] = field(default=(1, 3))
    window_size: int = 112
    patch_size: int = 14
    spatial_merge_size: int = QWEN_MERGE_SIZE
    temporal_patch_size: int = 2
    image_width: int = 448
    image_height: int = 112
    vocab_size: int = 2048
    max_int: int = 1000
    seed: int = 0

    @property
    def text_head_dim(self) -> int:
        return self.text_hidden_size // self.text_heads

    @property
    def image_tokens(self) -> int:
        """Language-model tokens per plot: patches / merge^2."""
        patches = (self.image_width // self.patch_size) * (self.image_height // self.patch_size)
        return patches // self.spatial_merge_size**2

    def validate(self) -> None:
        positive = (
            "text_hidden_size text_layers text_heads text_kv_heads text_intermediate_size max_position_embeddings "
            "vision_depth vision_hidden_size vision_heads vision_intermediate_size window_size patch_size "
            "spatial_merge_size temporal_patch_size"
        ).split()
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.text_hidden_size % self.text_heads or self.text_head_dim % 2:
            raise ValueError(f"text_hidden_size ({self.text_hidden_size}) must split into text_heads ({self.text_heads}) heads of even size")
        if self.text_heads % self.text_kv_heads:
            raise ValueError(f"text_kv_heads ({self.text_kv_heads}) must divide text_heads ({self.text_heads})")
        if len(self.mrope_section) != 3 or sum(self.mrope_section) != self.text_head_dim // 2:
            raise ValueError(f"mrope_section must be 3 ints summing to head_dim/2 = {self.text_head_dim // 2}, got {self.mrope_section!r}")
        if self.vision_hidden_size % self.vision_heads or (self.vision_hidden_size // self.vision_heads) % 4:
            raise ValueError(f"vision_hidden_size ({self.vision_hidden_size}) must split into vision_heads ({self.vision_heads}) heads whose size is a multiple of 4")
        if any(not 0 <= i < self.vision_depth for i in self.fullatt_block_indexes):
            raise ValueError(f"fullatt_block_indexes must lie in [0, vision_depth={self.vision_depth}), got {self.fullatt_block_indexes!r}")
        if self.window_size % (self.patch_size * self.spatial_merge_size):
            raise ValueError(f"window_size must be a multiple of {self.patch_size * self.spatial_merge_size} px, got {self.window_size}")
        check_plot_size(self.image_width, self.image_height, self.patch_size, self.spatial_merge_size)
        if not isinstance(self.rope_theta, (int, float)) or self.rope_theta <= 0:
            raise ValueError(f"rope_theta must be > 0, got {self.rope_theta!r}")
        if not isinstance(self.max_int, int) or self.max_int < 9:
            raise ValueError(f"max_int must be an int >= 9, got {self.max_int!r}")
        floor = fixed_token_count(self.max_int)
        if not isinstance(self.vocab_size, int) or self.vocab_size <= floor:
            raise ValueError(f"vocab_size must exceed {floor} for max_int={self.max_int}, got {self.vocab_size!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")


def tiny_config(params: TinyModelParams, tokenizer) -> Qwen2_5_VLConfig:
    """The ``Qwen2_5_VLConfig`` for ``params``, wired to ``tokenizer``'s special-token ids."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")}
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=params.text_hidden_size,
        intermediate_size=params.text_intermediate_size,
        num_hidden_layers=params.text_layers,
        num_attention_heads=params.text_heads,
        num_key_value_heads=params.text_kv_heads,
        max_position_embeddings=params.max_position_embeddings,
        max_window_layers=params.text_layers,
        rope_parameters={"rope_type": "default", "rope_theta": float(params.rope_theta), "mrope_section": list(params.mrope_section)},
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=params.tie_word_embeddings,
    )
    vision_config = dict(
        depth=params.vision_depth,
        hidden_size=params.vision_hidden_size,
        intermediate_size=params.vision_intermediate_size,
        num_heads=params.vision_heads,
        patch_size=params.patch_size,
        spatial_merge_size=params.spatial_merge_size,
        temporal_patch_size=params.temporal_patch_size,
        window_size=params.window_size,
        out_hidden_size=params.text_hidden_size,
        fullatt_block_indexes=list(params.fullatt_block_indexes),
    )
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        vision_token_id=ids["<|vision_pad|>"],
        tie_word_embeddings=params.tie_word_embeddings,
    )


def init_tiny_model(config: Qwen2_5_VLConfig, seed: int) -> Qwen2_5_VLForConditionalGeneration:
    """A randomly initialised model whose weights depend only on ``config`` and ``seed``."""
    # A private generator would be cleaner, but transformers' _init_weights draws from the global
    # one; fork it so callers' random state is left as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    return model.float().eval()


def build_tiny_model(out_dir: str | Path, corpus: Iterable[str], params: TinyModelParams | None = None) -> Path:
    """Train the tokenizer on ``corpus``, build a random tiny Qwen2.5-VL and save a standard folder.

    Args:
        out_dir: folder to write (config.json, model.safetensors, generation_config.json,
            tokenizer + processor files, ``anomseer_tiny_params.json``); created if missing.
        corpus: every text the model will read or write (prompts, traces, completions).
        params: dimensions; None means ``TinyModelParams()``.

    Returns:
        ``out_dir`` as a Path; ``load_model_and_processor(out_dir)`` reloads it.
    """
    params = params or TinyModelParams()
    params.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tokenizer = train_tokenizer(corpus, params.vocab_size, params.max_int)
    processor = ImageOnlyQwen25VLProcessor(
        image_processor=build_image_processor(
            params.image_width, params.image_height, params.patch_size, params.spatial_merge_size, params.temporal_patch_size
        ),
        tokenizer=tokenizer,
        plot_size=(params.image_width, params.image_height),
    )
    config = tiny_config(params, tokenizer)
    model = init_tiny_model(config, params.seed)
    pad = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    # Greedy by default (evaluation); rollouts set their own sampling parameters.
    model.generation_config = GenerationConfig(
        bos_token_id=pad,
        pad_token_id=pad,
        eos_token_id=[tokenizer.eos_token_id, pad],
        do_sample=False,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / TINY_PARAMS_FILE).write_text(json.dumps(asdict(params), indent=2, sort_keys=True) + "\n")
    return out

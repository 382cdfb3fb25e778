"""Where the base model of the lineage comes from: built from scratch (tiny) or a pretrained
Qwen2.5-VL checkpoint (paper), and the alignment warm-up a from-scratch model needs."""

from __future__ import annotations

from dataclasses import dataclass

ALIGN_PROMPT = "Find the anomalies."


@dataclass(frozen=True)
class BaseModelParams:
    """Attributes:
    source: ``tiny`` builds a small Qwen2.5-VL from the ``model`` section and a tokenizer trained
        on this project's corpus; ``pretrained`` loads ``path``.
    path: local folder or hub id of Qwen2.5-VL-3B/7B-Instruct (only for ``pretrained``; the hub
        is only reached if the folder is not local and the machine is online).
    align_steps: optimizer steps of the vision-language alignment warm-up of a ``tiny`` model
        (0 = none, the untrained model is the base). A pretrained Qwen2.5-VL already reads charts;
        a from-scratch one does not, and SFT on ~100-token traces whose few image-dependent
        tokens are drowned by template text leaves it guessing the majority class (measured:
        450 SFT steps, eval loss with the true image equal to the loss with another series'
        image). The warm-up trains on the same train split with the short target
        ``<answer>..</answer><class>..</class>`` (no reasoning, no extra labels) behind a short
        prompt, so every supervised token depends on the plot (training/align.py).
    align_learning_rate (5e-4), align_batch_size (8), align_warmup_ratio (0.05), align_seed (0):
        its AdamW schedule (cosine decay).
    vision_epochs: epochs of dense vision-tower pre-training of a ``tiny`` model before the
        warm-up (0 = none): class + per-column anomaly targets from the train split
        (training/vision_pretrain.py). Without it the from-scratch ViT never learns to see the
        plot (measured: 10 warm-up epochs alone leave eval accuracy at the marginal 20.5%).
    vision_learning_rate (1e-3, one-cycle), vision_batch_size (32), vision_seed (0).
    """

    source: str = "tiny"
    path: str = ""
    align_steps: int = 0
    align_learning_rate: float = 5e-4
    align_batch_size: int = 8
    align_warmup_ratio: float = 0.05
    align_seed: int = 0
    vision_epochs: int = 0
    vision_learning_rate: float = 1e-3
    vision_batch_size: int = 32
    vision_seed: int = 0

    def validate(self) -> None:
        if self.source not in ("tiny", "pretrained"):
            raise ValueError(f"source must be 'tiny' or 'pretrained', got {self.source!r}")
        if self.source == "pretrained" and not self.path:
            raise ValueError("path must name a Qwen2.5-VL checkpoint folder or hub id when source is 'pretrained'")
        for name, minimum in (("align_steps", 0), ("align_batch_size", 1), ("align_seed", 0),
                              ("vision_epochs", 0), ("vision_batch_size", 1), ("vision_seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        for name in ("align_learning_rate", "vision_learning_rate"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        if not 0 <= self.align_warmup_ratio < 1:
            raise ValueError(f"align_warmup_ratio must be in [0, 1), got {self.align_warmup_ratio!r}")
        for name in ("align_steps", "vision_epochs"):
            if getattr(self, name) and self.source != "tiny":
                raise ValueError(f"{name} applies to a from-scratch model only; set it to 0 when source is 'pretrained'")

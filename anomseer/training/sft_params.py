"""Result-affecting knobs of SFT, apart from the trainer so that reading params.yaml does not
import torch/TRL."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SFTParams:
    """SFT hyper-parameters. Defaults suit the tiny profile (a from-scratch model on CPU).

    Schedule: ``epochs`` (20.0) over the rows, or ``max_steps`` optimizer steps when > 0 (-1);
    ``per_device_batch_size`` (8) x ``grad_accumulation`` (1) x processes rows per step.
    Optimiser (AdamW): ``learning_rate`` (5e-4 for the from-scratch tiny model: in a probe where
    only the image decides the answer, 5e-4 started reading the plot after ~200 steps and stayed
    there, while 1e-3 got there and then collapsed back to guessing; about 1e-5 for a pretrained
    3B/7B), ``lr_scheduler`` ("cosine"), ``warmup_ratio`` (0.05),
    ``weight_decay`` (0.01, method.md §6), ``max_grad_norm`` (1.0, method.md §6).
    ``max_length`` (1024 tokens; method.md §6 prompt + response budgets are 1024 each, so use 2048
    for the paper profile): longer rows are truncated from the end, never inside the image.
    ``seed`` (0): model-side randomness and the data order.
    Bookkeeping: ``logging_steps`` (10), ``save_steps`` (200), ``save_total_limit`` (2 checkpoints).
    LoRA (paper profile only; full fine-tuning otherwise, as in method.md §6): ``lora`` (False),
    ``lora_r`` (64), ``lora_alpha`` (128), ``lora_dropout`` (0.05), ``lora_target_modules``
    (the text model's attention and MLP projections and the ViT's ``qkv`` / ``attn.proj`` /
    MLP; peft matches them as name suffixes).
    Precision and memory: ``bf16`` (False; True on GPUs for the paper profile, ignored on CPU),
    ``gradient_checkpointing`` (False; True for 3B/7B).
    ``cpu_threads`` (0 = torch's default): torch threads while training on CPU. On two cores
    shared with other jobs, 1 thread measured several times faster than 2 (OpenMP threads spin
    while waiting for a busy core).
    """

    epochs: float = 20.0
    max_steps: int = -1
    per_device_batch_size: int = 8
    grad_accumulation: int = 1
    learning_rate: float = 5e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_length: int = 1024
    seed: int = 0
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int = 2
    lora: bool = False
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    lora_target_modules: tuple[str, ...] = (
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "attn.qkv",
        "attn.proj",
    )
    bf16: bool = False
    gradient_checkpointing: bool = False
    cpu_threads: int = 0

    def validate(self) -> None:
        if not isinstance(self.epochs, (int, float)) or not self.epochs > 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs!r}")
        if not isinstance(self.max_steps, int) or (self.max_steps < 1 and self.max_steps != -1):
            raise ValueError(f"max_steps must be -1 (use epochs) or >= 1, got {self.max_steps!r}")
        for name in ("per_device_batch_size", "grad_accumulation", "logging_steps", "save_steps", "save_total_limit", "lora_r", "lora_alpha"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0 < self.learning_rate <= 1:
            raise ValueError(f"learning_rate must be in (0, 1], got {self.learning_rate!r}")
        if self.lr_scheduler not in ("constant", "constant_with_warmup", "linear", "cosine"):
            raise ValueError(f"lr_scheduler must be one of constant, constant_with_warmup, linear, cosine; got {self.lr_scheduler!r}")
        for name in ("warmup_ratio", "lora_dropout"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if not 0 <= self.weight_decay <= 1:
            raise ValueError(f"weight_decay must be in [0, 1], got {self.weight_decay!r}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm!r}")
        if not isinstance(self.max_length, int) or self.max_length < 128:
            raise ValueError(f"max_length must be an int >= 128 (it must hold the image tokens), got {self.max_length!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        if not isinstance(self.cpu_threads, int) or self.cpu_threads < 0:
            raise ValueError(f"cpu_threads must be an int >= 0 (0 = torch's default), got {self.cpu_threads!r}")
        if self.lora and not self.lora_target_modules:
            raise ValueError("lora_target_modules must name at least one module when lora is True")

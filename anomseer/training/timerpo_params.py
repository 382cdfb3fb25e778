"""Result-affecting knobs of a TimerPO run, apart from the trainer so that reading params.yaml
does not import TRL/torch."""

from __future__ import annotations

import math
from dataclasses import dataclass

_SCALES = ("none", "group")
_REFERENCES = ("expcot", "generic")


@dataclass(frozen=True)
class TimerPOParams:
    """Result-affecting knobs of a TimerPO run (defaults: the tiny CPU profile).

    The paper profile (method.md section 6) is: prompts_per_step 128, num_generations 5,
    max_completion_length 1024, learning_rate 1e-6, epochs 10 (about 250 steps on 3,200
    series), bf16 True, gradient_checkpointing True, use_vllm True.

    Attributes:
        epochs: passes over the training rows (used when max_steps is -1).
        max_steps: optimizer steps; -1 means ``epochs`` decides.
        prompts_per_step: distinct prompts per optimizer step (one rollout batch, all processes).
        num_generations: rollouts per prompt (G).
        micro_batch_rollouts: rollouts per forward/backward micro-batch on one process; 0 means
            the whole per-process share at once. Does not change the maths (dapo normalises by the
            whole batch's token count), only memory.
        max_completion_length: tokens per rollout at most.
        temperature: sampling temperature of the rollouts.
        learning_rate: AdamW learning rate, constant schedule (paper 1e-6; the tiny profile
            uses 2e-5, chosen with ``anomseer sweep-timerpo``: 1e-4 collapsed its policy within a
            few steps).
        weight_decay: AdamW weight decay.
        max_grad_norm: gradient clipping norm.
        beta: KL coefficient (k3 estimator, as a loss).
        epsilon: PPO clip range.
        entropy_coef: entropy bonus coefficient.
        alpha: weight of the grounded advantage; 0 is the vanilla GRPO ablation.
        project: orthogonal projection of A_sem on A_main per group; False is the ablation.
        advantage_scale: "none" (mean-centred, reference code) or "group" (also / group std).
        reference: "expcot" uses each row's reference_text; "generic" replaces it with
            `GENERIC_COT_TEMPLATE` (the generic-CoT ablation).
        ot_eps, ot_iters, ot_tau: Sinkhorn regularisation, iterations, similarity temperature.
        reference_max_tokens: the reference text is truncated to this many tokens.
        seed: seeds the data order, sampling and initialisation of the trainer.
        save_steps: checkpoint every this many steps (under out_dir/checkpoints).
        save_total_limit: checkpoints kept.
        use_vllm: sample with vLLM (GPU only).
        bf16: bf16 mixed precision (ignored, i.e. False, on CPU).
        gradient_checkpointing: recompute activations in the backward pass (saves memory).
    """

    epochs: float = 1.0
    max_steps: int = -1
    prompts_per_step: int = 8
    num_generations: int = 4
    micro_batch_rollouts: int = 0
    max_completion_length: int = 128
    temperature: float = 1.0
    learning_rate: float = 3e-5
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    beta: float = 0.001
    epsilon: float = 0.2
    entropy_coef: float = 0.001
    alpha: float = 0.3
    project: bool = True
    advantage_scale: str = "none"
    reference: str = "expcot"
    ot_eps: float = 0.08
    ot_iters: int = 50
    ot_tau: float = 0.5
    reference_max_tokens: int = 512
    seed: int = 0
    save_steps: int = 50
    save_total_limit: int = 2
    use_vllm: bool = False
    bf16: bool = True
    gradient_checkpointing: bool = False

    def validate(self) -> "TimerPOParams":
        def need(ok: bool, name: str, allowed: str) -> None:
            if not ok:
                raise ValueError(f"TimerPOParams.{name} must be {allowed}, got {getattr(self, name)!r}")

        def is_int(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        def is_num(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        need(is_num(self.epochs) and self.epochs > 0, "epochs", "a number > 0")
        need(is_int(self.max_steps) and (self.max_steps == -1 or self.max_steps >= 1), "max_steps", "-1 or >= 1")
        need(is_int(self.prompts_per_step) and self.prompts_per_step >= 1, "prompts_per_step", "an integer >= 1")
        need(is_int(self.num_generations) and self.num_generations >= 2, "num_generations", "an integer >= 2")
        need(is_int(self.micro_batch_rollouts) and self.micro_batch_rollouts >= 0, "micro_batch_rollouts", ">= 0")
        need(is_int(self.max_completion_length) and self.max_completion_length >= 1, "max_completion_length", ">= 1")
        need(is_num(self.temperature) and self.temperature > 0, "temperature", "a number > 0")
        need(is_num(self.learning_rate) and self.learning_rate > 0, "learning_rate", "a number > 0")
        need(is_num(self.weight_decay) and self.weight_decay >= 0, "weight_decay", "a number >= 0")
        need(is_num(self.max_grad_norm) and self.max_grad_norm > 0, "max_grad_norm", "a number > 0")
        need(is_num(self.beta) and self.beta >= 0, "beta", "a number >= 0")
        need(is_num(self.epsilon) and 0 < self.epsilon < 1, "epsilon", "a number in (0, 1)")
        need(is_num(self.entropy_coef) and self.entropy_coef >= 0, "entropy_coef", "a number >= 0")
        need(is_num(self.alpha) and self.alpha >= 0, "alpha", "a number >= 0")
        need(isinstance(self.project, bool), "project", "true or false")
        need(self.advantage_scale in _SCALES, "advantage_scale", f"one of {_SCALES}")
        need(self.reference in _REFERENCES, "reference", f"one of {_REFERENCES}")
        need(is_num(self.ot_eps) and self.ot_eps > 0, "ot_eps", "a number > 0")
        need(is_int(self.ot_iters) and self.ot_iters >= 1, "ot_iters", "an integer >= 1")
        need(is_num(self.ot_tau) and self.ot_tau > 0, "ot_tau", "a number > 0")
        need(is_int(self.reference_max_tokens) and self.reference_max_tokens >= 1, "reference_max_tokens", ">= 1")
        need(is_int(self.seed) and self.seed >= 0, "seed", "an integer >= 0")
        need(is_int(self.save_steps) and self.save_steps >= 1, "save_steps", "an integer >= 1")
        need(is_int(self.save_total_limit) and self.save_total_limit >= 1, "save_total_limit", "an integer >= 1")
        for name in ("use_vllm", "bf16", "gradient_checkpointing"):
            need(isinstance(getattr(self, name), bool), name, "true or false")
        return self

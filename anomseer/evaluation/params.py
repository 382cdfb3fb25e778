"""Result-affecting knobs of the evaluation stage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvaluationParams:
    """Attributes:
    max_new_tokens: generation budget per completion (the trace plus answer must fit).
    temperature: 0 = greedy (the reference validates at 0.4).
    batch_size: series per generation batch.
    n_boot: bootstrap resamples for the 95% intervals.
    seed: bootstrap / random-baseline / sampling seed.
    low_pct / high_pct: the percentile-threshold baseline flags values outside these percentiles.
    n_examples: example series drawn in the report.
    """

    max_new_tokens: int = 320
    temperature: float = 0.0
    batch_size: int = 16
    n_boot: int = 1000
    seed: int = 0
    low_pct: float = 2.0
    high_pct: float = 98.0
    n_examples: int = 6

    def validate(self) -> None:
        if self.max_new_tokens < 8:
            raise ValueError(f"max_new_tokens must be >= 8, got {self.max_new_tokens}")
        if not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature}")
        if self.batch_size < 1 or self.n_boot < 10:
            raise ValueError("batch_size must be >= 1 and n_boot >= 10")
        if not 0 <= self.low_pct < self.high_pct <= 100:
            raise ValueError(f"need 0 <= low_pct < high_pct <= 100, got {self.low_pct}, {self.high_pct}")

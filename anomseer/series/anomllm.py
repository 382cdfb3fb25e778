"""The eight AnomLLM training families (method.md section 2), bit-reproducible from a seed.

Every family has the same shape: an interval placer draws up to eight anomaly intervals with
exponential gaps and lengths (one shared function, :func:`place_intervals`), a normal signal
is drawn, each interval gets the family's anomaly, and the ``noisy-*`` variants add Gaussian noise
everywhere at the end.

The family constants live in :data:`FAMILY_PARAMS` (one frozen dataclass per signal kind). They
are method constants taken from the AnomLLM reference generator, not tunables; changing them
changes the benchmark.

Departures from the reference, all deliberate:

- Seeding. The reference ``range`` family reseeds NumPy's global generator from OS entropy, so its
  data cannot be regenerated. Here every sample draws from its own ``numpy.random.Generator``
  seeded by ``SeedSequence([seed, stable_family_key(family)], spawn_key=(index,))``: the same
  ``(family, seed)`` gives the same bytes in any process and call order, sample ``i`` does not
  depend on how many samples were requested, and global RNG state is never read or written.
  (The random draws are platform-independent; NumPy's vectorised ``sin`` may differ in the last
  bit between CPU instruction sets, so sine families are bit-identical per platform.)
- Trend slope sign. method.md says a ``trend`` anomaly's slope "may flip"; the AnomLLM reference
  code calls its slope drawer with ``inverse_ratio=0.0``, which never flips. Here
  ``TrendParams.flip_prob`` is 0.5 for ``trend`` (a reversed ramp, ``-U(6, 20)``) and 0 for
  ``flat-trend``; set it to 0 to match the reference code.
- Trend. The reference restarts each linear piece from the previous sample's value, leaving a
  one-sample flat step at every knot; here the trend is the running sum of per-step slopes, a truly
  continuous piecewise-linear curve.
- Length. The constants are defined at the design length 1000. For another length ``L`` every time
  constant (gap and interval means and minima, sine frequencies) is rescaled by ``L / 1000`` so a
  series keeps the same look and the same share of anomaly-free series (the series is the same
  process sampled more or less densely). At ``L = 1000`` the scaling is exact, not approximate.
"""

from __future__ import annotations

import hashlib
import math
import operator
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

from anomseer.series.sample import Interval, Sample
from anomseer.series.taxonomy import ANOMLLM_FAMILY_LABEL, label_for

DESIGN_LENGTH = 1000
#: Shortest series accepted: at a quarter of the design length the fastest oscillation
#: (``freq`` at 3x its 0.03 base frequency) is 0.36 cycles/sample, still below Nyquist (0.5).
MIN_LENGTH = DESIGN_LENGTH // 4
#: Noise of the ``noisy-*`` families (added after the base family, to every sample).
NOISY_STD = 0.08


# --------------------------------------------------------------------------------------------
# Seeding and request checks (shared with :mod:`anomseer.series.vta`).


def stable_family_key(family: str) -> int:
    """A 64-bit key for ``family`` that is the same in every process (unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(family.encode("utf-8"), digest_size=8).digest(), "little")


def sample_rng(family: str, seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index`` of ``family`` under ``seed``.

    Each sample has its own child stream, so sample ``i`` is the same whether 10 or 10,000
    samples are requested, and families never share a stream.
    """
    sequence = np.random.SeedSequence([seed, stable_family_key(family)], spawn_key=(index,))
    return np.random.default_rng(sequence)


def _as_int(value, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def check_request(n, seed, length, default_length: int, min_length: int) -> tuple[int, int, int]:
    """Validate ``(n, seed, length)``; return them as ints with ``length`` defaulted."""
    n = _as_int(n, "n")
    if n < 0:
        raise ValueError(f"n must be >= 0 (number of series to generate), got {n}")
    seed = _as_int(seed, "seed")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    length = default_length if length is None else _as_int(length, "length")
    if length < min_length:
        raise ValueError(
            f"length {length} is too small for this family; use length >= {min_length} "
            f"(default {default_length})"
        )
    return n, seed, length


# --------------------------------------------------------------------------------------------
# Interval placement (one function for every family).


@dataclass(frozen=True)
class Placement:
    """Where anomalies go: alternate a normal gap and an anomaly, both exponential.

    Attributes (all in samples at the design length 1000):
        gap_mean: mean of the exponential gap before each anomaly (the reference's "rate").
        gap_min: a drawn gap shorter than this is raised to it.
        len_mean: mean of the exponential anomaly length.
        len_min: a drawn length shorter than this is raised to it.
        max_intervals: at most this many anomalies per series (8 in the reference).

    The chance that a series has no anomaly is ``exp(-L / gap_mean)`` when ``gap_min < L``: the
    first gap alone must reach the end.
    """

    gap_mean: float
    gap_min: int
    len_mean: float
    len_min: int
    max_intervals: int = 8

    def validate(self) -> None:
        if not self.gap_mean > 0:
            raise ValueError(f"Placement.gap_mean must be > 0, got {self.gap_mean}")
        if self.gap_min < 1:
            raise ValueError(f"Placement.gap_min must be >= 1, got {self.gap_min}")
        if not self.len_mean > 0:
            raise ValueError(f"Placement.len_mean must be > 0, got {self.len_mean}")
        if self.len_min < 1:
            raise ValueError(f"Placement.len_min must be >= 1, got {self.len_min}")
        if self.max_intervals < 1:
            raise ValueError(f"Placement.max_intervals must be >= 1, got {self.max_intervals}")

    def scaled(self, scale: float) -> "Placement":
        """The placement for a series ``scale`` times the design length."""
        if scale == 1.0:
            return self
        return replace(
            self,
            gap_mean=self.gap_mean * scale,
            gap_min=max(1, round(self.gap_min * scale)),
            len_mean=self.len_mean * scale,
            len_min=max(1, round(self.len_min * scale)),
        )


def place_intervals(rng: np.random.Generator, length: int, placement: Placement) -> list[Interval]:
    """Draw anomaly intervals for one series of ``length`` samples.

    From position 0: draw a gap ``max(Exp(gap_mean), gap_min)``, start an anomaly there, draw its
    length ``max(Exp(len_mean), len_min)`` (both floored to ints), clip it to the series end,
    continue after it; stop at the end of the series or after ``max_intervals`` anomalies.

    Returns:
        sorted, disjoint, half-open ``(start, end)`` pairs with ``0 < start < end <= length``;
        consecutive intervals are at least ``gap_min`` apart.
    """
    intervals: list[Interval] = []
    location = 0
    for _ in range(placement.max_intervals):
        gap = int(max(rng.exponential(placement.gap_mean), placement.gap_min))
        start = location + gap
        if start >= length:
            break
        duration = int(max(rng.exponential(placement.len_mean), placement.len_min))
        end = min(length, start + duration)
        intervals.append((start, end))
        location = end
    return intervals


# --------------------------------------------------------------------------------------------
# Family parameters (method constants) and signals.


@dataclass(frozen=True)
class RangeParams:
    """``range``: i.i.d. Gaussian noise; an anomaly adds a same-sign offset drawn per sample.

    Attributes:
        placement: gaps mean 800 (min 10), lengths mean 20 (min 5).
        base_std: standard deviation of the normal signal N(0, base_std).
        shift_low, shift_high: each anomalous sample gets ``sign * U(shift_low, shift_high)``,
            one random sign per interval.
        noise_std: extra N(0, noise_std) added everywhere at the end (0 = none).
    """

    placement: Placement = field(default_factory=lambda: Placement(800.0, 10, 20.0, 5))
    base_std: float = 0.1
    shift_low: float = 0.5
    shift_high: float = 0.8
    noise_std: float = 0.0

    def validate(self) -> None:
        self.placement.validate()
        if not self.base_std > 0:
            raise ValueError(f"RangeParams.base_std must be > 0, got {self.base_std}")
        if not 0 < self.shift_low < self.shift_high:
            raise ValueError(
                f"RangeParams needs 0 < shift_low < shift_high, got {self.shift_low}, {self.shift_high}"
            )
        _check_noise(self)


@dataclass(frozen=True)
class PointParams:
    """``point``: a sine whose anomalous samples are replaced by Gaussian noise.

    Attributes:
        placement: gaps mean 800 (min 200), lengths mean 30 (min 5).
        frequency: sine frequency in cycles per sample at the design length.
        anomaly_std: anomalous samples are N(0, anomaly_std).
        noise_std: extra N(0, noise_std) added everywhere at the end (0 = none).
    """

    placement: Placement = field(default_factory=lambda: Placement(800.0, 200, 30.0, 5))
    frequency: float = 0.03
    anomaly_std: float = 0.5
    noise_std: float = 0.0

    def validate(self) -> None:
        self.placement.validate()
        if not 0 < self.frequency < 0.5:
            raise ValueError(f"PointParams.frequency must be in (0, 0.5), got {self.frequency}")
        if not self.anomaly_std > 0:
            raise ValueError(f"PointParams.anomaly_std must be > 0, got {self.anomaly_std}")
        _check_noise(self)


@dataclass(frozen=True)
class FreqParams:
    """``freq``: ``sin(2*pi*cumsum(f_t))``; inside an anomaly ``f_t`` is multiplied or divided.

    The phase is the running sum of the instantaneous frequency, so the curve never jumps.

    Attributes:
        placement: gaps mean 450 (min 20), lengths mean 15 (min 7).
        frequency: normal frequency in cycles per sample at the design length.
        factor: an anomaly multiplies or divides the frequency by this (50/50 per interval).
        noise_std: extra N(0, noise_std) added everywhere at the end (0 = none).
    """

    placement: Placement = field(default_factory=lambda: Placement(450.0, 20, 15.0, 7))
    frequency: float = 0.03
    factor: float = 3.0
    noise_std: float = 0.0

    def validate(self) -> None:
        self.placement.validate()
        if not 0 < self.frequency < 0.5:
            raise ValueError(f"FreqParams.frequency must be in (0, 0.5), got {self.frequency}")
        if not (self.factor > 1 and self.frequency * self.factor < 0.5):
            raise ValueError(
                f"FreqParams.factor must be > 1 with frequency * factor < 0.5, got {self.factor}"
            )
        _check_noise(self)


@dataclass(frozen=True)
class TrendParams:
    """``trend`` / ``flat-trend``: a sine plus a piecewise-linear trend, min-max scaled to [-1, 1].

    Slopes are in units per series length: a slope ``s`` rises by ``s`` over the whole series.

    Attributes:
        placement: gaps mean 1700 (min 800), lengths mean 100 (min 50).
        frequency: sine frequency in cycles per sample at the design length.
        normal_slope: slope outside anomalies.
        slope_low, slope_high: an anomaly's slope magnitude is ``U(slope_low, slope_high)``.
        flip_prob: chance that an anomaly's slope is negated (the trend reverses); 0 never.
        noise_std: extra N(0, noise_std) added everywhere after the scaling (0 = none).
    """

    placement: Placement = field(default_factory=lambda: Placement(1700.0, 800, 100.0, 50))
    frequency: float = 0.02
    normal_slope: float = 3.0
    slope_low: float = 6.0
    slope_high: float = 20.0
    flip_prob: float = 0.5
    noise_std: float = 0.0

    def validate(self) -> None:
        self.placement.validate()
        if not 0 < self.frequency < 0.5:
            raise ValueError(f"TrendParams.frequency must be in (0, 0.5), got {self.frequency}")
        if not 0 < self.slope_low <= self.slope_high:
            raise ValueError(
                f"TrendParams needs 0 < slope_low <= slope_high, got {self.slope_low}, {self.slope_high}"
            )
        if not 0 <= self.flip_prob <= 1:
            raise ValueError(f"TrendParams.flip_prob must be in [0, 1], got {self.flip_prob}")
        _check_noise(self)


def _check_noise(params) -> None:
    if not params.noise_std >= 0:
        raise ValueError(f"{type(params).__name__}.noise_std must be >= 0, got {params.noise_std}")


def _range_signal(rng, t, intervals, p: RangeParams, scale: float) -> np.ndarray:
    values = rng.normal(0.0, p.base_std, t.size)
    for start, end in intervals:
        sign = 1.0 if rng.integers(0, 2) == 1 else -1.0
        values[start:end] += sign * rng.uniform(p.shift_low, p.shift_high, end - start)
    return values


def _point_signal(rng, t, intervals, p: PointParams, scale: float) -> np.ndarray:
    values = np.sin(2 * np.pi * (p.frequency / scale) * t)
    for start, end in intervals:
        values[start:end] = rng.normal(0.0, p.anomaly_std, end - start)
    return values


def _freq_signal(rng, t, intervals, p: FreqParams, scale: float) -> np.ndarray:
    frequency = np.full(t.size, p.frequency / scale)
    for start, end in intervals:
        frequency[start:end] *= p.factor if rng.random() < 0.5 else 1.0 / p.factor
    return np.sin(2 * np.pi * np.cumsum(frequency))


def _trend_signal(rng, t, intervals, p: TrendParams, scale: float) -> np.ndarray:
    n = t.size
    step = np.full(n, p.normal_slope / n)
    for start, end in intervals:
        slope = rng.uniform(p.slope_low, p.slope_high)
        if p.flip_prob > 0 and rng.random() < p.flip_prob:
            slope = -slope
        step[start:end] = slope / n
    # trend[t+1] - trend[t] = step[t]: continuous, with the anomalous slope over samples start..end.
    trend = np.concatenate(([0.0], np.cumsum(step[:-1])))
    x = np.sin(2 * np.pi * (p.frequency / scale) * t) + trend
    low, high = x.min(), x.max()
    return 2.0 * (x - low) / (high - low) - 1.0


_TRAIN_FAMILY_PARAMS: dict[str, object] = {
    "range": RangeParams(),
    "point": PointParams(),
    "freq": FreqParams(),
    "trend": TrendParams(),
    # The reference's flat-trend anomaly only steepens the trend a little and never reverses it.
    "flat-trend": TrendParams(slope_low=4.5, slope_high=6.0, flip_prob=0.0),
}
for _base in ("point", "freq", "trend"):
    _TRAIN_FAMILY_PARAMS[f"noisy-{_base}"] = replace(_TRAIN_FAMILY_PARAMS[_base], noise_std=NOISY_STD)

#: family name -> its parameters (method constants; see each dataclass for the meaning). Read-only.
FAMILY_PARAMS: Mapping[str, object] = MappingProxyType(
    {name: _TRAIN_FAMILY_PARAMS[name] for name in ANOMLLM_FAMILY_LABEL}
)
del _TRAIN_FAMILY_PARAMS, _base

#: The AnomLLM training family names, in the order of :data:`taxonomy.ANOMLLM_FAMILY_LABEL`.
FAMILIES: tuple[str, ...] = tuple(FAMILY_PARAMS)

_SIGNALS: dict[type, Callable[..., np.ndarray]] = {
    RangeParams: _range_signal,
    PointParams: _point_signal,
    FreqParams: _freq_signal,
    TrendParams: _trend_signal,
}


def generate_sample(family: str, rng: np.random.Generator, length: int = DESIGN_LENGTH) -> Sample:
    """One series of ``family`` drawn from ``rng`` (intervals first, then signal, then noise)."""
    params = FAMILY_PARAMS[family]
    scale = length / DESIGN_LENGTH
    intervals = place_intervals(rng, length, params.placement.scaled(scale))
    t = np.arange(length, dtype=np.float64)
    values = _SIGNALS[type(params)](rng, t, intervals, params, scale)
    if params.noise_std > 0:
        values = values + rng.normal(0.0, params.noise_std, length)
    values = np.ascontiguousarray(values, dtype=np.float64)
    intervals_t = tuple((int(s), int(e)) for s, e in intervals)
    return Sample(values=values, intervals=intervals_t, label=label_for(family, intervals_t), family=family)


def generate_anomllm(family: str, n: int, seed: int, length: int | None = None) -> list[Sample]:
    """``n`` series of an AnomLLM family; see :func:`anomseer.series.generate`."""
    if family not in FAMILY_PARAMS:
        raise ValueError(f"unknown AnomLLM family {family!r}; known: {', '.join(FAMILIES)}")
    n, seed, length = check_request(n, seed, length, DESIGN_LENGTH, MIN_LENGTH)
    return [generate_sample(family, sample_rng(family, seed, i), length) for i in range(n)]


def expected_normal_share(family: str, length: int = DESIGN_LENGTH) -> float:
    """Probability that a series of ``family`` has no anomaly: the first gap reaches the end.

    ``P(max(Exp(mean), min) >= L) = exp(-L / mean)`` when ``min < L``, else 1.
    """
    placement = FAMILY_PARAMS[family].placement.scaled(length / DESIGN_LENGTH)
    if placement.gap_min >= length:
        return 1.0
    return math.exp(-length / placement.gap_mean)


for _params in FAMILY_PARAMS.values():
    _params.validate()
del _params

"""The five VisualTimeAnomaly univariate types: the held-out set, never trained on (method.md §2).

Every series is a noisy sine (length 400, frequency 0.04, amplitude 1.5) with one kind of anomaly:

- ``vta-global``: about 5% of the samples are scaled by ``3.5 * local std``; any that stay inside
  the series range are pushed to its maximum (or minimum), so each lies at or beyond an extreme.
- ``vta-contextual``: the same scaling with factor 2.5, but values that leave the range are pulled
  back inside it, so only the local context shows them.
- ``vta-seasonal``: 2 windows of 10 samples replaced by the sine at 3x the frequency.
- ``vta-trend``: 2 windows of 10 samples with a ramp of slope +/-0.5 per sample; the level reached
  at the window's end persists for the rest of the series.
- ``vta-shapelet``: 2 windows of 10 samples replaced by a square-like wave (20 odd harmonics).

Departures from the reference generator, all deliberate:

- The reference multiplies a shared config's frequency in place, so the seasonal frequency
  compounds from series to series (3x, 9x, 27x, ...). Here every series uses 3x the base.
- The reference trend sets a window to ``original + ramp``, which erases the level shift of an
  earlier-processed window that lies before it. Here each ramp and its persistent shift are added
  to the current series, so two windows simply add up.
- The reference sums 20 independent noise draws for the shapelet; here one draw with the same
  standard deviation (``noise * amplitude * sqrt(sum 1/(2k+1)^2)``), the same distribution.
- Seeding is per sample, as in :mod:`anomseer.series.anomllm`.
- Other lengths rescale every time constant by ``L / 400``, as in the AnomLLM families.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from anomseer.series.anomllm import check_request, sample_rng
from anomseer.series.sample import Interval, Sample
from anomseer.series.taxonomy import VTA_TYPE_LABEL, label_for

DESIGN_LENGTH = 400
#: At a quarter of the design length the seasonal windows (3 x 0.04 / 0.25 = 0.48 cycles/sample)
#: are still below Nyquist.
MIN_LENGTH = DESIGN_LENGTH // 4


@dataclass(frozen=True)
class VtaParams:
    """Constants of the VisualTimeAnomaly univariate generator (at the design length 400).

    Attributes:
        frequency: base sine frequency, cycles per sample.
        amplitude: the base is ``amplitude * (sin(2*pi*frequency*t) + noise * N(0, 1))``.
        noise: base noise relative to the unit sine (absolute std ``amplitude * noise``).
        point_ratio: point types draw ``round(L * point_ratio)`` positions (with replacement).
        local_radius: point outliers scale by the std of the base over ``[i - r, i + r)``.
        global_factor: global outlier value ``base[i] * global_factor * local_std``.
        contextual_factor: contextual outlier value ``base[i] * contextual_factor * local_std``.
        contextual_pullback_std, contextual_pullback_max: a contextual value beyond the range
            becomes ``extreme * min(pullback_max, |N(0, pullback_std)|)``.
        n_windows: collective types draw this many window centres (windows may overlap).
        window_radius: a window is ``[c - r, c + r)`` clipped to the series (10 samples).
        seasonal_factor: frequency multiplier inside seasonal windows.
        trend_slope: ramp slope per sample inside trend windows (sign random per window).
        shapelet_harmonics: odd harmonics summed for the square-like wave.
        shapelet_amplitude: the wave is ``amplitude * sum_k sin(2*pi*(2k+1)*f*t) / (2k+1)``.
        shapelet_noise: shapelet noise per harmonic relative to its unit sine.
    """

    frequency: float = 0.04
    amplitude: float = 1.5
    noise: float = 0.05
    point_ratio: float = 0.05
    local_radius: int = 5
    global_factor: float = 3.5
    contextual_factor: float = 2.5
    contextual_pullback_std: float = 0.5
    contextual_pullback_max: float = 0.95
    n_windows: int = 2
    window_radius: int = 5
    seasonal_factor: float = 3.0
    trend_slope: float = 0.5
    shapelet_harmonics: int = 20
    shapelet_amplitude: float = 1.5
    shapelet_noise: float = 0.03

    def validate(self) -> None:
        checks = {
            "frequency": 0 < self.frequency < 0.5,
            "amplitude": self.amplitude > 0,
            "noise": self.noise >= 0,
            "point_ratio": 0 < self.point_ratio <= 1,
            "local_radius": self.local_radius >= 1,
            "global_factor": self.global_factor > 0,
            "contextual_factor": self.contextual_factor > 0,
            "contextual_pullback_std": self.contextual_pullback_std > 0,
            "contextual_pullback_max": 0 < self.contextual_pullback_max < 1,
            "n_windows": self.n_windows >= 1,
            "window_radius": self.window_radius >= 1,
            "seasonal_factor": self.seasonal_factor > 1 and self.seasonal_factor * self.frequency < 0.5,
            "trend_slope": self.trend_slope > 0,
            "shapelet_harmonics": self.shapelet_harmonics >= 1,
            "shapelet_amplitude": self.shapelet_amplitude > 0,
            "shapelet_noise": self.shapelet_noise >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"VtaParams.{bad[0]}={getattr(self, bad[0])!r} is out of range; see the VtaParams docstring"
            )


VTA_PARAMS = VtaParams()
VTA_PARAMS.validate()


@dataclass(frozen=True)
class _Scaled:
    """The constants rescaled to one series length."""

    length: int
    frequency: float
    local_radius: int
    window_radius: int
    trend_slope: float

    @classmethod
    def of(cls, p: VtaParams, length: int) -> "_Scaled":
        scale = length / DESIGN_LENGTH
        return cls(
            length=length,
            frequency=p.frequency / scale,
            local_radius=max(1, round(p.local_radius * scale)),
            window_radius=max(1, round(p.window_radius * scale)),
            trend_slope=p.trend_slope / scale,
        )


def _local_std(base: np.ndarray, positions: np.ndarray, radius: int) -> np.ndarray:
    """Std of ``base`` over ``[i - radius, i + radius)`` clipped to the series, for each position."""
    lo = np.maximum(positions - radius, 0)
    hi = np.minimum(positions + radius, base.size)
    centred = base - base.mean()  # running sums of centred values keep the variance accurate
    s1 = np.concatenate(([0.0], np.cumsum(centred)))
    s2 = np.concatenate(([0.0], np.cumsum(centred * centred)))
    count = hi - lo
    mean = (s1[hi] - s1[lo]) / count
    return np.sqrt(np.maximum((s2[hi] - s2[lo]) / count - mean * mean, 0.0))


def _point_positions(rng, p: VtaParams, s: _Scaled) -> np.ndarray:
    return rng.integers(0, s.length, round(s.length * p.point_ratio))


def _windows(rng, p: VtaParams, s: _Scaled) -> list[tuple[int, int]]:
    centres = rng.integers(0, s.length, p.n_windows)
    r = s.window_radius
    return [(max(0, int(c) - r), min(s.length, int(c) + r)) for c in centres]


def _global(rng, base, t, p: VtaParams, s: _Scaled):
    positions = _point_positions(rng, p, s)
    v = base[positions] * p.global_factor * _local_std(base, positions, s.local_radius)
    maximum, minimum = base.max(), base.min()
    # Values that stay inside the range go to the extreme on their side.
    v = np.where((v >= 0) & (v < maximum), maximum, v)
    v = np.where((v < 0) & (v > minimum), minimum, v)
    values, mask = base.copy(), np.zeros(base.size, dtype=bool)
    values[positions], mask[positions] = v, True
    return values, mask


def _contextual(rng, base, t, p: VtaParams, s: _Scaled):
    positions = _point_positions(rng, p, s)
    v = base[positions] * p.contextual_factor * _local_std(base, positions, s.local_radius)
    maximum, minimum = base.max(), base.min()
    # Values that leave the range are pulled back to a random fraction of the extreme.
    outside = (v > maximum) | (v < minimum)
    pull = np.minimum(p.contextual_pullback_max, np.abs(rng.normal(0.0, p.contextual_pullback_std, int(outside.sum()))))
    v[outside] = np.where(v[outside] > maximum, maximum, minimum) * pull
    values, mask = base.copy(), np.zeros(base.size, dtype=bool)
    values[positions], mask[positions] = v, True
    return values, mask


def _seasonal(rng, base, t, p: VtaParams, s: _Scaled):
    values, mask = base.copy(), np.zeros(base.size, dtype=bool)
    fast = p.seasonal_factor * s.frequency
    for start, end in _windows(rng, p, s):
        tw = t[start:end]
        values[start:end] = p.amplitude * (np.sin(2 * np.pi * fast * tw) + p.noise * rng.normal(0.0, 1.0, tw.size))
        mask[start:end] = True
    return values, mask


def _trend(rng, base, t, p: VtaParams, s: _Scaled):
    values, mask = base.copy(), np.zeros(base.size, dtype=bool)
    for start, end in _windows(rng, p, s):
        sign = 1.0 if rng.integers(0, 2) == 1 else -1.0
        ramp = sign * s.trend_slope * np.arange(end - start, dtype=np.float64)
        values[start:end] += ramp
        values[end:] += ramp[-1]
        mask[start:end] = True
    return values, mask


def _shapelet(rng, base, t, p: VtaParams, s: _Scaled):
    values, mask = base.copy(), np.zeros(base.size, dtype=bool)
    odd = 2.0 * np.arange(p.shapelet_harmonics) + 1.0
    noise_std = p.shapelet_amplitude * p.shapelet_noise * float(np.sqrt(np.sum(1.0 / odd**2)))
    for start, end in _windows(rng, p, s):
        tw = t[start:end]
        harmonics = np.sin(2 * np.pi * s.frequency * np.outer(odd, tw)) / odd[:, None]
        values[start:end] = p.shapelet_amplitude * harmonics.sum(axis=0) + rng.normal(0.0, noise_std, tw.size)
        mask[start:end] = True
    return values, mask


_ANOMALIES: dict[str, Callable] = {
    "vta-global": _global,
    "vta-contextual": _contextual,
    "vta-seasonal": _seasonal,
    "vta-trend": _trend,
    "vta-shapelet": _shapelet,
}

#: The VisualTimeAnomaly type names, in the order of :data:`taxonomy.VTA_TYPE_LABEL`.
VTA_TYPES: tuple[str, ...] = tuple(VTA_TYPE_LABEL)
assert set(VTA_TYPES) == set(_ANOMALIES)


def mask_to_intervals(mask: np.ndarray) -> list[Interval]:
    """Runs of ``True`` in a boolean vector of shape (L,) as half-open ``(start, end)`` pairs."""
    padded = np.concatenate(([False], np.asarray(mask, dtype=bool), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def generate_sample(vta_type: str, rng: np.random.Generator, length: int = DESIGN_LENGTH) -> Sample:
    """One series of ``vta_type`` drawn from ``rng`` (base noise first, then the anomaly)."""
    p = VTA_PARAMS
    scaled = _Scaled.of(p, length)
    t = np.arange(length, dtype=np.float64)
    base = p.amplitude * (np.sin(2 * np.pi * scaled.frequency * t) + p.noise * rng.normal(0.0, 1.0, length))
    values, mask = _ANOMALIES[vta_type](rng, base, t, p, scaled)
    intervals = tuple(mask_to_intervals(mask))
    return Sample(
        values=np.ascontiguousarray(values, dtype=np.float64),
        intervals=intervals,
        label=label_for(vta_type, intervals),
        family=vta_type,
    )


def generate_vta(vta_type: str, n: int, seed: int, length: int | None = None) -> list[Sample]:
    """``n`` series of a VisualTimeAnomaly type; see :func:`anomseer.series.generate`."""
    if vta_type not in _ANOMALIES:
        raise ValueError(f"unknown VisualTimeAnomaly type {vta_type!r}; known: {', '.join(VTA_TYPES)}")
    n, seed, length = check_request(n, seed, length, DESIGN_LENGTH, MIN_LENGTH)
    return [generate_sample(vta_type, sample_rng(vta_type, seed, i), length) for i in range(n)]

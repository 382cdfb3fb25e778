"""The classical scans behind the expert traces and the blind detector (method.md section 3).

Every function is pure and deterministic: the same values and parameters give bit-identical
statistics, which is what lets a checker recompute every number a trace quotes.

The cascade is global -> structural (trend, frequency) -> local:

- :func:`global_scan`: z-scores of the raw values; |z| > 5 marks an outlier, the 3-sigma range
  check grows it into an event.
- :func:`trend_scan`: gradient of a Savitzky-Golay smoothed series; 3-std gradient flags.
- :func:`frequency_scan`: dominant period in sliding windows; windows outside mean +/- 3 std.
- :func:`discord_scan`: matrix-profile discords (z-score of the nearest-neighbour distance).

Noisy series are Savitzky-Golay denoised before the trend and local scans (:func:`prepare`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import detrend, savgol_filter

from anomseer.expert.params import ExpertParams, resolve

Interval = tuple[int, int]


# --------------------------------------------------------------------------------------------
# Input checks and preparation.


def check_series(values, params: ExpertParams | None = None, *, allow_constant: bool = False) -> np.ndarray:
    """``values`` as a contiguous float64 array of shape (L,), or ValueError saying what is wrong.

    Rejects: non-1-D input, an empty or too short series (shorter than ``params.min_length``),
    NaN or inf, and (unless ``allow_constant``) a constant series, whose z-scores are undefined.
    """
    p = resolve(params)
    try:
        x = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"series values must be numbers convertible to float64: {err}") from None
    if x.ndim != 1:
        raise ValueError(f"series values must be 1-D of shape (L,), got shape {x.shape}")
    if x.size == 0:
        raise ValueError("series is empty; pass at least one value per time step")
    if not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise ValueError(f"series has {bad} NaN/inf values; fill or drop them before the scans")
    if x.size < p.min_length:
        raise ValueError(
            f"series of length {x.size} is too short for the scans; need at least {p.min_length} "
            f"points (the frequency window is {p.freq_window}, the matrix-profile window {p.mp_window})"
        )
    if not allow_constant and is_constant(x):
        raise ValueError("series is constant; its z-scores, gradients and periods are undefined")
    return np.ascontiguousarray(x)


def is_constant(x: np.ndarray) -> bool:
    """True when every value equals the first (up to round-off relative to the magnitude)."""
    return bool(np.ptp(x) <= 1e-12 * max(1.0, float(np.abs(x).max())))


def noise_level(x: np.ndarray) -> float:
    """Robust white-noise std from second differences: 1.4826 * MAD(diff2) / sqrt(6).

    A smooth signal has tiny second differences, so the MAD sees mostly the noise; a second
    difference of white noise has variance 6 sigma^2.
    """
    d2 = np.diff(x, 2)
    return float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / np.sqrt(6.0))


def noise_share(x: np.ndarray, params: ExpertParams | None = None) -> float:
    """White-noise level over the std of what the denoiser removes (0 when it removes nothing).

    Near 1 the denoiser removes only noise (smoothing is safe and useful); near 0 it removes
    mostly signal (a fast sine), so the series should not be denoised.
    """
    p = resolve(params)
    residual = x - savgol_filter(x, p.denoise_window, p.denoise_polyorder)
    spread = float(residual.std())
    return 0.0 if spread == 0.0 else noise_level(x) / spread


@dataclass(frozen=True)
class Prepared:
    """A checked series and the base the trend and local scans run on.

    Attributes:
        values: raw values, shape (L,).
        base: denoised values when ``noisy`` else ``values``, shape (L,).
        noise_share: see :func:`noise_share`.
        noisy: ``noise_share >= params.noise_share_threshold``.
    """

    values: np.ndarray
    base: np.ndarray
    noise_share: float
    noisy: bool


def prepare(values, params: ExpertParams | None = None) -> Prepared:
    """Check ``values`` (see :func:`check_series`) and denoise them when they are noisy."""
    p = resolve(params)
    x = check_series(values, p)
    share = noise_share(x, p)
    noisy = share >= p.noise_share_threshold
    base = savgol_filter(x, p.denoise_window, p.denoise_polyorder) if noisy else x
    return Prepared(values=x, base=base, noise_share=share, noisy=noisy)


# --------------------------------------------------------------------------------------------
# Interval helpers.


def mask_to_intervals(mask: np.ndarray) -> list[Interval]:
    """Runs of True in a boolean vector of shape (L,) as half-open ``(start, end)`` pairs."""
    padded = np.concatenate(([False], np.asarray(mask, dtype=bool), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def intervals_to_mask(intervals, length: int) -> np.ndarray:
    """Boolean vector of shape (length,) that is True inside the half-open intervals."""
    mask = np.zeros(length, dtype=bool)
    for start, end in intervals:
        mask[max(0, start) : min(length, end)] = True
    return mask


def merge_intervals(intervals, gap: int) -> list[Interval]:
    """Sort and merge intervals that overlap or are at most ``gap`` samples apart."""
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start - merged[-1][1] <= gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(int(a), int(b)) for a, b in merged]


# --------------------------------------------------------------------------------------------
# Global scan.


@dataclass(frozen=True)
class GlobalScan:
    """z-scores of the raw values and the global events they flag.

    Attributes:
        z: (x - mean) / std, shape (L,).
        max_abs_z: largest |z|; ``argmax``: its first index.
        events: runs of |z| > range_z that contain a point with |z| > global_z, merged.
    """

    z: np.ndarray
    max_abs_z: float
    argmax: int
    events: tuple[Interval, ...]


def zscores(x: np.ndarray) -> np.ndarray:
    """(x - mean) / std of shape (L,); zeros for a constant series."""
    std = float(x.std())
    return np.zeros_like(x) if std == 0.0 else (x - x.mean()) / std


def global_scan(x: np.ndarray, params: ExpertParams | None = None) -> GlobalScan:
    """Global outliers of ``x`` (shape (L,)): |z| > global_z, extended by the 3-sigma range check."""
    p = resolve(params)
    z = zscores(x)
    az = np.abs(z)
    i = int(np.argmax(az))
    events = [
        (a, b) for a, b in mask_to_intervals(az > p.range_z) if float(az[a:b].max()) > p.global_z
    ]
    return GlobalScan(z=z, max_abs_z=float(az[i]), argmax=i, events=tuple(merge_intervals(events, p.merge_gap)))


# --------------------------------------------------------------------------------------------
# Structural scan: trend.


@dataclass(frozen=True)
class TrendScan:
    """Gradient of the smoothed series and its 3-std flags.

    Attributes:
        gradient: ``np.gradient(savgol(base, trend_window, trend_polyorder))``, shape (L,).
        flags: |gradient - mean| > trend_flag_std * std, boolean (L,).
        n_flags: number of flagged points.
        events: flagged runs merged over ``merge_gap``.
    """

    gradient: np.ndarray
    flags: np.ndarray
    n_flags: int
    events: tuple[Interval, ...]


def smoothed_gradient(base: np.ndarray, params: ExpertParams | None = None) -> np.ndarray:
    """Gradient (per sample) of the Savitzky-Golay smoothed ``base``, shape (L,)."""
    p = resolve(params)
    return np.gradient(savgol_filter(base, p.trend_window, p.trend_polyorder))


def trend_scan(base: np.ndarray, params: ExpertParams | None = None) -> TrendScan:
    """Points where the smoothed slope departs from its mean by more than 3 std."""
    p = resolve(params)
    g = smoothed_gradient(base, p)
    std = float(g.std())
    flags = np.abs(g - g.mean()) > p.trend_flag_std * std if std > 0 else np.zeros(g.size, dtype=bool)
    events = merge_intervals(mask_to_intervals(flags), p.merge_gap)
    return TrendScan(gradient=g, flags=flags, n_flags=int(flags.sum()), events=tuple(events))


# --------------------------------------------------------------------------------------------
# Structural scan: frequency.


def dominant_period(segment: np.ndarray, n_fft: int | None = None) -> float:
    """1 / argmax |rFFT|^2 of the linearly detrended ``segment`` (shape (n,)), DC removed.

    ``n_fft`` zero-pads the transform (default: no padding, as in the reference windows).
    Returns ``inf`` for a segment with no oscillation (all bins zero).
    """
    seg = detrend(np.asarray(segment, dtype=np.float64))
    n = max(int(n_fft or 0), seg.size)
    power = np.abs(np.fft.rfft(seg, n=n)) ** 2
    power[0] = 0.0
    k = int(np.argmax(power))
    return float("inf") if power[k] == 0.0 else n / k


@dataclass(frozen=True)
class FrequencyScan:
    """Dominant period per sliding window.

    Attributes:
        starts: window start indices, shape (W,).
        periods: dominant period of each window, shape (W,).
        mean, std: of ``periods``.
        skipped: ``std < freq_min_std`` (the periods are stable; nothing is flagged).
        flagged: window is outside mean +/- freq_flag_std * std (all False when skipped), (W,).
        events: union of the flagged windows, merged.
    """

    starts: np.ndarray
    periods: np.ndarray
    mean: float
    std: float
    skipped: bool
    flagged: np.ndarray
    events: tuple[Interval, ...]


def frequency_scan(x: np.ndarray, params: ExpertParams | None = None) -> FrequencyScan:
    """Sliding-window dominant periods of ``x`` (shape (L,), L >= freq_window) and their outliers."""
    p = resolve(params)
    w = p.freq_window
    starts = np.arange(0, x.size - w + 1, p.freq_step)
    windows = sliding_window_view(x, w)[starts]
    windows = windows - windows.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(windows, axis=1)) ** 2
    power[:, 0] = 0.0
    k = np.argmax(power, axis=1)
    periods = np.where(k > 0, w / np.maximum(k, 1), np.inf)
    finite = periods[np.isfinite(periods)]
    mean = float(finite.mean()) if finite.size else float("inf")
    std = float(finite.std()) if finite.size else 0.0
    skipped = std < p.freq_min_std
    if skipped:
        flagged = np.zeros(starts.size, dtype=bool)
    else:
        flagged = np.abs(periods - mean) > p.freq_flag_std * std
    events = merge_intervals([(int(s), int(s) + w) for s in starts[flagged]], p.merge_gap)
    return FrequencyScan(
        starts=starts, periods=periods, mean=mean, std=std, skipped=bool(skipped), flagged=flagged, events=tuple(events)
    )


def segment_period(x: np.ndarray, interval: Interval, params: ExpertParams | None = None) -> float:
    """Dominant period inside ``interval``, widened to ``period_min_segment`` around its centre."""
    p = resolve(params)
    start, end = interval
    if end - start < p.period_min_segment:
        width = min(p.period_min_segment, x.size)
        start = min(max(0, (start + end) // 2 - width // 2), x.size - width)
        end = start + width
    return dominant_period(x[start:end], p.fft_min_points)


def series_period(x: np.ndarray, mask: np.ndarray | None = None, params: ExpertParams | None = None) -> float:
    """Dominant period of ``x`` with the masked points (e.g. anomalies) replaced by a straight line.

    Bridging the masked points keeps the rest of the series contiguous, so the FFT sees the
    normal oscillation only; ``mask=None`` uses every point.
    """
    p = resolve(params)
    y = x
    if mask is not None and mask.any() and not mask.all():
        idx = np.arange(x.size)
        y = x.copy()
        y[mask] = np.interp(idx[mask], idx[~mask], x[~mask])
    return dominant_period(y, max(p.fft_min_points, 4 * x.size))


# --------------------------------------------------------------------------------------------
# Local scan: matrix profile.


def matrix_profile(x: np.ndarray, m: int, backend: str = "numpy") -> np.ndarray:
    """z-normalised nearest-neighbour distance of every length-``m`` subsequence, shape (L-m+1,).

    Trivial matches within ``ceil(m / 4)`` of a subsequence are excluded (stumpy's default).
    A constant subsequence is at distance 0 from another constant one and sqrt(m) from any other
    (stumpy's convention). ``backend="stumpy"`` calls ``stumpy.stump`` (JIT compile on first use).
    """
    n = x.size - m + 1
    exclusion = int(np.ceil(m / 4))
    if n <= exclusion + 1:
        raise ValueError(f"series of length {x.size} is too short for matrix-profile window {m}")
    if backend == "stumpy":
        import stumpy  # heavy import and JIT compile: only when asked for

        return np.asarray(stumpy.stump(x, m)[:, 0], dtype=np.float64)
    if backend != "numpy":
        raise ValueError(f"unknown matrix-profile backend {backend!r}; use 'numpy' or 'stumpy'")
    windows = sliding_window_view(x, m)
    mu = windows.mean(axis=1)
    sd = windows.std(axis=1)
    const = sd <= 1e-12 * np.maximum(1.0, np.abs(mu))
    z = (windows - mu[:, None]) / np.where(const, 1.0, sd)[:, None]
    z[const] = 0.0
    best = np.empty(n)
    block = 1024  # rows per block: memory stays O(block * n) for long series
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        corr = z[lo:hi] @ z.T / m  # Pearson correlation of each pair
        if const.any():
            rows_const = const[lo:hi]
            corr[np.ix_(rows_const, const)] = 1.0
            corr[np.ix_(rows_const, ~const)] = 0.5  # distance sqrt(m) <=> correlation 1/2
            corr[np.ix_(~rows_const, const)] = 0.5
        rows = np.arange(lo, hi)
        for k in range(-exclusion, exclusion + 1):  # trivial-match band, one diagonal at a time
            ok = (rows + k >= 0) & (rows + k < n)
            corr[rows[ok] - lo, rows[ok] + k] = -np.inf
        best[lo:hi] = corr.max(axis=1)
    return np.sqrt(np.clip(2.0 * m * (1.0 - best), 0.0, None))


@dataclass(frozen=True)
class DiscordScan:
    """Matrix profile and its z-scores.

    Attributes:
        profile: nearest-neighbour distances, shape (N,) with N = L - m + 1.
        z: (profile - mean) / max(std, discord_min_std) over the valid starts, ``-inf`` at the
            others, shape (N,).
        valid: half-open range of subsequence starts that may be discords.
        top: index of the largest z (a subsequence start); ``top_z``: that z.
        window: m.
    """

    profile: np.ndarray
    z: np.ndarray
    valid: tuple[int, int]
    top: int
    top_z: float
    window: int

    def max_in(self, starts: tuple[int, int]) -> tuple[float, int] | None:
        """Largest z and its start over the half-open range ``starts`` (valid ones only)."""
        lo, hi = max(starts[0], self.valid[0]), min(starts[1], self.valid[1])
        if lo >= hi:
            return None
        i = lo + int(np.argmax(self.z[lo:hi]))
        return float(self.z[i]), i


def discord_scan(base: np.ndarray, params: ExpertParams | None = None, *, edge: int = 0) -> DiscordScan:
    """Matrix-profile discords of ``base`` (shape (L,)) with window ``mp_window``.

    ``edge`` samples at each end are unreliable (a smoother's boundary zone: a Savitzky-Golay
    fit bends there, and a noisy sine's first and last windows then look unlike any other):
    subsequences touching them still serve as neighbours but are never discords.
    """
    p = resolve(params)
    m = p.mp_window
    profile = matrix_profile(base, m, p.mp_backend)
    n = profile.size
    lo, hi = min(edge, n - 1), max(min(edge, n - 1) + 1, n - edge)
    inner = profile[lo:hi]
    z = np.full(n, -np.inf)
    z[lo:hi] = (inner - inner.mean()) / max(float(inner.std()), p.discord_min_std)
    top = int(np.argmax(z))
    return DiscordScan(profile=profile, z=z, valid=(lo, hi), top=top, top_z=float(z[top]), window=m)


def subsequences_overlapping(interval: Interval, window: int, n_subsequences: int) -> tuple[int, int]:
    """Half-open range of subsequence starts whose window overlaps ``interval``."""
    start, end = interval
    return max(0, start - window + 1), min(n_subsequences, end)


def top_discords(scan: DiscordScan, params: ExpertParams | None = None) -> list[int]:
    """Starts of up to ``max_discords`` non-overlapping subsequences with z > discord_z, best first."""
    p = resolve(params)
    z = scan.z.copy()
    found: list[int] = []
    while len(found) < p.max_discords:
        i = int(np.argmax(z))
        if not z[i] > p.discord_z:
            break
        found.append(i)
        z[max(0, i - scan.window + 1) : i + scan.window] = -np.inf
    return found


def step_share(segment: np.ndarray, steps: int) -> float:
    """Share of a segment's total variation carried by its ``steps`` largest single-sample steps.

    Near 1 for a square-like wave (flat runs joined by jumps), low for a smooth wave or noise.
    """
    d = np.abs(np.diff(np.asarray(segment, dtype=np.float64)))
    total = float(d.sum())
    return 0.0 if total == 0.0 else float(np.sort(d)[::-1][:steps].sum()) / total


# --------------------------------------------------------------------------------------------
# All scans of one series.


class Scans:
    """Every scan of one series, each computed on first use and then kept.

    The trace writer, the verifier and the blind detector all read statistics from here, so a
    number is computed one way only. ``noisy`` series run the trend and local scans on the
    denoised base, with the denoiser's boundary zone kept out of the discord candidates.
    """

    def __init__(self, values, params: ExpertParams | None = None):
        self.params = resolve(params)
        self.prepared = prepare(values, self.params)

    @property
    def values(self) -> np.ndarray:
        return self.prepared.values

    @property
    def length(self) -> int:
        return int(self.prepared.values.size)

    @cached_property
    def glob(self) -> GlobalScan:
        return global_scan(self.prepared.values, self.params)

    @cached_property
    def trend(self) -> TrendScan:
        return trend_scan(self.prepared.base, self.params)

    @cached_property
    def frequency(self) -> FrequencyScan:
        return frequency_scan(self.prepared.values, self.params)

    @cached_property
    def discord(self) -> DiscordScan:
        edge = self.params.denoise_window // 2 if self.prepared.noisy else 0
        return discord_scan(self.prepared.base, self.params, edge=edge)

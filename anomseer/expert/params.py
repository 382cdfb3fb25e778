"""Parameters of the classical scans, the expert traces and the blind detector.

The defaults are the reference detector parameters of method.md section 3; values the reference
leaves open (the sliding-window step, the zero padding of period estimates, how flags become
intervals, when a series counts as noisy) are documented choices marked "(ours)".
"""

from __future__ import annotations

from dataclasses import dataclass

MP_BACKENDS: tuple[str, ...] = ("numpy", "stumpy")


@dataclass(frozen=True)
class ExpertParams:
    """Scan thresholds and windows (method.md section 3).

    Global scan (raw values, z = (x - mean) / std over the whole series):
        global_z: a point with |z| above this is a global outlier (reference: 5).
        range_z: the 3-sigma range check: a global event extends over the neighbouring points
            with |z| above this (reference: 3).

    Structural scan, trend (on the denoised series when the series is noisy):
        trend_window, trend_polyorder: Savitzky-Golay smoother before ``np.gradient``
            (reference: 21, 2).
        trend_flag_std: flag points with |g - mean g| > trend_flag_std * std g (reference: 3).

    Structural scan, frequency (on the raw values: the denoiser's pass band would remove the
    fast oscillations this scan looks for, e.g. gain 0.02 at 0.09 cycles/sample):
        freq_window: sliding window length; each window's dominant period is
            1 / argmax |rFFT|^2 with the DC bin removed (reference: 100).
        freq_step: hop between windows (ours: 10).
        freq_flag_std: flag windows whose period is outside mean +/- this many std (reference: 3).
        freq_min_std: skip the frequency flags when the std of the periods is below this
            (reference: 1; a sine sampled in windows gives std 0 and every window would flag).
        fft_min_points: zero-pad the FFT of a whole series or of an interval to at least this
            many points, so a period estimate is not stuck on the coarse 1/len grid (ours: 4096).
        period_min_segment: an interval shorter than this is widened around its centre before
            its period is estimated (ours: 16; a 7-sample segment has no measurable period).

    Local scan (matrix profile, on the denoised series when the series is noisy):
        mp_window: subsequence length m (reference: 50).
        discord_z: a subsequence whose profile z-score exceeds this is a discord (reference: 3.5).
        discord_min_std: floor on the profile's std when forming z-scores (ours: 0.05, in
            z-normalised distance units, whose range is [0, 2 sqrt(m)]): a clean sine repeats
            exactly, its profile is round-off, and a z-score of round-off means nothing.
        mp_backend: ``numpy`` (blocked exact computation, no compile step) or ``stumpy``
            (``stumpy.stump``; JIT-compiles on its first call in a process, 45-100 s measured on
            2 shared cores). Both give the same profile to ~1e-12.
        max_discords: the blind detector reports at most this many discords (ours: 3).

    Noisy series:
        denoise_window, denoise_polyorder: Savitzky-Golay denoiser (reference: 31, 2).
        noise_share_threshold: a series is noisy when the white-noise level (from second
            differences) is at least this share of what the denoiser removes (ours: 0.25). Clean
            sines score below 0.21 (the denoiser removes mostly signal), noisy-* families above
            0.26; the reference knew the family instead, which a detector cannot.

    Blind detector (ours):
        merge_gap: flagged runs closer than this many samples are merged into one interval.
        shapelet_step_share: a discord whose window carries at least this share of its total
            variation in its ``shapelet_steps`` largest single-sample steps (a square-like wave:
            flat runs joined by jumps; see :func:`analyses.step_share`) is a ``shapelet`` rather
            than a ``contextual point`` (ours, fixed a priori: 0.6; values above 1 are not
            allowed, 1.0 practically never fires).
        shapelet_steps: how many largest steps count in ``step_share`` (ours: 2, the two edges
            of one square pulse).

    Trace:
        max_quoted_intervals: the Reasoning part quotes statistics for at most this many
            intervals (the Conclusion always lists all of them).
        max_trace_words: upper bound on the words of a trace outside the Conclusion's interval
            list (a tiny model is trained on the traces).
    """

    global_z: float = 5.0
    range_z: float = 3.0
    trend_window: int = 21
    trend_polyorder: int = 2
    trend_flag_std: float = 3.0
    freq_window: int = 100
    freq_step: int = 10
    freq_flag_std: float = 3.0
    freq_min_std: float = 1.0
    fft_min_points: int = 4096
    period_min_segment: int = 16
    mp_window: int = 50
    discord_z: float = 3.5
    discord_min_std: float = 0.05
    mp_backend: str = "numpy"
    max_discords: int = 3
    denoise_window: int = 31
    denoise_polyorder: int = 2
    noise_share_threshold: float = 0.25
    merge_gap: int = 5
    shapelet_step_share: float = 0.6
    shapelet_steps: int = 2
    max_quoted_intervals: int = 3
    max_trace_words: int = 80

    @property
    def min_length(self) -> int:
        """Shortest series every scan can run on."""
        return max(
            self.freq_window,
            2 * self.mp_window,
            self.trend_window,
            self.denoise_window,
            self.period_min_segment,
        )

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        checks = [
            ("global_z", self.global_z > 0, "> 0"),
            ("range_z", 0 < self.range_z <= self.global_z, "in (0, global_z]"),
            ("trend_window", self.trend_window >= 3 and self.trend_window % 2 == 1, "an odd integer >= 3"),
            ("trend_polyorder", 0 <= self.trend_polyorder < self.trend_window, "in [0, trend_window)"),
            ("trend_flag_std", self.trend_flag_std > 0, "> 0"),
            ("freq_window", self.freq_window >= 8, ">= 8"),
            ("freq_step", 1 <= self.freq_step <= self.freq_window, "in [1, freq_window]"),
            ("freq_flag_std", self.freq_flag_std > 0, "> 0"),
            ("freq_min_std", self.freq_min_std >= 0, ">= 0"),
            ("fft_min_points", self.fft_min_points >= 16, ">= 16"),
            ("period_min_segment", self.period_min_segment >= 4, ">= 4"),
            ("mp_window", self.mp_window >= 4, ">= 4"),
            ("discord_z", self.discord_z > 0, "> 0"),
            ("discord_min_std", self.discord_min_std > 0, "> 0"),
            ("mp_backend", self.mp_backend in MP_BACKENDS, f"one of {MP_BACKENDS}"),
            ("max_discords", self.max_discords >= 1, ">= 1"),
            ("denoise_window", self.denoise_window >= 3 and self.denoise_window % 2 == 1, "an odd integer >= 3"),
            ("denoise_polyorder", 0 <= self.denoise_polyorder < self.denoise_window, "in [0, denoise_window)"),
            ("noise_share_threshold", self.noise_share_threshold > 0, "> 0"),
            ("merge_gap", self.merge_gap >= 0, ">= 0"),
            ("shapelet_step_share", 0 <= self.shapelet_step_share <= 1, "in [0, 1]"),
            ("shapelet_steps", self.shapelet_steps >= 1, ">= 1"),
            ("max_quoted_intervals", self.max_quoted_intervals >= 1, ">= 1"),
            ("max_trace_words", self.max_trace_words >= 20, ">= 20"),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ValueError(f"ExpertParams.{name}={getattr(self, name)!r} is invalid; allowed: {allowed}")


DEFAULT_PARAMS = ExpertParams()
DEFAULT_PARAMS.validate()


def resolve(params: ExpertParams | None) -> ExpertParams:
    """``params`` validated, or the defaults when ``None``."""
    if params is None:
        return DEFAULT_PARAMS
    if not isinstance(params, ExpertParams):
        raise ValueError(f"params must be an ExpertParams or None, got {type(params).__name__}")
    params.validate()
    return params

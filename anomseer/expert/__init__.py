"""Expert chain-of-thought traces (ExpCoT), their verifier, and a blind classical detector.

- :func:`write_trace` turns a labelled series into a short, verifiable reasoning text.
- :func:`verify_trace` / :func:`count_claims` recompute every number a trace quotes.
- :func:`blind_detect` runs the same scans without the truth: a classical baseline.
- :mod:`anomseer.expert.analyses` holds the scans themselves (pure functions).
"""

from anomseer.expert.analyses import (
    DiscordScan,
    FrequencyScan,
    GlobalScan,
    Prepared,
    Scans,
    TrendScan,
    check_series,
    discord_scan,
    frequency_scan,
    global_scan,
    matrix_profile,
    prepare,
    trend_scan,
)
from anomseer.expert.blind import blind_detect
from anomseer.expert.params import DEFAULT_PARAMS, MP_BACKENDS, ExpertParams
from anomseer.expert.trace import (
    FORBIDDEN_PHRASES,
    Claim,
    check_claims,
    count_claims,
    trace_words,
    verify_trace,
    write_trace,
)

__all__ = [
    "DEFAULT_PARAMS",
    "FORBIDDEN_PHRASES",
    "MP_BACKENDS",
    "Claim",
    "DiscordScan",
    "ExpertParams",
    "FrequencyScan",
    "GlobalScan",
    "Prepared",
    "Scans",
    "TrendScan",
    "blind_detect",
    "check_claims",
    "check_series",
    "count_claims",
    "discord_scan",
    "frequency_scan",
    "global_scan",
    "matrix_profile",
    "prepare",
    "trace_words",
    "trend_scan",
    "verify_trace",
    "write_trace",
]

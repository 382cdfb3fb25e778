"""Input handling of detection: reading files, validation, windows, merging (no model needed)."""

import numpy as np
import pytest

from anomseer.inference import InputError, _windows, read_series, validate_series
from anomseer.series.sample import merge_intervals


def test_windows_cover_long_series_with_half_overlap():
    spans = _windows(2500, 1000)
    assert spans[0] == (0, 1000) and spans[-1][1] == 2500
    assert all(e - s == 1000 for s, e in spans)
    assert all(b[0] - a[0] <= 500 for a, b in zip(spans, spans[1:]))
    assert _windows(800, 1000) == [(0, 800)]


def test_merge_intervals_sorts_and_joins_touching_pairs():
    assert merge_intervals([(50, 60), (0, 10), (10, 20), (55, 70)]) == [(0, 20), (50, 70)]
    assert merge_intervals([]) == []


def test_nan_is_reported_with_positions_or_interpolated():
    values = np.sin(np.arange(50.0))
    values[[7, 30]] = np.nan
    with pytest.raises(InputError, match=r"2 NaN/inf values .*\[7, 30\]"):
        validate_series(values)
    filled = validate_series(values, interpolate=True)
    assert np.isfinite(filled).all()
    assert filled[7] == pytest.approx((values[6] + values[8]) / 2)


def test_degenerate_series_are_refused():
    with pytest.raises(InputError, match="empty"):
        validate_series(np.array([]))
    with pytest.raises(InputError, match="constant"):
        validate_series(np.ones(100))
    with pytest.raises(InputError, match="at least"):
        validate_series(np.arange(5.0))


def test_read_series_from_csv_and_npy(tmp_path):
    (tmp_path / "h.csv").write_text("t,v\n0,1.5\n1,2.5\n")
    assert read_series(tmp_path / "h.csv", "v").tolist() == [1.5, 2.5]
    (tmp_path / "n.csv").write_text("1.0\n2.0\n3.0\n")  # no header row
    assert read_series(tmp_path / "n.csv").tolist() == [1.0, 2.0, 3.0]
    np.save(tmp_path / "a.npy", np.arange(4.0))
    assert read_series(tmp_path / "a.npy").tolist() == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(InputError, match="no column 'x'"):
        read_series(tmp_path / "h.csv", "x")
    np.save(tmp_path / "b.npy", np.zeros((3, 3)))
    with pytest.raises(InputError, match="1-D"):
        read_series(tmp_path / "b.npy")

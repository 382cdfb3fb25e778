"""Tests for anomseer.render: size, determinism, no clipping, batch == single, bad input."""

from __future__ import annotations

import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from anomseer.render import (
    RenderParams,
    _Plotter,
    _pool_context,
    _TickLabels,
    axes_box_px,
    encode_png,
    load_image,
    naive_render_png,
    render_many,
    render_png,
    render_rgb,
)

SMALL = RenderParams(width_px=448, height_px=112)


def _spike_series(length: int = 1000, at: int = 500, height: float = 10.0) -> np.ndarray:
    values = np.random.default_rng(0).normal(0.0, 0.1, length)
    values[at] = height
    return values


def _line_mask(rgb: np.ndarray) -> np.ndarray:
    """Pixels of the steelblue line (70, 130, 180), including its antialiased edge."""
    r, b = rgb[..., 0].astype(int), rgb[..., 2].astype(int)
    return b - r > 30


def _dark_mask(rgb: np.ndarray) -> np.ndarray:
    """Black-ish pixels: tick labels, tick marks and spines."""
    return rgb.astype(int).sum(axis=-1) < 300


def _png_chunk_types(data: bytes) -> list[bytes]:
    types, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        types.append(data[pos + 4:pos + 8])
        pos += 12 + length
    return types


def test_defaults_match_the_reference_rendering():
    p = RenderParams()
    assert (p.width_px, p.height_px, p.dpi) == (1000, 150, 100)
    assert (p.line_color, p.line_width, p.fixed_ylim) == ("steelblue", 1.5, False)


@pytest.mark.parametrize("params", [RenderParams(), SMALL], ids=["1000x150", "448x112"])
def test_png_is_rgb_with_exact_pixel_size(tmp_path, params):
    path = tmp_path / "plot.png"
    render_png(np.sin(np.arange(300) / 10), path, params)
    with Image.open(path) as raw:
        assert raw.mode == "RGB"
        assert raw.size == (params.width_px, params.height_px)
    assert load_image(path).size == (params.width_px, params.height_px)


def test_same_series_gives_byte_identical_file_without_metadata(tmp_path):
    values = _spike_series()
    render_png(values, tmp_path / "a.png")
    # Render something else in between: no state may leak from one series into the next.
    render_png(np.cos(np.arange(77)), tmp_path / "other.png")
    render_png(values, tmp_path / "b.png")
    first, second = (tmp_path / "a.png").read_bytes(), (tmp_path / "b.png").read_bytes()
    assert first == second
    assert _png_chunk_types(first) == [b"IHDR", b"IDAT", b"IEND"]


@pytest.mark.parametrize("params", [RenderParams(), SMALL], ids=["1000x150", "448x112"])
def test_spike_reaches_near_axes_top_without_being_clipped(params):
    length, at = 1000, 500
    rgb = render_rgb(_spike_series(length, at), params)
    left, top, right, bottom = axes_box_px(params)
    rows, cols = np.nonzero(_line_mask(rgb))
    top_row = rows.min()
    # Inside the frame (the top spine sits on row `top`), yet within a few % of the axes height.
    assert top + 1 < top_row < top + 0.12 * (bottom - top)
    assert rows.max() < bottom - 1
    # The peak sits where axes_box_px says index 500 lands.
    peak_cols = cols[rows == top_row]
    expected_col = left + at / (length - 1) * (right - left)
    assert abs(peak_cols.mean() - expected_col) <= 2.0


def test_fixed_ylim_reproduces_the_reference_clipping():
    params = RenderParams(fixed_ylim=True)
    values = _spike_series()
    rgb = render_rgb(values, params)
    left, top, right, bottom = axes_box_px(params)
    rows, _ = np.nonzero(_line_mask(rgb))
    # Clipped at the frame: the line runs into the top spine and never above it.
    assert rows.min() >= int(top) - 1
    assert rows.min() <= top + 1
    # The N(0, 0.1) bulk sits around the middle of a (-1, 1) axis, not squashed to the bottom.
    bulk = np.nonzero(_line_mask(rgb[:, int(left) + 5:int(left) + 200]))[0]
    assert abs(np.median(bulk) - (top + bottom) / 2) < 0.1 * (bottom - top)
    # Without fixed_ylim, a spike of 10 squashes the bulk to the bottom tenth of the axes.
    free = render_rgb(values, RenderParams())
    bulk_free = np.nonzero(_line_mask(free[:, int(left) + 5:int(left) + 200]))[0]
    assert np.median(bulk_free) > bottom - 0.15 * (bottom - top)


@pytest.mark.parametrize("params", [RenderParams(), SMALL], ids=["1000x150", "448x112"])
def test_tick_labels_fit_inside_the_image(params):
    rgb = render_rgb(np.sin(np.arange(1000) / 40) * 3, params)
    left, top, right, bottom = axes_box_px(params)
    dark = _dark_mask(rgb)
    below = dark[int(bottom) + 2:, int(left):int(right)]  # x tick marks and labels
    beside = dark[int(top):int(bottom), :int(left) - 1]  # y tick marks and labels
    assert below.any() and beside.any()
    # Nothing dark touches the image edge, so no label is cut off.
    assert not dark[-1, :].any() and not dark[:, 0].any()


def test_x_ticks_sit_at_round_indices():
    for params, step in [(RenderParams(), 100), (SMALL, 200)]:
        plotter = _Plotter(params)
        plotter.rgb(np.zeros(1000))
        ticks = [t for t in plotter.axes.get_xticks() if 0 <= t <= 999]
        assert ticks[0] == 0 and np.all(np.diff(ticks) == step), (params.width_px, ticks)


def test_fast_path_is_pixel_identical_to_a_full_matplotlib_draw():
    plotter = _Plotter(SMALL)
    rng = np.random.default_rng(3)
    for length in (1000, 137, 1000):
        values = rng.standard_normal(length).cumsum()
        fast = plotter.rgb(values)
        plotter.canvas.draw()
        full = np.asarray(plotter.canvas.buffer_rgba())[..., :3]
        np.testing.assert_array_equal(fast, full)


@pytest.mark.parametrize(
    ("ticks", "labels"),
    [
        ([-0.25, 0.0, 0.25], ["-0.25", "0.00", "0.25"]),
        ([-1.0, 0.0, 1.0, 2.0], ["-1", "0", "1", "2"]),
        ([1000.1, 1000.2, 1000.3], ["1000.1", "1000.2", "1000.3"]),
        ([0.0, 20000.0, 40000.0], ["0", "20000", "40000"]),
        ([1e7, 2e7, 3e7], ["1e7", "2e7", "3e7"]),
        ([-0.0000005, 0.0, 0.0000005], ["-5e-7", "0", "5e-7"]),
    ],
)
def test_y_tick_labels_carry_full_values_without_offset(ticks, labels):
    assert _TickLabels(max_chars=6).format_ticks(ticks) == labels


def test_render_many_writes_the_same_bytes_as_render_png(tmp_path):
    rng = np.random.default_rng(7)
    series = [rng.standard_normal(n).cumsum() for n in (1000, 1000, 250, 1000, 64, 500, 1000)]
    series[3][100] = 40.0
    single = [tmp_path / "single" / f"{i}.png" for i in range(len(series))]
    batch = [tmp_path / "batch" / f"{i}.png" for i in range(len(series))]
    for values, path in zip(series, single, strict=True):
        render_png(values, path, SMALL)
    calls = []
    render_many(series, batch, SMALL, workers=2, progress=lambda done, n: calls.append((done, n)))
    for a, b in zip(single, batch, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert calls[-1] == (len(series), len(series))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_render_many_from_a_threaded_parent_uses_a_fork_server(tmp_path):
    # A parent with other Python threads (Dagster, a server) must not be forked.
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        assert _pool_context().get_start_method() == "forkserver"
        series = [np.random.default_rng(i).standard_normal(300) for i in range(4)]
        paths = [tmp_path / f"{i}.png" for i in range(4)]
        render_many(series, paths, workers=2)
    finally:
        release.set()
        thread.join()
    render_png(series[2], tmp_path / "ref.png")
    assert paths[2].read_bytes() == (tmp_path / "ref.png").read_bytes()


def test_render_many_in_process_matches(tmp_path):
    values = [_spike_series(300, 30), np.linspace(-2, 2, 300)]
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    render_many(values, paths, workers=1)
    render_png(values[1], tmp_path / "ref.png")
    assert paths[1].read_bytes() == (tmp_path / "ref.png").read_bytes()


def test_constant_series_renders_with_the_line_in_the_middle():
    params = RenderParams()
    rgb = render_rgb(np.full(200, 3.0), params)
    _, top, _, bottom = axes_box_px(params)
    rows = np.nonzero(_line_mask(rgb))[0]
    assert abs(rows.mean() - (top + bottom) / 2) < 2


def test_encode_png_round_trips_through_an_independent_decoder(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 256, (13, 29, 3), dtype=np.uint8)
    for level in (0, 1, 9):
        path = tmp_path / f"x{level}.png"
        path.write_bytes(encode_png(rgb, level))
        np.testing.assert_array_equal(np.asarray(load_image(path)), rgb)
    # IDAT is plain zlib of filter-0 rows.
    idat = encode_png(rgb)[8 + 25 + 8:-12 - 4]
    rows = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(13, 1 + 29 * 3)
    assert not rows[:, 0].any()


def test_naive_baseline_writes_a_reference_sized_png(tmp_path):
    path = tmp_path / "naive.png"
    naive_render_png(_spike_series(), path, RenderParams(fixed_ylim=True))
    assert load_image(path).size == (1000, 150)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.array([0.0, np.nan, 1.0]), r"values_list\[1\].*NaN/inf.*position 1"),
        (np.array([0.0, 1.0, np.inf]), r"values_list\[1\].*position 2"),
        (np.zeros((3, 4)), r"values_list\[1\].*1-D"),
        (np.zeros(1), r"values_list\[1\].*at least 2"),
        (["a", "b"], r"values_list\[1\].*numbers"),
    ],
)
def test_render_many_names_the_bad_series(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match):
        render_many([np.zeros(10), bad], [tmp_path / "a.png", tmp_path / "b.png"], workers=1)
    assert not (tmp_path / "a.png").exists()  # checked before anything is written


def test_render_png_rejects_nan(tmp_path):
    with pytest.raises(ValueError, match=r"values .*NaN/inf"):
        render_png(np.array([1.0, np.nan]), tmp_path / "x.png")


def test_render_many_rejects_mismatched_paths_and_bad_workers(tmp_path):
    with pytest.raises(ValueError, match="3 series but paths has 2"):
        render_many([np.zeros(5)] * 3, [tmp_path / "a.png", tmp_path / "b.png"])
    with pytest.raises(ValueError, match="workers"):
        render_many([np.zeros(5)], [tmp_path / "a.png"], workers=0)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        (RenderParams(width_px=10), "width_px"),
        (RenderParams(height_px=20), "height_px"),
        (RenderParams(dpi=0), "dpi"),
        (RenderParams(line_color="not-a-colour"), "line_color"),
        (RenderParams(line_width=0), "line_width"),
        (RenderParams(font_px=1), "font_px"),
        (RenderParams(y_margin=-0.1), "y_margin"),
        (RenderParams(png_compress_level=12), "png_compress_level"),
        (RenderParams(width_px=64, font_px=40), "plot area"),
    ],
)
def test_params_validate_names_the_field(params, field):
    with pytest.raises(ValueError, match=field):
        params.validate()


def test_load_image_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="render it first"):
        load_image(tmp_path / "missing.png")

"""Render time series as PNG line plots, the images the multimodal model reads.

The reference plots each series with matplotlib at 10 x 1.5 inches, 100 dpi (1000 x 150 px), a
steelblue line and default axes whose x tick labels let the model read indices off the plot
(method.md §2). This module keeps that look and makes it fast and reproducible:

* **Fixed layout in pixels.** The axes box depends only on :class:`RenderParams`, never on the
  data, so every image of a data set shares the same plot area, margins are just wide enough for
  the tick labels (matplotlib's default subplot margins leave a quarter of the width empty) and
  :func:`axes_box_px` can tell tests and annotators where index ``i`` lands.
* **Y-limits that never clip.** The reference fixes the y-axis to (-1, 1), which clips extremes;
  here the limits follow the data plus :attr:`RenderParams.y_margin` and the line's half-width
  (``fixed_ylim=True`` restores the reference behaviour).
* **One figure per process, static parts drawn once.** Profiling the naive loop (new figure,
  ``plt.plot``, ``savefig``) shows figure creation and tick-label layout dominate. A worker
  builds one figure, draws the parts that depend only on the series length (background, x-axis)
  once, and per series restores that background and draws only the y-axis, the line and the
  spines (the same z-order as a full draw).
* **Cheap, deterministic PNG.** The RGB buffer is written as an unfiltered PNG compressed with
  zlib level 1: about 5x faster than Pillow's adaptive-filter encoder at the same level and
  smaller for plots (mostly white rows). No metadata (no Software or time chunk), so the same
  values and params always give byte-identical files.

Everything runs through the same renderer (:func:`render_png` in-process, :func:`render_many`
in a pool of worker processes), so both produce byte-identical files for the same series.
:func:`naive_render_png` reproduces the reference's approach and exists only as the benchmark's
baseline (``benchmarks/bench_render.py``).
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import struct
import sys
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import is_color_like
from matplotlib.figure import Figure
from matplotlib.ticker import Formatter, MaxNLocator
from PIL import Image

PathLike = str | os.PathLike

# Font metrics of DejaVu Sans (matplotlib's default font) as fractions of the font size in px:
# a digit is ~0.64 em wide and a text line (ascent + descent) ~1.17 em tall.
_DIGIT_EM = 0.64
_LINE_EM = 1.17
# Tick length and label pad as fractions of the font size (matplotlib's defaults are 3.5 pt for a
# 10 pt font).
_TICK_EM = 0.35
_PAD_EM = 0.35
# The left margin holds y tick labels this many digit widths wide ("-0.125" fits; wider labels
# are cut at the image edge, see _TickLabels).
_Y_LABEL_CHARS = 6.5
# Target spacing between x ticks and between y ticks, in font sizes.
_X_TICK_SPACING_EM = 7.0
_Y_TICK_SPACING_EM = 1.9
_TICK_STEPS = (1, 2, 2.5, 5, 10)
# Starting a pool (fork, first draw in each worker, teardown) costs about as much as rendering
# 20-30 images, so smaller batches stay in-process unless workers is given.
_MIN_POOL_BATCH = 32
# Cached backgrounds per figure (one per series length, ~4 bytes per pixel each).
_MAX_BACKGROUNDS = 16


@dataclass(frozen=True)
class RenderParams:
    """How a series becomes an image.

    Size:
        width_px, height_px: exact image size in pixels. Default 1000 x 150, the reference's
            10 x 1.5 in at 100 dpi (method.md §2); the tiny offline model uses 448 x 112.
        dpi: dots per inch; converts point sizes (line width, font) to pixels.

    Look:
        line_color: any matplotlib colour; the reference uses "steelblue".
        line_width: line width in points; 1.5 is matplotlib's default, which the reference uses.
        font_px: tick-label font size in pixels. ``None`` picks ``0.08 * height_px`` clamped to
            [9, 16] px, which keeps digits legible at 448 x 112 and matches matplotlib's look at
            1000 x 150 (12 px, about 8.6 pt at 100 dpi).

    Y-axis:
        fixed_ylim: True reproduces the reference's fixed (-1, 1) y-axis, which clips values
            outside it. False (default) fits the limits to the data so nothing is clipped.
        y_margin: fraction of the data range added below and above (on top of the room the line's
            own width needs) when ``fixed_ylim`` is False.

    Encoding:
        png_compress_level: zlib level 0-9 of the PNG stream. Level 1 is the fastest level that
            still compresses (about 23 kB for 1000 x 150, level 0 is 450 kB); it never changes
            pixels.
    """

    width_px: int = 1000
    height_px: int = 150
    dpi: int = 100
    line_color: str = "steelblue"
    line_width: float = 1.5
    font_px: float | None = None
    fixed_ylim: bool = False
    y_margin: float = 0.05
    png_compress_level: int = 1

    def validate(self) -> None:
        """Raise ValueError naming the first field outside its allowed range."""
        if not isinstance(self.width_px, int) or not 64 <= self.width_px <= 10000:
            raise ValueError(f"width_px must be an int in [64, 10000], got {self.width_px!r}")
        if not isinstance(self.height_px, int) or not 48 <= self.height_px <= 10000:
            raise ValueError(f"height_px must be an int in [48, 10000], got {self.height_px!r}")
        if not isinstance(self.dpi, int) or not 10 <= self.dpi <= 1000:
            raise ValueError(f"dpi must be an int in [10, 1000], got {self.dpi!r}")
        if not isinstance(self.line_color, str) or not is_color_like(self.line_color):
            raise ValueError(
                f"line_color must be a matplotlib colour such as 'steelblue' or '#4682b4', "
                f"got {self.line_color!r}"
            )
        if not 0 < self.line_width <= 20:
            raise ValueError(f"line_width must be in (0, 20] points, got {self.line_width!r}")
        if self.font_px is not None and not 4 <= self.font_px <= 100:
            raise ValueError(f"font_px must be None or in [4, 100] px, got {self.font_px!r}")
        if not isinstance(self.fixed_ylim, bool):
            raise ValueError(f"fixed_ylim must be a bool, got {self.fixed_ylim!r}")
        if not 0 <= self.y_margin <= 1:
            raise ValueError(f"y_margin must be in [0, 1], got {self.y_margin!r}")
        if not isinstance(self.png_compress_level, int) or not 0 <= self.png_compress_level <= 9:
            raise ValueError(
                f"png_compress_level must be an int in [0, 9], got {self.png_compress_level!r}"
            )
        left, top, right, bottom = axes_box_px(self)
        if right - left < 32 or bottom - top < 16:
            raise ValueError(
                f"width_px={self.width_px}, height_px={self.height_px} leave a plot area of only "
                f"{right - left:.0f} x {bottom - top:.0f} px after the tick labels "
                f"(font_px={self.resolved_font_px():.1f}); make the image larger or font_px smaller"
            )

    def resolved_font_px(self) -> float:
        """Tick-label font size in pixels (``font_px`` or the height-based default)."""
        if self.font_px is not None:
            return float(self.font_px)
        return float(min(16.0, max(9.0, 0.08 * self.height_px)))


def axes_box_px(params: RenderParams | None = None) -> tuple[float, float, float, float]:
    """Plot-area box ``(left, top, right, bottom)`` in image pixels, rows counted from the top.

    The box is the inside of the axes frame: x index 0 lands on ``left`` and index L-1 on
    ``right``; the y-limits span ``bottom`` (low) to ``top`` (high). It depends only on the
    params, so it is the same for every image rendered with them.
    """
    p = params or RenderParams()
    font = p.resolved_font_px()
    tick_and_pad = (_TICK_EM + _PAD_EM) * font
    left = tick_and_pad + _Y_LABEL_CHARS * _DIGIT_EM * font + 2.0
    # The last x label may sit on the right edge and overhang by half its width (4 digits).
    right = p.width_px - 2.0 * _DIGIT_EM * font - 2.0
    # The top y label is centred on the top edge and overhangs by half a text line.
    top = 0.5 * _LINE_EM * font + 1.0
    bottom = p.height_px - (tick_and_pad + _LINE_EM * font + 1.0)
    return left, top, right, bottom


def _as_series(values, index: int | None = None) -> np.ndarray:
    """Check one series and return it as float64 (L,); ValueError names the series' index."""
    where = "values" if index is None else f"values_list[{index}]"
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} must be a 1-D array of numbers: {exc}") from None
    if arr.ndim != 1:
        raise ValueError(f"{where} must be 1-D (one series of length L), got shape {arr.shape}")
    if arr.size < 2:
        raise ValueError(f"{where} must hold at least 2 points to draw a line, got {arr.size}")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{where} holds {int(bad.sum())} NaN/inf value(s) (first at position {first}); "
            "fill or drop them before rendering"
        )
    if not np.isfinite(arr.max() - arr.min()):
        raise ValueError(f"{where} spans a range too large to plot; rescale the series")
    return arr


def _ylim(values: np.ndarray, p: RenderParams, axes_height_px: float) -> tuple[float, float]:
    """Y-limits that keep the whole stroke inside the axes (or the reference's fixed (-1, 1))."""
    if p.fixed_ylim:
        return -1.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    span = hi - lo
    if span <= 1e-12 * max(1.0, abs(lo), abs(hi)):
        # A flat series: centre it with a unit (or 10 %) half-range instead of a zero-height axis.
        half = max(1.0, 0.1 * abs(lo))
        return lo - half, hi + half
    # The stroke extends half the line width (plus a pixel of antialiasing) past the data point.
    # Solving pad = y_margin*span + k*(span + 2*pad) for pad keeps it inside for any y_margin.
    stroke_px = 0.5 * p.line_width * p.dpi / 72.0 + 1.0
    k = stroke_px / axes_height_px
    pad = (p.y_margin + k) * span / (1.0 - 2.0 * k)
    return lo - pad, hi + pad


class _TickLabels(Formatter):
    """Tick labels with one shared number of decimals and no offset text.

    Matplotlib's ScalarFormatter moves large or narrow-range values into an offset text above the
    axes, where a 150 px figure has no room. Here every label carries its full value: fixed-point
    with the fewest decimals that represent all ticks, or compact scientific notation
    ("1.5e4") when that would be wider than the left margin.
    """

    def __init__(self, max_chars: int):
        self.max_chars = max_chars

    def __call__(self, x, pos=None) -> str:
        return self.format_ticks([x])[0]

    def format_ticks(self, values) -> list[str]:
        vals = np.asarray(values, dtype=np.float64)
        if vals.size == 0:
            return []
        scale = max(float(np.abs(vals).max()), 1e-300)
        for decimals in range(0, 12):
            if np.all(np.abs(np.round(vals, decimals) - vals) <= 1e-9 * scale):
                break
        fixed = [_strip_negative_zero(f"{v:.{decimals}f}") for v in vals]
        if max(len(s) for s in fixed) <= self.max_chars:
            return fixed
        for digits in range(0, 8):
            sci = [_compact_exp(f"{v:.{digits}e}") for v in vals]
            if len(set(sci)) == len(sci):
                break
        # Neither fits (a narrow range far from zero): keep the shorter; its left end is cut.
        return fixed if max(map(len, fixed)) <= max(map(len, sci)) else sci


def _strip_negative_zero(label: str) -> str:
    return label[1:] if label.startswith("-") and float(label) == 0 else label


def _compact_exp(label: str) -> str:
    mantissa, exponent = label.split("e")
    mantissa = _strip_negative_zero(mantissa)
    return "0" if float(mantissa) == 0 else f"{mantissa}e{int(exponent)}"


class _IndexLabels(Formatter):
    """X tick labels as plain integers: the indices the model reads."""

    def __call__(self, x, pos=None) -> str:
        return str(int(round(x)))


class _Plotter:
    """One reusable figure that renders series of any length to RGB arrays.

    The background (figure and axes face, x-axis) depends only on the series length; it is drawn
    once per length and restored for every series, after which only the y ticks, the line and the
    spines are drawn, in the z-order a full ``Figure.draw`` uses. The result is pixel-identical to
    a full draw (tests/test_render.py checks it).
    """

    def __init__(self, params: RenderParams):
        self.params = params
        p = params
        font_px = p.resolved_font_px()
        font_pt = font_px * 72.0 / p.dpi
        left, top, right, bottom = axes_box_px(p)
        w, h = p.width_px, p.height_px

        self.figure = Figure(figsize=(_inches(w, p.dpi), _inches(h, p.dpi)), dpi=p.dpi)
        self.figure.patch.set_facecolor("white")
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes = self.figure.add_axes(
            (left / w, 1.0 - bottom / h, (right - left) / w, (bottom - top) / h)
        )
        self.axes.set_facecolor("white")
        (self.line,) = self.axes.plot([0.0, 1.0], [0.0, 0.0], color=p.line_color,
                                      linewidth=p.line_width)
        self.axes.tick_params(labelsize=font_pt, length=_TICK_EM * font_pt, pad=_PAD_EM * font_pt)
        x_bins = max(2, int((right - left) / (_X_TICK_SPACING_EM * font_px)))
        y_bins = max(1, int((bottom - top) / (_Y_TICK_SPACING_EM * font_px)))
        self.axes.xaxis.set_major_locator(
            MaxNLocator(nbins=x_bins, steps=list(_TICK_STEPS), integer=True, min_n_ticks=2)
        )
        self.axes.xaxis.set_major_formatter(_IndexLabels())
        self.axes.yaxis.set_major_locator(
            MaxNLocator(nbins=y_bins, steps=list(_TICK_STEPS), min_n_ticks=2)
        )
        self.axes.yaxis.set_major_formatter(_TickLabels(max_chars=int(_Y_LABEL_CHARS)))
        self._axes_height_px = bottom - top
        # Drawn per series over the background, in Figure.draw's z-order: y-axis (zorder 1.5),
        # line (2), spines (2.5).
        self._over_line = [self.line, *self.axes.spines.values()]
        self._foreground = [self.axes.yaxis, *self._over_line]
        # Backgrounds per series length (most recent last): mixed-length batches do not redraw
        # the x-axis at every change of length.
        self._backgrounds: OrderedDict[int, object] = OrderedDict()
        self._length: int | None = None
        self._x: np.ndarray | None = None
        # matplotlib figures are not thread-safe; render_png may be called from threads.
        self._lock = threading.Lock()

    def _use_length(self, length: int) -> None:
        self.axes.set_xlim(0, length - 1)
        self._x = np.arange(length, dtype=np.float64)
        self._length = length
        if length in self._backgrounds:
            self._backgrounds.move_to_end(length)
            return
        for artist in self._foreground:
            artist.set_visible(False)
        self.canvas.draw()
        self._backgrounds[length] = self.canvas.copy_from_bbox(self.figure.bbox)
        for artist in self._foreground:
            artist.set_visible(True)
        if len(self._backgrounds) > _MAX_BACKGROUNDS:
            self._backgrounds.popitem(last=False)

    def rgb(self, values: np.ndarray) -> np.ndarray:
        """Render one checked series; returns a (height_px, width_px, 3) uint8 array."""
        with self._lock:
            if values.size != self._length:
                self._use_length(values.size)
            self.canvas.restore_region(self._backgrounds[self._length])
            self.line.set_data(self._x, values)
            self.axes.set_ylim(*_ylim(values, self.params, self._axes_height_px))
            renderer = self.canvas.get_renderer()
            # Axis.draw would also lay out every tick label's bounding box to place the axis
            # label and offset text, which this plot does not have (_TickLabels never offsets):
            # drawing the ticks alone gives the same pixels in ~60 % of the time.
            for tick in self.axes.yaxis._update_ticks():
                tick.draw(renderer)
            for artist in self._over_line:
                self.axes.draw_artist(artist)
            return _rgba_to_rgb(np.asarray(self.canvas.buffer_rgba()))


def _rgba_to_rgb(rgba: np.ndarray) -> np.ndarray:
    """Drop the alpha channel of an (H, W, 4) uint8 array -> contiguous (H, W, 3).

    ``rgba[..., :3].copy()`` is a byte-strided copy that took ~25 % of the per-image time; reading
    each pixel as one little-endian uint32 and shifting out the channels is ~4x faster.
    """
    if sys.byteorder != "little":
        return np.ascontiguousarray(rgba[..., :3])
    height, width, _ = rgba.shape
    pixels = np.ascontiguousarray(rgba).view(np.uint32).reshape(height, width)
    rgb = np.empty((height, width, 3), dtype=np.uint8)
    rgb[..., 0] = pixels  # assignment to uint8 keeps the low byte (R)
    rgb[..., 1] = pixels >> 8
    rgb[..., 2] = pixels >> 16
    return rgb


def _inches(px: int, dpi: int) -> float:
    """Figure size in inches whose pixel size matplotlib truncates back to exactly ``px``."""
    inches = px / dpi
    while inches * dpi < px:
        inches = math.nextafter(inches, math.inf)
    return inches


@functools.lru_cache(maxsize=4)
def _plotter(params: RenderParams) -> _Plotter:
    return _Plotter(params)


def encode_png(rgb: np.ndarray, compress_level: int = 1) -> bytes:
    """Encode a (H, W, 3) uint8 array as a PNG (8-bit RGB, no filter, no metadata chunks).

    Written by hand because Pillow always runs its adaptive row filter, which costs more than the
    zlib pass itself on plots; filter "None" is also the better filter for flat white rows.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be a (H, W, 3) uint8 array, got {rgb.dtype} {rgb.shape}")
    height, width, _ = rgb.shape
    rows = np.zeros((height, 1 + 3 * width), dtype=np.uint8)  # leading 0 = filter "None"
    rows[:, 1:] = rgb.reshape(height, 3 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit truecolour
    return b"".join((
        b"\x89PNG\r\n\x1a\n",
        _png_chunk(b"IHDR", header),
        _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), compress_level)),
        _png_chunk(b"IEND", b""),
    ))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _write(path: PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def render_rgb(values: np.ndarray, params: RenderParams | None = None) -> np.ndarray:
    """Render one series (L,) to a (height_px, width_px, 3) uint8 array (what the PNG holds)."""
    p = params or RenderParams()
    p.validate()
    return _plotter(p).rgb(_as_series(values))


def render_png(values: np.ndarray, path: PathLike, params: RenderParams | None = None) -> None:
    """Plot one series (L,) as a clean line plot and write it to ``path`` as an RGB PNG.

    The x-axis runs from index 0 to L-1 with integer tick labels at round indices; the y-limits
    fit the data (see :class:`RenderParams`). The function takes no intervals: the model's images
    never show the ground truth. The same values and params always produce the same bytes.
    Parent directories are created.
    """
    p = params or RenderParams()
    rgb = render_rgb(values, p)
    _write(path, encode_png(rgb, p.png_compress_level))


def _render_chunk(params: RenderParams, items: list[tuple[np.ndarray, str]]) -> int:
    """Worker task: render a chunk of (values, path) pairs with the process's cached figure."""
    plotter = _plotter(params)
    for values, path in items:
        _write(path, encode_png(plotter.rgb(values), params.png_compress_level))
    return len(items)


def _pool_context():
    """The cheapest start method that is safe here.

    A parent running only its main Python thread is forked: workers start in milliseconds and
    inherit the warm figure. (Native pool threads, such as OpenBLAS's, hold no Python lock and
    their libraries register fork handlers.) Forking while other Python threads run (Dagster,
    a server) could copy a lock one of them holds, so then workers come from a fork server, a
    single-threaded process that imports this module once (workers skip the ~0.5 s matplotlib
    import); spawn is the fallback where neither exists.
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def default_workers() -> int:
    """CPUs this process may run on (its affinity mask), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def render_many(
    values_list: Sequence[np.ndarray],
    paths: Sequence[PathLike],
    params: RenderParams | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Render a batch of series to PNGs using all cores; same bytes as :func:`render_png`.

    Args:
        values_list: N series, each (L_i,), finite. Lengths may differ.
        paths: N output paths; parent directories are created.
        params: rendering parameters (defaults if None).
        workers: worker processes; 1 renders in this process. None (default): all CPUs
            (:func:`default_workers`), or this process for batches under 32 series, where
            starting workers would cost more than it saves.
        progress: optional ``callable(n_done, n_total)``, called after each chunk.

    Raises:
        ValueError: lengths of ``values_list`` and ``paths`` differ, a series is not 1-D, has
            fewer than 2 points or holds NaN/inf (the message names its index), or a param or
            ``workers`` is out of range.

    Work is split into chunks (about four per worker) so that process start-up is paid once per
    worker and inter-process traffic once per chunk, not per image.
    """
    p = params or RenderParams()
    p.validate()
    if len(values_list) != len(paths):
        raise ValueError(
            f"values_list has {len(values_list)} series but paths has {len(paths)} entries; "
            "pass one output path per series"
        )
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be a positive int or None, got {workers!r}")
    items = [(_as_series(v, i), os.fspath(path))
             for i, (v, path) in enumerate(zip(values_list, paths, strict=True))]
    total = len(items)
    if total == 0:
        return
    if workers is None:
        workers = default_workers() if total >= _MIN_POOL_BATCH else 1

    n_chunks = min(total, workers * 4)
    bounds = np.linspace(0, total, n_chunks + 1).round().astype(int)
    chunks = [items[a:b] for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
    workers = min(workers, len(chunks))

    done = 0
    if workers == 1:
        for chunk in chunks:
            done += _render_chunk(p, chunk)
            if progress is not None:
                progress(done, total)
        return
    ctx = _pool_context()
    if ctx.get_start_method() == "fork":
        # Build the figure and its first background before forking so no worker redraws them.
        _plotter(p).rgb(chunks[0][0][0])
    # close() + join() rather than the context manager's terminate(): terminating forkserver
    # workers that sit in the task queue's lock deadlocked a CI run.
    pool = ctx.Pool(workers)
    try:
        for n in pool.imap_unordered(functools.partial(_render_chunk, p), chunks):
            done += n
            if progress is not None:
                progress(done, total)
        pool.close()
        pool.join()
    except BaseException:
        pool.terminate()
        raise


def naive_render_png(
    values: np.ndarray, path: PathLike, params: RenderParams | None = None
) -> None:
    """The reference's rendering loop body: BENCHMARK BASELINE ONLY, do not use for data.

    A new pyplot figure per series, ``plt.plot``, ``plt.savefig``, ``plt.close``, with matplotlib's
    default margins and tick formatter, written as an RGBA PNG with a Software metadata chunk.
    Kept so that ``benchmarks/bench_render.py`` can measure :func:`render_many` against the
    approach it replaces.
    """
    import matplotlib.pyplot as plt  # pyplot only here: the real renderers avoid global state

    p = params or RenderParams()
    p.validate()
    arr = _as_series(values)
    fig = plt.figure(figsize=(_inches(p.width_px, p.dpi), _inches(p.height_px, p.dpi)), dpi=p.dpi)
    try:
        plt.plot(arr, color=p.line_color, linewidth=p.line_width)
        if p.fixed_ylim:
            plt.ylim(-1, 1)
        plt.savefig(path)
    finally:
        plt.close(fig)


def load_image(path: PathLike) -> Image.Image:
    """Open a rendered plot as an RGB PIL image (loaded into memory, file closed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no image at {path}; render it first (anomseer.render.render_png / render_many)"
        )
    with Image.open(path) as img:
        return img.convert("RGB")

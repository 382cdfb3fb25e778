"""Save and load a list of :class:`~anomseer.series.sample.Sample` as one ``.npz`` file.

Layout (every array plain, so ``np.load(allow_pickle=False)`` reads it; strings are fixed-width
unicode, never Python objects):

- ``format``: the scalar string :data:`FORMAT`.
- ``values``: float64 (N, L) when every series has the same length (always true within a split);
  otherwise ``values_flat`` float64 (sum of lengths,) with ``value_offsets`` int64 (N + 1,).
- ``families``, ``labels``, ``uids``: unicode (N,).
- ``interval_bounds``: int64 (M, 2), all intervals of all samples in order; ``interval_offsets``:
  int64 (N + 1,), sample ``i`` owns rows ``interval_offsets[i]:interval_offsets[i + 1]``.

``np.savez`` stamps each zip member with the current time, so two saves of the same data differ.
Here members are written with a fixed timestamp and fixed attributes, uncompressed, in a fixed
order: identical samples give a byte-identical file (which keeps DVC from seeing false changes).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from anomseer.series.sample import Sample

FORMAT = "anomseer.samples/1"
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def _strings(items: list[str]) -> np.ndarray:
    width = max([1, *(len(s) for s in items)])
    return np.array(items, dtype=f"<U{width}")


def _check_sample(i: int, s) -> None:
    if not isinstance(s, Sample):
        raise ValueError(f"samples[{i}] is a {type(s).__name__}, expected an anomseer.series.Sample")
    if s.values.ndim != 1:
        raise ValueError(f"samples[{i}] ({s.uid or s.family}) values must be 1-D, got shape {s.values.shape}")
    previous_end = 0
    for start, end in s.intervals:
        if not previous_end <= start < end <= s.length:
            raise ValueError(
                f"samples[{i}] ({s.uid or s.family}) has interval {(start, end)} that is not sorted, "
                f"disjoint and within [0, {s.length}]: intervals={s.intervals}"
            )
        previous_end = end


def _arrays(samples: list[Sample]) -> dict[str, np.ndarray]:
    for i, s in enumerate(samples):
        _check_sample(i, s)
    lengths = [s.length for s in samples]
    arrays: dict[str, np.ndarray] = {"format": np.array(FORMAT)}
    if len(set(lengths)) <= 1:
        width = lengths[0] if lengths else 0
        values = np.empty((len(samples), width), dtype=np.float64)
        for i, s in enumerate(samples):
            values[i] = s.values
        arrays["values"] = values
    else:
        arrays["values_flat"] = np.concatenate([np.asarray(s.values, dtype=np.float64) for s in samples])
        arrays["value_offsets"] = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    arrays["families"] = _strings([s.family for s in samples])
    arrays["labels"] = _strings([s.label for s in samples])
    arrays["uids"] = _strings([s.uid for s in samples])
    bounds = [pair for s in samples for pair in s.intervals]
    arrays["interval_bounds"] = np.array(bounds, dtype=np.int64).reshape(len(bounds), 2)
    counts = [len(s.intervals) for s in samples]
    arrays["interval_offsets"] = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return arrays


def save_samples(samples, path) -> Path:
    """Write ``samples`` to ``path`` (one ``.npz``, parents created, replaced atomically).

    Returns:
        the path written.
    """
    samples = list(samples)
    path = Path(path)
    arrays = _arrays(samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, mode="w", compression=zipfile.ZIP_STORED) as archive:
            for key, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, array, allow_pickle=False)
                info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_ZIP_TIME)
                info.compress_type = zipfile.ZIP_STORED
                info.external_attr = 0o644 << 16
                archive.writestr(info, buffer.getvalue())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _require(data, key: str, path: Path) -> np.ndarray:
    if key not in data.files:
        raise ValueError(f"{path} is not an anomseer samples file: missing key {key!r} (has {sorted(data.files)})")
    try:
        return data[key]
    except ValueError as error:  # e.g. an object array, refused without pickle
        raise ValueError(f"{path}: key {key!r} cannot be read safely: {error}") from error


def load_samples(path) -> list[Sample]:
    """Read the samples written by :func:`save_samples`.

    Raises:
        FileNotFoundError: no file at ``path`` (run the ``synthetic_series`` stage to create it).
        ValueError: the file is not a samples file (names the missing key or the inconsistency).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no samples file at {path}; run the `synthetic_series` stage to create it "
            "(e.g. `dvc repro synthetic_series`)"
        )
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable .npz samples file: {error}") from error
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path} holds a single array, not an anomseer samples file (.npz with key 'format')")
    with data:
        fmt = str(_require(data, "format", path))
        if fmt != FORMAT:
            raise ValueError(f"{path} has format {fmt!r}; this code reads {FORMAT!r}")
        families = _require(data, "families", path)
        labels = _require(data, "labels", path)
        uids = _require(data, "uids", path)
        bounds = _require(data, "interval_bounds", path)
        offsets = _require(data, "interval_offsets", path)
        n = families.shape[0]
        if "values" in data.files:
            table = _require(data, "values", path)
            rows = [np.array(table[i], dtype=np.float64) for i in range(table.shape[0])]
        else:
            flat = _require(data, "values_flat", path)
            value_offsets = _require(data, "value_offsets", path)
            rows = [np.array(flat[a:b], dtype=np.float64) for a, b in zip(value_offsets[:-1], value_offsets[1:])]
    if not (len(rows) == n == labels.shape[0] == uids.shape[0] == offsets.shape[0] - 1):
        raise ValueError(
            f"{path} is inconsistent: {len(rows)} series, {n} families, {labels.shape[0]} labels, "
            f"{uids.shape[0]} uids, {offsets.shape[0]} interval offsets (expected N + 1)"
        )
    if bounds.ndim != 2 or bounds.shape[1] != 2 or (n and offsets[-1] != bounds.shape[0]):
        raise ValueError(f"{path} is inconsistent: interval_bounds shape {bounds.shape}, last offset {offsets[-1]}")
    samples = []
    for i in range(n):
        pairs = tuple((int(a), int(b)) for a, b in bounds[offsets[i] : offsets[i + 1]])
        samples.append(
            Sample(values=rows[i], intervals=pairs, label=str(labels[i]), family=str(families[i]), uid=str(uids[i]))
        )
    return samples

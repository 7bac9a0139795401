"""One writer per kind of output, all atomic: label TIFF, cell table CSV, text/JSON, raw bytes.

Every writer renders its file in memory, writes it to ``<name>.tmp`` beside the target, flushes it to
disk and renames it over the target (``os.replace``), so an interrupted run never leaves a half-written
file: a reader sees the old file or the new one. Folders are created as needed. The checkpoint writer
(:func:`cks.checkpoint.atomic_save`) and the command line use these too.

Example::

    >>> import numpy as np, tempfile, os
    >>> from cks.data.writers import write_labels, write_table, read_table_scores
    >>> d = tempfile.mkdtemp()
    >>> lab = np.zeros((8, 8), np.int32); lab[2:5, 2:5] = 1
    >>> write_labels(lab, os.path.join(d, "a.labels.tif"))
    >>> write_table({"label": [1], "score": [0.9], "y": [3.0], "x": [3.0], "area": [9]}, os.path.join(d, "a.csv"))
    >>> read_table_scores(os.path.join(d, "a.csv"))
    {1: 0.9}
"""
from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from ..errors import CksDataError

#: the columns of a cell table (one row per predicted cell; y, x, area at the image's native resolution)
TABLE_COLUMNS = ("label", "score", "y", "x", "area")


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(text.encode("utf-8"), path)


def write_labels(label: np.ndarray, path: str | os.PathLike) -> None:
    """Write an instance label image ``[H, W]`` (0 = background) as a TIFF (uint16, uint32 past 65535 cells)."""
    import tifffile

    label = np.asarray(label)
    if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer) or (label.size and label.min() < 0):
        raise CksDataError(f"{path}: a label image must be a 2-D array of non-negative integers, "
                           f"got {label.dtype} {label.shape}")
    dtype = np.uint16 if int(label.max(initial=0)) < 65536 else np.uint32
    buf = io.BytesIO()
    tifffile.imwrite(buf, label.astype(dtype))
    atomic_write_bytes(buf.getvalue(), path)


def write_table(table: dict, path: str | os.PathLike) -> None:
    """Write a cell table (``label, score, y, x, area`` arrays, as :func:`cks.predict.predict` returns) as CSV."""
    missing = [c for c in TABLE_COLUMNS if c not in table]
    if missing:
        raise CksDataError(f"{path}: the cell table lacks column(s) {missing}; expected {list(TABLE_COLUMNS)}")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(TABLE_COLUMNS)
    for lab, sc, y, x, area in zip(*(table[c] for c in TABLE_COLUMNS)):
        w.writerow([int(lab), f"{float(sc):.5f}", f"{float(y):.2f}", f"{float(x):.2f}", int(area)])
    atomic_write_text(buf.getvalue(), path)


def read_table_scores(path: str | os.PathLike) -> dict[int, float]:
    """``{label: score}`` from a cell table written by :func:`write_table` (for :func:`cks.metrics.evaluate`).

    Raises :class:`CksDataError` naming the file when it is missing, empty, not a cell table, or has a
    score that is not a number in [0, 1].
    """
    path = Path(path)
    if not path.is_file():
        raise CksDataError(f"{path}: missing (every .labels.tif needs its .csv cell table); re-run `cks predict`")
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
    except (UnicodeDecodeError, csv.Error):
        rows = None
    if rows is None or (rows == [] and not path.read_text().startswith("label")):
        raise CksDataError(f"{path}: empty or not a cell table (header {','.join(TABLE_COLUMNS)}); "
                           f"re-run `cks predict`")
    out: dict[int, float] = {}
    for i, r in enumerate(rows, start=2):
        try:
            lab, sc = int(r["label"]), float(r["score"])
        except (KeyError, ValueError, TypeError):
            raise CksDataError(f"{path}: line {i} is not a cell-table row (label,score,y,x,area); "
                               f"re-run `cks predict`") from None
        if not (math.isfinite(sc) and 0.0 <= sc <= 1.0):
            raise CksDataError(f"{path}: line {i}: score {r['score']!r} is not a number in [0, 1]")
        out[lab] = sc
    return out


__all__ = ["TABLE_COLUMNS", "atomic_write_bytes", "atomic_write_text", "write_labels", "write_table",
           "read_table_scores"]

"""Point labels: making them from masks or a nuclear stain, checking and storing them.

Convention (shared by all of ``cks``): a point is a float ``(y, x)`` in pixels and the
centre of pixel ``(i, j)`` is at ``(i, j)``; the image covers ``[-0.5, H - 0.5] x [-0.5, W - 0.5]``.
Point arrays are ``float32`` ``[N, 2]``.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from cks.errors import CksDataError

__all__ = [
    "centroids",
    "jitter",
    "points_from_nuclei",
    "point_coverage",
    "label_at_points",
    "validate_points",
    "clip_points",
    "write_points",
    "read_points",
]


def _as_points(points, where="points") -> np.ndarray:
    p = np.asarray(points, dtype=np.float32)
    if p.size == 0:
        return np.zeros((0, 2), np.float32)
    if p.ndim != 2 or p.shape[1] != 2:
        raise CksDataError(f"{where}: expected an [N, 2] array of (y, x), got shape {p.shape}")
    return p


def centroids(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroid of every instance: the mean of its pixel indices.

    Args:
        label: int ``[H, W]`` instance label image, 0 = background.
    Returns:
        ``(ids, points)``: ``ids`` int32 ``[N]`` (sorted, all > 0) and ``points`` float32 ``[N, 2]`` (y, x).
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise CksDataError(f"centroids: label must be [H, W], got shape {label.shape}")
    flat = label.ravel()
    fg = np.flatnonzero(flat)
    if fg.size == 0:
        return np.zeros(0, np.int32), np.zeros((0, 2), np.float32)
    ids, inv = np.unique(flat[fg], return_inverse=True)
    rows, cols = np.divmod(fg, label.shape[1])
    count = np.bincount(inv, minlength=ids.size).astype(np.float64)
    cy = np.bincount(inv, weights=rows, minlength=ids.size) / count
    cx = np.bincount(inv, weights=cols, minlength=ids.size) / count
    return ids.astype(np.int32), np.stack([cy, cx], axis=1).astype(np.float32)


def jitter(points: np.ndarray, sigma: float, rng: np.random.Generator, shape=None) -> np.ndarray:
    """Add isotropic Gaussian noise (std ``sigma`` px per coordinate) to simulate inexact clicks.

    Args:
        points: ``[N, 2]``.
        sigma: noise standard deviation in pixels.
        rng: numpy Generator (makes results repeatable).
        shape: optional ``(H, W)``; if given the result is clipped into the image (:func:`clip_points`).
    Returns:
        float32 ``[N, 2]``.
    """
    p = _as_points(points)
    out = p + rng.normal(0.0, sigma, size=p.shape).astype(np.float32)
    return clip_points(out, shape) if shape is not None else out


def points_from_nuclei(nuclear: np.ndarray, background_size: int = 101, smooth_sigma: float = 2.0,
                       percentile: float = 99.9, min_sigma: float = 3.0, max_sigma: float = 10.0,
                       num_sigma: int = 8, threshold: float = 0.15, overlap: float = 0.5) -> np.ndarray:
    """Detect nuclei on a nuclear-stain image and return one point per nucleus (A431 protocol).

    Steps: (1) subtract the local background, a ``background_size`` box mean, clipping at 0;
    (2) ``log1p``; (3) Gaussian smoothing with ``smooth_sigma``; (4) divide by the
    ``percentile``-th percentile; (5) ``skimage.feature.blob_log(min_sigma, max_sigma,
    num_sigma, threshold, overlap)``. Use ``min_sigma=2, max_sigma=6`` for small nuclei (RAW40X).

    Args:
        nuclear: ``[H, W]`` or ``[1, H, W]`` raw intensities.
    Returns:
        float32 ``[N, 2]`` blob centres (y, x), possibly empty.
    """
    from scipy import ndimage
    from skimage.feature import blob_log

    img = np.asarray(nuclear, dtype=np.float64)
    if img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 2:
        raise CksDataError(f"points_from_nuclei: expected a single-channel [H, W] image, got shape {img.shape}")
    if background_size and background_size > 1:
        img = np.clip(img - ndimage.uniform_filter(img, size=int(background_size), mode="reflect"), 0, None)
    img = np.log1p(img)
    if smooth_sigma > 0:
        img = ndimage.gaussian_filter(img, smooth_sigma)
    scale = np.percentile(img, percentile)
    if not scale > 0:  # blank image: nothing to detect
        return np.zeros((0, 2), np.float32)
    img = img / scale
    blobs = blob_log(img, min_sigma=min_sigma, max_sigma=max_sigma, num_sigma=num_sigma,
                     threshold=threshold, overlap=overlap, exclude_border=False)
    return blobs[:, :2].astype(np.float32).reshape(-1, 2)


def label_at_points(points: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Label id under each point (the pixel whose centre is nearest); 0 for points outside the image.

    Returns:
        int32 ``[N]``.
    """
    p = _as_points(points)
    h, w = label.shape
    ij = np.floor(p + 0.5).astype(np.int64)
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < h) & (ij[:, 1] >= 0) & (ij[:, 1] < w)
    out = np.zeros(len(p), np.int32)
    out[inside] = label[ij[inside, 0], ij[inside, 1]]
    return out


def point_coverage(points: np.ndarray, label: np.ndarray) -> dict:
    """How well a point set annotates the cells of a label image.

    Returns:
        dict with ``n_cells``, ``n_points``; fractions of cells that get ``exactly_one`` point,
        ``none`` and ``multiple`` (>= 2); and ``in_background``, the fraction of points that fall
        on background (or outside the image). Fractions of an empty set are 0.
    """
    label = np.asarray(label)
    ids = np.unique(label[label > 0])
    hits = label_at_points(points, label)
    n_cells, n_points = int(ids.size), int(hits.size)
    # number of points per cell, via the rank of each hit id among ids
    per_cell = np.bincount(np.searchsorted(ids, hits[hits > 0]), minlength=ids.size)[: ids.size]
    frac = (lambda k: float(k) / n_cells if n_cells else 0.0)
    return {
        "n_cells": n_cells,
        "n_points": n_points,
        "exactly_one": frac(np.count_nonzero(per_cell == 1)),
        "none": frac(np.count_nonzero(per_cell == 0)),
        "multiple": frac(np.count_nonzero(per_cell >= 2)),
        "in_background": float(np.count_nonzero(hits == 0)) / n_points if n_points else 0.0,
    }


def validate_points(points, shape, name: str = "points", allow_empty: bool = True) -> np.ndarray:
    """Check that ``points`` is a finite ``[N, 2]`` array inside an image of ``shape`` ``(H, W)``.

    Inside means ``-0.5 <= y < H - 0.5`` and likewise for x: pixel ``i`` covers ``[i - 0.5, i + 0.5)``, so a
    point on the far edge belongs to no pixel of the image.

    Returns:
        the points as float32 ``[N, 2]``.
    Raises:
        CksDataError: wrong shape, NaN/inf, a point outside the image, or no points when
            ``allow_empty`` is False.
    """
    p = _as_points(points, name)
    if len(p) == 0 and not allow_empty:
        raise CksDataError(f"{name}: no points; every training image needs at least one point (or drop it)")
    if not np.isfinite(p).all():
        raise CksDataError(f"{name}: NaN/inf coordinates; remove those points")
    h, w = shape[-2:]
    bad = (p[:, 0] < -0.5) | (p[:, 0] >= h - 0.5) | (p[:, 1] < -0.5) | (p[:, 1] >= w - 0.5)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise CksDataError(
            f"{name}: {int(bad.sum())} point(s) outside the {h}x{w} image, e.g. (y, x) = "
            f"({p[k, 0]:.1f}, {p[k, 1]:.1f}); points are (y, x) pixels, check for swapped axes "
            f"or a different image scale, or use clip_points")
    return p


def clip_points(points, shape) -> np.ndarray:
    """Clamp points onto the nearest pixel centre range ``[0, H-1] x [0, W-1]``."""
    p = _as_points(points).copy()
    h, w = shape[-2:]
    p[:, 0] = np.clip(p[:, 0], 0, h - 1)
    p[:, 1] = np.clip(p[:, 1], 0, w - 1)
    return p


def write_points(path: str | os.PathLike, points) -> None:
    """Write points to ``.json`` (``{"points": [[y, x], ...]}``) or ``.csv`` (header ``y,x``)."""
    path = Path(path)
    p = _as_points(points)
    if path.suffix.lower() == ".csv":
        with open(path, "w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(["y", "x"])
            wr.writerows([[repr(float(y)), repr(float(x))] for y, x in p])
    elif path.suffix.lower() == ".json":
        path.write_text(json.dumps({"points": p.astype(float).tolist()}))
    else:
        raise CksDataError(f"{path}: unknown point file type; use a .json or .csv file name")


def read_points(path: str | os.PathLike) -> np.ndarray:
    """Read points written by :func:`write_points`.

    JSON may also be a bare list ``[[y, x], ...]`` or a dict with key ``locations``.
    CSV needs columns ``y`` and ``x`` (others are ignored).

        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "field.csv")
        >>> write_points(path, [[10.0, 20.5], [3.0, 4.0]])
        >>> read_points(path).tolist()
        [[10.0, 20.5], [3.0, 4.0]]

    Returns:
        float32 ``[N, 2]``.
    """
    path = Path(path)
    if not path.is_file():
        raise CksDataError(f"{path}: point file not found; check the path")
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            data = json.loads(path.read_text())
            if isinstance(data, dict):
                data = data.get("points", data.get("locations"))
            if data is None:
                raise ValueError('no "points" or "locations" key')
            return _as_points(np.asarray(data, dtype=np.float64), str(path))
        if suffix == ".csv":
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
            if rows and not {"y", "x"} <= set(rows[0]):
                raise ValueError(f"columns are {list(rows[0])}, need y and x")
            return _as_points([[float(r["y"]), float(r["x"])] for r in rows], str(path))
    except CksDataError:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise CksDataError(f"{path}: not a valid point file ({exc}); expected (y, x) pairs") from None
    raise CksDataError(f"{path}: unknown point file type; use a .json or .csv file")

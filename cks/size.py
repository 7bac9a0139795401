"""Cell size: its definition from masks and its automatic estimate from point labels.

The project has one notion of cell size: the **median equivalent diameter** of an image's cells,
in pixels (:func:`median_diameter`). A cell of area ``A`` px has equivalent diameter
``sqrt(4 A / pi)``, the diameter of the disk of the same area. The CKS losses, the detector and
the size normalisation (:mod:`cks.data.normalize`) all refer to this number.

Without masks, :func:`estimate_diameter` estimates it from the image and one point per cell:

1. *Rough scale.* ``s``, the median nearest-neighbour distance of the points
   (:func:`point_spacing`). The image is resampled so that ``s`` becomes ``WORK_SPACING`` px (never
   enlarged), which makes every later step scale-free and bounds the cost.
2. *Texture.* ``T = log`` of the local standard deviation (3x3 window) of the resampled image,
   lightly smoothed. Phase-contrast cells are textured (edges, halo, granules); background is flat.
3. *Foreground, calibrated by the points.* A pixel is foreground where ``T`` is at least the
   ``POINT_PERCENTILE``-th percentile of ``T`` at the points, i.e. the threshold is the lowest
   texture that (almost) every clicked cell shows; no global histogram split (Otsu) is needed.
4. *Per-point area.* Each foreground pixel goes to its nearest point (Voronoi cells, by a distance
   transform), counted only within ``FIRST_CAP * s`` of it; the median of ``sqrt(4 a / pi)`` over
   points is a first diameter ``D1``. A second pass counts only within ``SECOND_CAP * D1``
   (cuts thin processes, halos and debris far from the cell body) and gives ``D2``.
5. ``estimate = SIZE_CALIBRATION * D2`` (in input pixels). The factor and the parameters above were
   fitted on tuning fields only (Usiigaci ``train/set1-20``; DeepCell ``train`` split, mask-centroid
   and nuclear-channel points); ``benchmarks/size_estimate.py`` reports every field.

Nothing runs on import.
"""
from __future__ import annotations

import math

import numpy as np

from cks.errors import CksDataError

__all__ = ["equivalent_diameters", "median_diameter", "point_spacing", "estimate_diameter", "scale_for_diameter",
           "SIZE_CALIBRATION"]

#: point spacing (px) the image is resampled to before measuring texture (never enlarged)
WORK_SPACING = 12.0
#: window (px, at the working resolution) of the local standard deviation
TEXTURE_WINDOW = 3
#: Gaussian sigma (px, working resolution) applied to the log texture
TEXTURE_SMOOTH = 0.5
#: foreground threshold: this percentile of the texture at the points
POINT_PERCENTILE = 0.5
#: first pass: count foreground within FIRST_CAP * point spacing of each point
FIRST_CAP = 1.0
#: second pass: count foreground within SECOND_CAP * first-pass diameter of each point
SECOND_CAP = 0.6
#: true / raw median ratio on the tuning fields (see module docstring)
SIZE_CALIBRATION = 0.875


def equivalent_diameters(label: np.ndarray) -> np.ndarray:
    """Equivalent diameter ``sqrt(4 * area / pi)`` of every cell of an instance label image.

    Args:
        label: integer ``[H, W]`` instance ids, 0 = background (ids need not be consecutive).
    Returns:
        float64 ``[K]``, one value per id > 0 present, in increasing id order (empty if no cell).
    Raises:
        CksDataError: not 2-D, negative ids or non-integer values.
    """
    lab = np.asarray(label)
    if lab.ndim != 2:
        raise CksDataError(f"equivalent_diameters: label must be [H, W], got shape {lab.shape}")
    if lab.dtype.kind not in "iub":
        if lab.dtype.kind != "f" or not np.all(np.isfinite(lab)) or np.any(lab != np.round(lab)):
            raise CksDataError(f"equivalent_diameters: label must hold integer ids, got dtype {lab.dtype}")
    flat = lab.ravel()
    if flat.size and flat.min() < 0:
        raise CksDataError("equivalent_diameters: negative ids in the label image; 0 is background, cells are > 0")
    _, area = np.unique(flat[flat > 0], return_counts=True)  # sorted ids, pixel counts
    return np.sqrt(4.0 * area.astype(np.float64) / np.pi)


def median_diameter(label: np.ndarray) -> float:
    """The cell size of an image: median equivalent diameter (px) of its cells; ``nan`` if none."""
    d = equivalent_diameters(label)
    return float(np.median(d)) if d.size else float("nan")


def _points(points, shape) -> np.ndarray:
    from cks.points import validate_points

    if points is None:
        raise CksDataError("estimate_diameter: no points given; it needs one (y, x) point per cell")
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[-1] != 2:
        raise CksDataError(f"estimate_diameter: points must be an [N, 2] array of (y, x), got shape {p.shape}")
    if len(p) < 2:
        raise CksDataError(f"estimate_diameter: {len(p)} point(s); estimating the cell size needs at least 2 "
                           f"(the point spacing sets the scale); give the diameter explicitly instead")
    return validate_points(p, shape, name="estimate_diameter points").astype(np.float64)


def point_spacing(points) -> float:
    """Median distance (px) from each point of ``[N, 2]`` ``(y, x)`` to its nearest other point."""
    from scipy.spatial import cKDTree

    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(p) < 2:
        raise CksDataError(f"point_spacing: needs at least 2 points, got {len(p)}")
    dist, _ = cKDTree(p).query(p, k=2)
    return float(np.median(dist[:, 1]))


def _image(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim == 3:
        if img.shape[0] == 0:
            raise CksDataError(f"estimate_diameter: image has no channel (shape {img.shape})")
        img = img[0]  # the first channel (the phase image, by the project's [C, H, W] convention)
    if img.ndim != 2:
        raise CksDataError(f"estimate_diameter: image must be [H, W] or [C, H, W], got shape {np.shape(image)}")
    if min(img.shape) < 2:
        raise CksDataError(f"estimate_diameter: image of shape {img.shape} is empty or degenerate")
    img = img.astype(np.float64)
    if not np.isfinite(img).all():
        raise CksDataError("estimate_diameter: the image contains NaN or inf; fix or mask those pixels first")
    spread = img.std()
    if not spread > 0:
        raise CksDataError("estimate_diameter: the image is constant; there is nothing to measure cells on")
    return (img - img.mean()) / spread


def _raw_diameter(image, points) -> float:
    """Uncalibrated estimate ``D2`` (input px) of :func:`estimate_diameter` (steps 1-4)."""
    from scipy import ndimage as ndi

    img = _image(image)
    pts = _points(points, img.shape)
    spacing = point_spacing(pts)
    if not spacing > 0:
        raise CksDataError("estimate_diameter: most points coincide (median nearest-neighbour distance 0); "
                           "give one point per cell")
    h, w = img.shape
    f = min(1.0, WORK_SPACING / spacing)
    if f < 1.0:
        out = (max(2, round(h * f)), max(2, round(w * f)))
        img = ndi.zoom(img, (out[0] / h, out[1] / w), order=1, prefilter=False)
        fy, fx = (out[0] - 1) / (h - 1), (out[1] - 1) / (w - 1)  # zoom maps corner to corner
    else:
        fy = fx = 1.0
    f_eff = math.sqrt(fy * fx)
    mean = ndi.uniform_filter(img, TEXTURE_WINDOW)
    sd = np.sqrt(np.clip(ndi.uniform_filter(img * img, TEXTURE_WINDOW) - mean * mean, 0.0, None))
    texture = ndi.gaussian_filter(np.log(sd + 0.05 * np.median(sd) + 1e-9), TEXTURE_SMOOTH)
    # points -> unique working pixels (points closer than a working pixel merge)
    ij = np.stack([np.clip(np.round(pts[:, 0] * fy), 0, img.shape[0] - 1),
                   np.clip(np.round(pts[:, 1] * fx), 0, img.shape[1] - 1)], 1).astype(np.int64)
    flat = np.unique(ij[:, 0] * img.shape[1] + ij[:, 1])
    n = flat.size
    if n < 2:
        raise CksDataError("estimate_diameter: all points fall on one pixel at the working resolution")
    py, px = np.divmod(flat, img.shape[1])
    fg = texture >= np.percentile(texture[py, px], POINT_PERCENTILE)
    # nearest point of every pixel (Voronoi cells) and the distance to it
    free = np.ones(img.shape, bool)
    free[py, px] = False
    dist, (iy, ix) = ndi.distance_transform_edt(free, return_indices=True)
    ids = np.full(img.shape, -1, np.int64)
    ids[py, px] = np.arange(n)
    owner = ids[iy, ix]

    def median_d(cap: float) -> float:
        area = np.bincount(owner[fg & (dist < cap)], minlength=n)
        return float(np.median(np.sqrt(4.0 * area / np.pi)))

    d1 = median_d(FIRST_CAP * spacing * f_eff)
    d2 = median_d(SECOND_CAP * d1)
    return d2 / f_eff


def estimate_diameter(image, points, calibration: float = SIZE_CALIBRATION) -> float:
    """Estimate the median equivalent cell diameter (px) from an image and its point labels, no masks.

    Method and fitted constants: see the module docstring; about 0.1-0.3 s for a 1024 x 1024 image.

    Args:
        image: ``[H, W]`` or ``[C, H, W]`` (first channel used), any dtype, raw intensities
            (phase contrast or another label-free modality).
        points: ``[N, 2]`` float ``(y, x)``, one per cell, inside the image, ``N >= 2``.
        calibration: factor on the raw per-point median (default: fitted on the tuning fields);
            ``1.0`` gives the raw value.
    Returns:
        the estimated diameter in pixels of ``image``.
    Raises:
        CksDataError: fewer than 2 points, points of the wrong shape or outside the image, an empty,
            constant or non-finite image.
    """
    return float(calibration) * _raw_diameter(image, points)


def scale_for_diameter(diameter: float, target: float) -> float:
    """Resize factor ``target / diameter`` that brings cells of ``diameter`` px to ``target`` px."""
    try:
        d, t = float(diameter), float(target)
    except (TypeError, ValueError):
        raise CksDataError(f"scale_for_diameter: diameter and target must be numbers, got {diameter!r}, "
                           f"{target!r}") from None
    if not (math.isfinite(d) and d > 0):
        raise CksDataError(f"scale_for_diameter: cell diameter must be a positive number of px, got {diameter}; "
                           f"the size measurement failed (no cells or points?), give the diameter explicitly")
    if not (math.isfinite(t) and t > 0):
        raise CksDataError(f"scale_for_diameter: target diameter must be a positive number of px, got {target}")
    return t / d

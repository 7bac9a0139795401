"""Classical point baselines: what one gets from points without learning.

* :func:`voronoi_disks` — a disk of radius ``r`` around each point, clipped by the point's Voronoi
  cell (so neighbouring disks never overlap). The only parameter, ``r``, is tuned on a tuning split.
* :func:`seeded_watershed` — a marker-controlled watershed of the smoothed image's gradient
  magnitude, seeded at the points, on a foreground mask (local-contrast threshold), each region
  limited to ``max_radius`` from its seed.
* :func:`geodesic_disks` (ours, issue #9) — the area of a disk of radius ``r`` around each point, but taken
  along the image: the pixels geodesically nearest the point over the cost of
  :func:`cks.losses.geodesic.bright_cost` (bright pixels, the phase-contrast halo, are costly). It is the shape
  the geodesic prior of Eq. 4 (``loss.prior_shape = "geodesic"``) hands the collaborator.

All return an int32 label image (ids 1..n in point order; a point that gets no pixel is absent) and
are vectorised (distance transforms, no Python loop over cells). Scores for AP ranking: these
methods have none, so :func:`constant_scores` gives every instance the same score (AP then follows the
label order; Dice, which needs no ranking, is the fairer comparison — Eq. 15's stated purpose).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import CksDataError


def _seed_image(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    seeds = np.zeros(shape, np.int32)
    if len(pts) == 0:
        return seeds
    iy = np.clip(np.floor(pts[:, 0] + 0.5).astype(int), 0, shape[0] - 1)
    ix = np.clip(np.floor(pts[:, 1] + 0.5).astype(int), 0, shape[1] - 1)
    # later points overwrite earlier ones on the same pixel (rare; they are then merged)
    seeds[iy, ix] = np.arange(1, len(pts) + 1, dtype=np.int32)
    return seeds


def voronoi_disks(points: np.ndarray, shape: tuple[int, int], radius: float) -> np.ndarray:
    """Disk of ``radius`` px around each point, clipped to its Voronoi cell.

    Args:
        points: ``[N, 2]`` (y, x). shape: (H, W). radius: disk radius in px.
    Returns:
        int32 ``[H, W]`` label image.
    """
    if radius <= 0:
        raise CksDataError(f"voronoi_disks: radius must be > 0, got {radius}")
    seeds = _seed_image(points, shape)
    if seeds.max() == 0:
        return seeds
    dist, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    lab = seeds[iy, ix]
    return np.where(dist < radius, lab, 0).astype(np.int32)


def geodesic_disks(image: np.ndarray, points: np.ndarray, radius: float, beta: float = 3.0,
                   stride: int = 2) -> np.ndarray:
    """The ``pi radius^2`` pixels geodesically nearest each point (ours); a pixel two points reach goes to the nearer.

    Distances: :func:`cks.losses.geodesic.geodesic_prior_radius` in a window of ``4 radius`` around each point
    (all windows at once), rescaled per point so that its region has the area of a disk of ``radius``. With
    ``beta = 0`` these are Voronoi disks up to the 8-neighbour metric.

    Args:
        image: ``[H, W]`` or ``[C, H, W]`` (first channel used). points: ``[N, 2]`` (y, x). radius: px.
        beta: cost of brightness (see :func:`cks.losses.geodesic.bright_cost`). stride: see
            :func:`cks.losses.geodesic.geodesic_prior_radius`.
    Returns:
        int32 ``[H, W]`` label image (id k + 1 for point k).
    """
    import torch

    from .losses.geodesic import geodesic_prior_radius
    from .windows import gather_windows, scatter_windows

    if radius <= 0:
        raise CksDataError(f"geodesic_disks: radius must be > 0, got {radius}")
    img = np.asarray(image, np.float32)
    img = img[0] if img.ndim == 3 else img
    pts = torch.as_tensor(np.asarray(points, np.float32).reshape(-1, 2))
    h, w = img.shape
    if len(pts) == 0:
        return np.zeros((h, w), np.int32)
    window = 2 * int(np.ceil(2 * radius)) + 1
    origin = torch.floor(pts + 0.5).long() - window // 2
    batch = torch.zeros(len(pts), dtype=torch.long)
    x = torch.from_numpy(img)[None, None]
    with torch.no_grad():
        near = geodesic_prior_radius(x, batch, origin, pts, window, radius, beta, stride) / radius  # < 1: inside
        best = scatter_windows(-near, batch, origin, (1, h, w), reduce="amax", fill=-np.inf)  # minus the nearest
        mine = (near < 1) & (-near >= gather_windows(best, batch, origin, window, fill=np.inf))
        ids = torch.arange(1, len(pts) + 1, dtype=torch.float32)[:, None, None].expand_as(near)
        lab = scatter_windows(torch.where(mine, ids, torch.zeros_like(ids)), batch, origin, (1, h, w), reduce="amax")
    return lab[0].numpy().astype(np.int32)


def seeded_watershed(image: np.ndarray, points: np.ndarray, max_radius: float = 40.0, smooth: float = 2.0,
                     fg_quantile: float = 0.5, window: int = 31) -> np.ndarray:
    """Marker-controlled watershed seeded at the points.

    Foreground = pixels whose local standard deviation (``window`` px box) is above its
    ``fg_quantile`` quantile (phase-contrast cells are textured, background is flat), plus a 3-px disk
    around each seed, within ``max_radius`` of a seed. Markers: the seeds plus one background marker
    outside the foreground. The elevation is the gradient magnitude of the Gaussian-smoothed image.

    Args:
        image: ``[H, W]`` or ``[C, H, W]`` (first channel used). points: ``[N, 2]``.
    Returns:
        int32 ``[H, W]`` label image.
    """
    from skimage.filters import sobel
    from skimage.segmentation import watershed

    img = np.asarray(image, np.float64)
    if img.ndim == 3:
        img = img[0]
    shape = img.shape
    seeds = _seed_image(points, shape)
    if seeds.max() == 0:
        return seeds
    sm = ndimage.gaussian_filter(img, smooth)
    mean = ndimage.uniform_filter(img, window)
    var = np.clip(ndimage.uniform_filter(img * img, window) - mean * mean, 0, None)
    std = np.sqrt(var)
    fg = std > np.quantile(std, fg_quantile)
    dist, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
    fg |= dist < 3
    fg &= dist < max_radius
    # background marker (label n+1) everywhere outside the (eroded) foreground, so that cell regions stop
    # at gradient ridges instead of flooding the whole mask
    n = int(seeds.max())
    markers = seeds.copy()
    bg = ~ndimage.binary_dilation(fg, iterations=1)
    markers[bg & (seeds == 0)] = n + 1
    lab = watershed(sobel(sm), markers=markers)
    lab[(lab == n + 1) | ~fg] = 0
    return lab.astype(np.int32)


def constant_scores(label: np.ndarray) -> dict[int, float]:
    """Score 1.0 for every instance id of ``label`` (for :func:`cks.metrics.evaluate`)."""
    ids = np.unique(label)
    return {int(i): 1.0 for i in ids[ids > 0]}

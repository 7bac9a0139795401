"""Generated cell images for demos, smoke runs and tests (never for reported results).

Cells are random ellipses that do not overlap (each pixel goes to the ellipse whose normalised
radius is smallest there), drawn as a brighter, textured body with a dark rim, on a noisy
background with a smooth illumination gradient — a crude phase-contrast look. The ground truth
is exact, so a model can be checked end to end on a fresh machine without any download.
"""
from __future__ import annotations

import numpy as np

from ..points import centroids


def synthetic_sample(size: tuple[int, int] = (256, 256), n_cells: int = 20, radius: tuple[float, float] = (9.0, 16.0),
                     seed: int = 0, noise: float = 0.08) -> dict:
    """One generated field of view.

    Args:
        size: (H, W). n_cells: number of cells placed (some may be dropped if fully covered).
        radius: range of the ellipse semi-axes in pixels. seed: RNG seed. noise: pixel noise std.
    Returns:
        sample dict: ``image`` float32 [1, H, W], ``label`` int32 [H, W] (ids 1..n), ``points``
        float32 [n, 2] (mask centroids, (y, x)), ``cell_type`` 0, ``name``.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # centres spread out by rejection (kept simple: this is a generator, not a hot path)
    centers: list[tuple[float, float]] = []
    tries = 0
    min_sep = radius[0] * 1.6
    while len(centers) < n_cells and tries < n_cells * 200:
        tries += 1
        c = (rng.uniform(radius[0], h - radius[0]), rng.uniform(radius[0], w - radius[0]))
        if all((c[0] - a) ** 2 + (c[1] - b) ** 2 > min_sep ** 2 for a, b in centers):
            centers.append(c)
    n = len(centers)
    cy = np.array([c[0] for c in centers], np.float32)[:, None, None]
    cx = np.array([c[1] for c in centers], np.float32)[:, None, None]
    ra = rng.uniform(*radius, size=n).astype(np.float32)[:, None, None]
    rb = rng.uniform(*radius, size=n).astype(np.float32)[:, None, None]
    th = rng.uniform(0, np.pi, size=n).astype(np.float32)[:, None, None]
    dy, dx = yy[None] - cy, xx[None] - cx
    u = (dy * np.cos(th) + dx * np.sin(th)) / ra
    v = (-dy * np.sin(th) + dx * np.cos(th)) / rb
    rho = np.sqrt(u * u + v * v)  # [n, H, W] normalised radius
    best = rho.argmin(0)
    inside = rho.min(0) < 1.0
    label = np.where(inside, best + 1, 0).astype(np.int32)
    # relabel to consecutive ids of the cells that kept pixels
    present = np.unique(label[label > 0])
    lut = np.zeros(n + 1, np.int32)
    lut[present] = np.arange(1, len(present) + 1)
    label = lut[label]
    rmin = np.take_along_axis(rho, best[None], 0)[0]
    body = np.where(inside, 0.35 + 0.25 * np.cos(rmin * 5.0 + rng.uniform(0, 6)), 0.0)
    rim = np.where(inside & (rmin > 0.8), -0.6, 0.0)
    halo = np.where(~inside & (rho.min(0) < 1.25), 0.25, 0.0)  # bright phase halo outside
    illum = 0.2 * (yy / h) + 0.1 * (xx / w)
    img = body + rim + halo + illum + rng.normal(0, noise, size=(h, w))
    ids, pts = centroids(label)
    return {"image": img[None].astype(np.float32), "label": label, "points": pts.astype(np.float32),
            "cell_type": 0, "name": f"synthetic_{seed}"}


def synthetic_dataset(n_images: int = 4, size: tuple[int, int] = (256, 256), n_cells: int = 20, seed: int = 0,
                      **kw) -> list[dict]:
    """``n_images`` samples from :func:`synthetic_sample` with seeds ``seed, seed+1, ...``."""
    return [synthetic_sample(size, n_cells, seed=seed + i, **kw) for i in range(n_images)]

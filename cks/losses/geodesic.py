"""Per-cell targets for L_S from a foreground map: a geodesic partition of the foreground (ours, issue #9).

The paper's L_S (Eq. 8) pulls every instance mask ``m_i`` towards the image-level foreground ``M_c`` inside its
window and relies on the overlap term ``m_i sum_j m_j`` to split touching cells. Where two masks claim the same
foreground pixel the linear loss is balanced (gradient ``-1 + 2 m_j`` on ``m_i``), so which cell gets a pixel is
left to the principal's features, and on the Usiigaci fields the masks end up near-convex blobs cut at the
Voronoi line even when ``M_c`` is the TRUE foreground (``loss.foreground_from=masks``, 700 steps: matched IoU
0.49, solidity 0.93 against 0.77 true; ``results/usiigaci_points_v2/tuning_diagnostics.json``).

Here each foreground pixel is given to the point it can be reached from along the foreground: a flood fill from
every cell location through ``M_c >= 0.5`` (8-connected, all fronts at the same speed), at most
``reach`` px. The TRUE foreground partitioned this way from the mask centroids gives back the annotated cells on
the Usiigaci tuning fields almost exactly (AP50 0.97), so this target carries the shape that the foreground has.
The flood fill is ``reach`` rounds of a 3x3 max-pool over a ``[B, H, W]`` label canvas: no loop over cells.

Measured (Usiigaci tuning split, seed 0; ``results/usiigaci_points_v2/tuning_diagnostics.json``): no clear gain, so
it is not the base. From points, 700 steps: tuning AP50 0.155 (base of the same length 0.157, session 6). With the
true foreground, 2,400 steps: 0.597 against 0.575 for the paper's L_S, but lower at 600 / 1,200 steps (0.218 /
0.375 vs 0.348 / 0.444). The paper's L_S already turns a right foreground into cells; what CKS lacks on these
images is a right ``M_c`` (``benchmarks/foreground_partition.py``).

The same idea gives the prior of Eq. 4 a shape (ours, ``loss.prior_shape = "geodesic"``): its ``r`` becomes the
length of the cheapest path from the point, a path through a pixel brighter than the image's mean costing more
(:func:`bright_cost`: the bright halo of phase contrast rings each darker cell), rescaled per cell so that the region
within half a cell diameter keeps a disk's area (:func:`geodesic_prior_radius`, built on :func:`geodesic_distance`,
relaxation rounds over all windows at once). How much of a cell's shape such a region holds, with no learning, is
measured by ``benchmarks/prior_shape.py`` (``results/usiigaci_points_v2/prior_shape_tuning.json``).

Shapes: ``fg [B, H, W]`` bool, ``points [K, 2]`` float (y, x), ``batch [K]`` long; labels are ``k + 1`` for
window k, 0 for no cell; windows ``[K, S, S]``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..windows import gather_windows, window_index


@torch.no_grad()
def geodesic_partition(fg: Tensor, points: Tensor, batch: Tensor, reach: int) -> Tensor:
    """Flood-fill label image: every foreground pixel gets the id (k + 1) of the nearest point along the foreground.

    Args:
        fg: ``[B, H, W]`` bool foreground. points: ``[K, 2]`` float (y, x) cell locations (pixel-centre
            convention; rounded, points off the image are dropped). batch: ``[K]`` image of each point.
        reach: number of flood rounds = the largest geodesic (chessboard) distance a pixel may have from its point.
    Returns:
        ``[B, H, W]`` long: k + 1 for the pixels reached from point k (its own pixel always, even where ``fg`` is
        False), 0 elsewhere. Where two fronts reach a pixel in the same round, the larger id wins.
    """
    b, h, w = fg.shape
    lab = torch.zeros((b, h, w), dtype=torch.float32, device=fg.device)
    k = points.shape[0]
    if k == 0:
        return lab.long()
    py = torch.floor(points[:, 0].float() + 0.5).long()
    px = torch.floor(points[:, 1].float() + 0.5).long()
    ok = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    ids = torch.arange(1, k + 1, device=fg.device, dtype=torch.float32)
    lab[batch[ok], py[ok], px[ok]] = ids[ok]
    open_ = fg.clone()
    for _ in range(int(reach)):
        grown = F.max_pool2d(lab[:, None], 3, stride=1, padding=1)[:, 0]
        new = open_ & (lab == 0) & (grown > 0)
        if not bool(new.any()):
            break
        lab = torch.where(new, grown, lab)
    return lab.long()


def owner_windows(labels: Tensor, batch: Tensor, origin: Tensor, size: int) -> Tensor:
    """``[K, S, S]`` float: 0 where window k's pixel belongs to ANOTHER cell in ``labels``, 1 elsewhere.

    ``labels`` is :func:`geodesic_partition`'s output. Pixels that no point reaches (background, or foreground
    beyond ``reach``) keep 1, so there L_S is the paper's (``M_c`` as it is): only the contested foreground is
    changed. (Zeroing the unreached pixels too starves the masks early in training, while ``M_c`` is below 0.5
    inside most cells: Usiigaci tuning AP50 0.015 at step 525 against 0.125 for the base.)
    """
    k = batch.shape[0]
    got = gather_windows(labels.float(), batch, origin, size, fill=0.0)
    ids = torch.arange(1, k + 1, device=labels.device, dtype=torch.float32)[:, None, None]
    return ((got == 0) | (got == ids)).to(torch.float32)


#: per-pixel cost of window pixels off the image (no shortest path crosses them)
OFF_IMAGE_COST = 1e4
#: the 8 neighbour offsets (dy, dx) of the geodesic distance
_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@torch.no_grad()
def geodesic_distance(cost: Tensor, seeds: Tensor | None, iterations: int, start: Tensor | None = None) -> Tensor:
    """Shortest-path length from one seed pixel per window over a per-pixel cost (8-neighbour, Bellman-Ford).

    A step between neighbours ``p, q`` costs ``|q - p| (c_p + c_q) / 2`` (1 or sqrt 2 where ``c = 1``, so a flat cost
    gives the chamfer approximation of the Euclidean distance). ``iterations`` relaxation rounds over all windows at
    once (no loop over windows); a pixel whose shortest path has more steps than that keeps a longer path or
    ``inf``. Stops early once nothing changes.

    Args:
        cost: ``[K, S, S]`` per-pixel cost, > 0. seeds: ``[K, 2]`` long (y, x) inside the window (distance 0 there),
            or None with ``start``: ``[K, S, S]`` initial distances (``inf`` where a pixel is no source), e.g. the
            sub-pixel distances of a point to the pixels around it.
        iterations: relaxation rounds (>= the number of steps of the longest path that matters).
    Returns:
        ``[K, S, S]`` float distances (0 at each seed, or ``start`` at least where it is smaller).
    """
    k, s, _ = cost.shape
    if start is not None:
        dist = start.to(cost.dtype).clone()
    else:
        dist = torch.full_like(cost, float("inf"))
        if k:
            dist[torch.arange(k, device=cost.device), seeds[:, 0], seeds[:, 1]] = 0.0
    if k == 0:
        return dist
    padded_cost = F.pad(cost[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    steps = torch.stack([math.hypot(dy, dx) * 0.5 * (cost + padded_cost[:, 1 + dy:1 + dy + s, 1 + dx:1 + dx + s])
                         for dy, dx in _OFFSETS])  # [8, K, S, S]: from neighbour p + (dy, dx) to p
    for i in range(int(iterations)):
        padded = F.pad(dist[:, None], (1, 1, 1, 1), value=float("inf"))[:, 0]
        via = torch.stack([padded[:, 1 + dy:1 + dy + s, 1 + dx:1 + dx + s] for dy, dx in _OFFSETS]) + steps
        new = torch.minimum(dist, via.amin(0))
        if i % 8 == 7 and torch.equal(new, dist):
            break
        dist = new
    return dist


def bright_cost(image: Tensor, beta: float, smooth: float = 1.0) -> Tensor:
    """Per-pixel cost ``1 + beta * max(0, z)`` of ``[B, C, H, W]`` images (first channel), ``z`` = the image
    standardised per image and smoothed by a Gaussian of ``smooth`` px: paths through pixels brighter than the
    image's mean cost more. In phase contrast the cells are darker than the bright halo around them. -> ``[B, H, W]``.
    """
    x = image[:, 0].float()
    z = (x - x.mean(dim=(-2, -1), keepdim=True)) / (x.std(dim=(-2, -1), keepdim=True) + 1e-6)
    if smooth > 0:
        r = max(1, int(math.ceil(3 * smooth)))
        t = torch.arange(-r, r + 1, dtype=z.dtype, device=z.device)
        g = torch.exp(-0.5 * (t / smooth) ** 2)
        g = g / g.sum()
        z = F.conv2d(F.pad(z[:, None], (r, r, 0, 0), mode="replicate"), g.view(1, 1, 1, -1))
        z = F.conv2d(F.pad(z, (0, 0, r, r), mode="replicate"), g.view(1, 1, -1, 1))[:, 0]
    return 1.0 + float(beta) * z.clamp(min=0.0)


@torch.no_grad()
def geodesic_prior_radius(image: Tensor, batch: Tensor, origin: Tensor, points: Tensor, window: int,
                          radius: float, beta: float, stride: int = 2) -> Tensor:
    """Per-window distance ``r`` for the prior of Eq. 4 that follows the image (ours, ``loss.prior_shape="geodesic"``).

    The geodesic distance from each window's cell location over :func:`bright_cost`, rescaled per window so that
    the pixels within ``radius`` cover as many image pixels as a disk of that radius around the point does (``pi
    radius^2`` px, fewer where the disk leaves the image): the prior keeps its width in area and takes the shape of
    the dark region around the point, not of a disk. ``beta = 0`` gives a disk back, up to the 8-neighbour metric
    (within 8 % of the Euclidean one) and the coarse grid.

    Args:
        image: ``[B, C, H, W]``. batch ``[K]``, origin ``[K, 2]`` (window top-left), points ``[K, 2]`` float (y, x).
        window: S. radius: px (half the target cell diameter). beta: see :func:`bright_cost`.
        stride: the distances are computed on a grid this many times coarser (the cost averaged over each block,
            S / stride relaxation rounds) and resized back: the cost of a 96-px window at stride 2 is about an
            eighth of stride 1's.
    Returns:
        ``[K, S, S]`` float distances in px-equivalents; ``inf`` off the image.
    """
    k = batch.shape[0]
    if k == 0:
        return torch.zeros((0, window, window), device=image.device)
    _, valid = window_index(batch, origin, window, tuple(image.shape[-2:]))  # [K, S, S]: on the image
    on = valid.to(torch.float32)
    cost = gather_windows(bright_cost(image, beta), batch, origin, window, fill=0.0)
    local = points.float() - origin.float()  # cell location in window coordinates
    stride = max(1, int(stride))
    if stride > 1:  # each grid cell: the mean cost of its on-image pixels; a cell wholly off the image is a wall
        share = F.avg_pool2d(on[:, None], stride, ceil_mode=True)[:, 0]
        cost = F.avg_pool2d((cost * on)[:, None], stride, ceil_mode=True)[:, 0] / share.clamp(min=1e-6)
        cost = torch.where(share > 0, cost, torch.full_like(cost, OFF_IMAGE_COST))
    else:
        cost = torch.where(valid, cost, torch.full_like(cost, OFF_IMAGE_COST))
    s = cost.shape[-1]
    # sources: the 3 x 3 grid cells around the one holding the point, each at its centre's distance from the point
    # (grid cell j's centre is at stride * j + (stride - 1) / 2 in window px) times the mean cost of the two cells,
    # so that the field is centred on the point and a bright cell next to it is not crossed for free
    seed = torch.floor((local + 0.5) / stride).long().clamp(0, s - 1)
    ks = torch.arange(k, device=cost.device)
    c_seed = cost[ks, seed[:, 0], seed[:, 1]]
    start = torch.full_like(cost, float("inf"))
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            cell = (seed + torch.tensor([dy, dx], device=seed.device)).clamp(0, s - 1)
            centre = cell.float() * stride + (stride - 1) / 2.0
            step = (centre - local).norm(dim=1) / stride * 0.5 * (c_seed + cost[ks, cell[:, 0], cell[:, 1]])
            start[ks, cell[:, 0], cell[:, 1]] = torch.minimum(start[ks, cell[:, 0], cell[:, 1]], step)
    dist = geodesic_distance(cost, None, s, start=start) * stride
    if stride > 1:  # back to window px, from the grid cells on the image only (a wall's distance must not leak in)
        w = (share > 0).to(dist.dtype)[:, None]
        up = F.interpolate(torch.where(w > 0, dist[:, None], torch.zeros_like(w)), scale_factor=stride,
                           mode="bilinear", align_corners=False)
        dist = (up / F.interpolate(w, scale_factor=stride, mode="bilinear", align_corners=False).clamp(min=1e-6))
        dist = dist[:, 0, :window, :window]
    dist = torch.where(valid, dist, torch.full_like(dist, float("inf")))
    # the area to keep: the disk's pixels that lie on the image (a cell at the image's edge keeps its clipped disk)
    ar = torch.arange(window, device=dist.device, dtype=torch.float32)
    inside = ((ar[None, :, None] - local[:, 0, None, None]) ** 2 + (ar[None, None, :] - local[:, 1, None, None]) ** 2
              < float(radius) ** 2) & valid
    n = inside.reshape(k, -1).sum(1).clamp(min=1)
    thr = dist.reshape(k, -1).sort(dim=1).values.gather(1, (n - 1)[:, None])[:, 0]  # the n-th nearest pixel's
    thr = torch.where(torch.isfinite(thr), thr, torch.full_like(thr, float("inf"))).clamp(min=1e-6)
    return dist * (float(radius) / thr)[:, None, None]


__all__ = ["geodesic_partition", "owner_windows", "geodesic_distance", "bright_cost", "geodesic_prior_radius"]

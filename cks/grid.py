"""The detection grid (Sec. III-A): grid-cell centres and the targets of Eq. 3, shared by head and loss.

A stride-``s`` map cell ``u`` covers pixels ``[s u, s (u + 1))`` and its centre is ``s u + (s - 1) / 2``
(pixel centres at integer coordinates). Both the detection head's decoding
(:mod:`cks.models.detector`) and the detection loss (:mod:`cks.losses.detection`) build on this module,
which depends on nothing else in cks.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def cell_centers(n: int, stride: int, device=None) -> Tensor:
    """Pixel coordinate of the centres of ``n`` grid cells at ``stride``: ``s*u + (s-1)/2``."""
    return torch.arange(n, device=device, dtype=torch.float32) * stride + (stride - 1) / 2


def detection_targets(points: Tensor, valid: Tensor, stride: int, map_hw: tuple[int, int],
                      radius: float, own_cell: bool = True) -> tuple[Tensor, Tensor]:
    """Score and offset targets ``D^GT``, ``D_s^GT`` of Eq. 3 at one stride, with label smoothing.

    A grid cell is positive if its centre lies closer than ``radius`` pixels to a point (the
    paper's label smoothing; radius 8 px as the author's code) or, with ``own_cell``, if it
    contains the point (so every point has a positive cell at every stride, also where the
    radius is smaller than the cell). A positive cell regresses to its nearest point.

    Args:
        points: ``[B, N, 2]`` (y, x) pixels. valid: ``[B, N]`` bool. map_hw: (h, w) of the map.
    Returns:
        ``target [B, 1, h, w]`` float 0/1 and ``offset [B, 2, h, w]`` (zeros where negative),
        offsets in units of the stride.
    """
    b, n = valid.shape
    h, w = map_hw
    dev = points.device
    target = torch.zeros(b * h * w, device=dev)
    offset = torch.zeros(b * h * w, 2, device=dev)
    if n == 0 or not bool(valid.any()):
        return target.reshape(b, 1, h, w), offset.reshape(b, h, w, 2).permute(0, 3, 1, 2)
    bi, pi = torch.nonzero(valid, as_tuple=True)
    p = points[bi, pi].float()  # [P, 2]
    own = torch.floor((p + 0.5) / stride).long()  # [P, 2]
    r = int(math.ceil(radius / stride)) + 1
    ar = torch.arange(-r, r + 1, device=dev)
    cy = own[:, 0, None, None] + ar[None, :, None]  # [P, 2r+1, 1]
    cx = own[:, 1, None, None] + ar[None, None, :]  # [P, 1, 2r+1]
    cy, cx = torch.broadcast_tensors(cy, cx)
    dy = p[:, 0, None, None] - (cy * stride + (stride - 1) / 2)
    dx = p[:, 1, None, None] - (cx * stride + (stride - 1) / 2)
    dist = torch.sqrt(dy * dy + dx * dx)
    pos = dist < radius
    if own_cell:
        pos = pos | ((cy == own[:, 0, None, None]) & (cx == own[:, 1, None, None]))
    pos = pos & (cy >= 0) & (cy < h) & (cx >= 0) & (cx < w)
    k_p, k_y, k_x = torch.nonzero(pos, as_tuple=True)
    flat = bi[k_p] * (h * w) + cy[k_p, k_y, k_x] * w + cx[k_p, k_y, k_x]
    d = dist[k_p, k_y, k_x]
    # each cell regresses to its nearest point (ties: lowest point index)
    best = torch.full((b * h * w,), float("inf"), device=dev).scatter_reduce(0, flat, d, "amin")
    is_best = d <= best[flat]
    cand = torch.where(is_best, k_p, torch.full_like(k_p, p.shape[0]))
    winner = torch.full((b * h * w,), p.shape[0], device=dev, dtype=torch.long).scatter_reduce(0, flat, cand, "amin")
    cells = torch.unique(flat)
    wp = winner[cells]
    target[cells] = 1.0
    cyc = (cells % (h * w)) // w
    cxc = cells % w
    offset[cells, 0] = (p[wp, 0] - (cyc * stride + (stride - 1) / 2)) / stride
    offset[cells, 1] = (p[wp, 1] - (cxc * stride + (stride - 1) / 2)) / stride
    return target.reshape(b, 1, h, w), offset.reshape(b, h, w, 2).permute(0, 3, 1, 2)


__all__ = ["cell_centers", "detection_targets"]

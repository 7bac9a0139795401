"""Vectorised operations on per-cell windows (no Python loop over cells).

The segmentation head (Sec. III-A) predicts, for every cell i, logits ``l(m_i)`` inside a fixed
S x S window (S = 96 by default). ``m_i`` is taken to be 0 outside its window. A set of K windows
over a batch of B images of size H x W is described by

* ``values``: ``[K, S, S]`` per-window values (logits or probabilities),
* ``batch``:  ``[K]`` long, the image each window belongs to,
* ``origin``: ``[K, 2]`` long, absolute pixel (y0, x0) of the window's top-left pixel; window
  pixel (a, b) covers image pixel (y0 + a, x0 + b). Windows may hang off any edge.

Image-level maps built from windows (``M_p`` of Eq. 4, ``B_p`` of Eq. 9, the overlap sum of
Eq. 8, label images) are computed by scatter operations on a flat ``[B*H*W]`` canvas; window
pixels that fall off the image are masked out, never wrapped.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def window_index(batch: Tensor, origin: Tensor, size: int, hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Flat canvas index and in-image mask of every window pixel.

    Args:
        batch: ``[K]`` image index per window. origin: ``[K, 2]`` top-left (y0, x0).
        size: window side S. hw: image size (H, W).
    Returns:
        ``index [K, S, S]`` long into a ``[B*H*W]`` canvas (0 where off-image) and
        ``valid [K, S, S]`` bool (True where the pixel lies inside the image).
    """
    h, w = hw
    ar = torch.arange(size, device=origin.device)
    yy = origin[:, 0, None] + ar  # [K, S]
    xx = origin[:, 1, None] + ar  # [K, S]
    vy = (yy >= 0) & (yy < h)
    vx = (xx >= 0) & (xx < w)
    valid = vy[:, :, None] & vx[:, None, :]
    flat = batch[:, None, None] * (h * w) + yy.clamp(0, h - 1)[:, :, None] * w + xx.clamp(0, w - 1)[:, None, :]
    return flat, valid


def gather_windows(maps: Tensor, batch: Tensor, origin: Tensor, size: int, fill: float = 0.0) -> Tensor:
    """Read an image-level map at every window pixel.

    Args:
        maps: ``[B, H, W]`` (e.g. the collaborator's ``M_c``). batch, origin: see module doc.
    Returns:
        ``[K, S, S]``; off-image pixels read ``fill``. Differentiable w.r.t. ``maps``.
    """
    b, h, w = maps.shape
    index, valid = window_index(batch, origin, size, (h, w))
    out = maps.reshape(-1)[index]
    return torch.where(valid, out, torch.full_like(out, fill))


def scatter_windows(values: Tensor, batch: Tensor, origin: Tensor, shape: tuple[int, int, int],
                    reduce: str = "sum", fill: float = 0.0) -> Tensor:
    """Combine window values into image-level maps.

    Args:
        values: ``[K, S, S]``. shape: (B, H, W) of the output.
        reduce: ``"sum"`` (differentiable; the Σ_j m_j of Eq. 8 and Σ_i φ(m_i) of Eq. 9) or
            ``"amax"`` (the max over instances of Eq. 4). Pixels covered by no window get ``fill``.
    Returns:
        ``[B, H, W]``. Off-image window pixels are dropped.
    """
    b, h, w = shape
    size = values.shape[-1]
    index, valid = window_index(batch, origin, size, (h, w))
    idx = index[valid]
    src = values[valid]
    if reduce == "sum":
        canvas = torch.full((b * h * w,), fill, dtype=values.dtype, device=values.device)
        canvas = canvas.index_add(0, idx, src)
    elif reduce == "amax":
        canvas = torch.full((b * h * w,), float("-inf"), dtype=values.dtype, device=values.device)
        canvas = canvas.scatter_reduce(0, idx, src, reduce="amax", include_self=True)
        canvas = torch.where(torch.isinf(canvas) & (canvas < 0), torch.full_like(canvas, fill), canvas)
    else:
        raise ValueError(f"reduce must be 'sum' or 'amax', got {reduce!r}")
    return canvas.reshape(b, h, w)


@torch.no_grad()
def paste_labels(logits: Tensor, scores: Tensor, batch: Tensor, origin: Tensor, shape: tuple[int, int, int],
                 score_threshold: float = 0.5, mask_threshold: float = 0.5, min_area: int = 0
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """Paste thresholded window masks into full-size label images; the highest score wins overlaps.

    Args:
        logits: ``[K, S, S]`` window logits. scores: ``[K]`` detection scores.
        shape: (B, H, W). score_threshold: windows with score below it are dropped.
        mask_threshold: a pixel belongs to the cell where ``sigmoid(logit) >= mask_threshold``.
        min_area: cells with fewer visible pixels after pasting are removed.
    Returns:
        ``labels [B, H, W]`` int32 (0 = background), ``label_score [K]`` and ``label_of [K]``
        (the label id given to window k in its image, 0 if it was dropped or fully covered).
        Within an image, labels are numbered 1.. in descending score order.
    """
    b, h, w = shape
    k = logits.shape[0]
    device = logits.device
    labels = torch.zeros(b * h * w, dtype=torch.int64, device=device)
    label_of = torch.zeros(k, dtype=torch.int64, device=device)
    if k == 0:
        return labels.reshape(b, h, w).int(), scores, label_of
    keep = scores >= score_threshold
    # rank windows by (image, score desc); key: larger = better, unique per window
    order = torch.argsort(scores, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(k, device=device)
    key = (k - rank)  # in 1..K, highest score -> K
    size = logits.shape[-1]
    # only the pixels that are on: (window, row, col) of every mask pixel of a kept window
    on = (logits >= _logit(mask_threshold)) & keep[:, None, None]
    kk, aa, cc = torch.nonzero(on, as_tuple=True)
    yy = origin[kk, 0] + aa
    xx = origin[kk, 1] + cc
    inimg = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
    kk, yy, xx = kk[inimg], yy[inimg], xx[inimg]
    idx = batch[kk] * (h * w) + yy * w + xx
    src = key[kk]
    win = torch.zeros(b * h * w, dtype=torch.int64, device=device).scatter_reduce(0, idx, src, "amax")
    # map winning keys back to windows, count visible pixels per window
    fg = win > 0
    winner = k - win[fg]  # rank of the window owning each pixel
    area_by_rank = torch.bincount(winner, minlength=k)
    area = area_by_rank[rank]  # per window
    alive = keep & (area > max(min_area - 1, 0)) & (area > 0)
    # number labels per image in descending score order
    alive_sorted = alive[order]
    b_sorted = batch[order]
    onehot = torch.zeros(b, k, dtype=torch.int64, device=device)
    onehot[b_sorted[alive_sorted], torch.arange(k, device=device)[alive_sorted]] = 1
    per_image_rank = onehot.cumsum(1)[b_sorted, torch.arange(k, device=device)]  # [K] in sorted order
    lab_sorted = torch.where(alive_sorted, per_image_rank, torch.zeros_like(per_image_rank))
    label_of[order] = lab_sorted
    pix_label = label_of[order][winner]
    labels[fg] = pix_label
    return labels.reshape(b, h, w).int(), scores, label_of


#: window pixels resampled together by :func:`native_windows` (bounds its memory: ~13 bytes each)
RESAMPLE_PIXELS = 2 ** 22


def native_windows(probs: torch.Tensor, origin: torch.Tensor, factor: tuple[float, float], mask_threshold: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize per-cell window probabilities to the input's resolution and threshold them there.

    Model pixel ``(y, x)`` is native pixel ``((y + 0.5) * fy - 0.5, (x + 0.5) * fx - 0.5)`` (pixel centres, as
    :func:`torch.nn.functional.interpolate` with ``align_corners=False``). Native pixel Y reads the window's
    bilinear interpolation at window coordinate ``(Y + 0.5) / fy - y0 - 0.5``, with 0 outside the window (``m_i``
    is 0 there), exactly what resizing a model-resolution map that holds the window and zeros elsewhere would
    give. The interpolation reaches half a model pixel beyond the window's edge, so the native window
    ``[floor(y0 * fy) - m, floor(y0 * fy) - m + Sn)`` has a margin ``m = ceil(max(fy, fx) / 2) + 1``.

    Args:
        probs: ``[K, S, S]`` mask probabilities (any float dtype). origin: ``[K, 2]`` long, model resolution.
        factor: ``(fy, fx)`` = native size / model size. mask_threshold: in (0, 1).
    Returns:
        ``(on [K, Sn, Sn] uint8, origin [K, 2] long)`` at native resolution, ``Sn = ceil(S * max(fy, fx)) + 2m``.
        Loops over chunks of windows (memory), never over cells one by one.
    """
    k, s = probs.shape[0], probs.shape[-1]
    fy, fx = float(factor[0]), float(factor[1])
    margin = int(math.ceil(max(fy, fx) / 2)) + 1
    sn = int(math.ceil(s * max(fy, fx))) + 2 * margin
    f = torch.tensor([fy, fx], dtype=torch.float64)
    nat_origin = torch.floor(origin.double() * f).long() - margin
    out = torch.zeros(k, sn, sn, dtype=torch.uint8)
    j = torch.arange(sn, dtype=torch.float64)
    chunk = max(1, RESAMPLE_PIXELS // (sn * sn))
    for a in range(0, k, chunk):  # chunks of windows, for memory
        o, no = origin[a:a + chunk].double(), nat_origin[a:a + chunk].double()
        # window coordinate (pixel centres at 0..S-1) of each native row / column, normalised for grid_sample
        uy = (no[:, 0, None] + j + 0.5) / fy - o[:, 0, None] - 0.5  # [k, Sn]
        ux = (no[:, 1, None] + j + 0.5) / fx - o[:, 1, None] - 0.5
        gy, gx = ((2 * uy + 1) / s - 1).float(), ((2 * ux + 1) / s - 1).float()
        grid = torch.stack([gx[:, None, :].expand(-1, sn, -1), gy[:, :, None].expand(-1, -1, sn)], dim=-1)
        v = F.grid_sample(probs[a:a + chunk, None].float(), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False)[:, 0]
        out[a:a + chunk] = (v >= mask_threshold).to(torch.uint8)
    return out, nat_origin


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return float(torch.logit(torch.tensor(p)))

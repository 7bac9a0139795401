"""Multi-scale point detection head, its targets, decoding and point-distance NMS (Sec. III-A).

The head outputs, at every stride s of a configurable list (paper: 4, 8, 16, 32; author: 4, 8,
16 — diff #1), score logits ``D`` ``[B, 1, H/s, W/s]`` and offsets ``D_s`` ``[B, 2, H/s, W/s]``
(the (y, x) offset of the cell location from the grid-cell centre, in units of s). One weight set
is shared over all strides.

Geometry (pixel-centre convention, pixel (i, j) is centred at (i, j)): grid cell u at stride s
covers pixels s*u .. s*u+s-1, so its centre is ``s*u + (s-1)/2`` and the cell containing a
point p is ``floor((p + 0.5) / s)``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DetectorConfig
from .backbone import conv_norm_stack


class DetectionHead(nn.Module):
    """``n_layers`` x [3x3 conv (no bias) -> GroupNorm(C groups) -> ReLU], then 1x1 convs to the
    score logit and the 2 offsets; applied with the same weights at every stride.

    Forward: ``{s: [B, C_in, h_s, w_s]}`` -> ``({s: logits [B,1,h_s,w_s]}, {s: offsets [B,2,h_s,w_s]})``.
    """

    def __init__(self, in_channels: int, cfg: DetectorConfig):
        super().__init__()
        layers = conv_norm_stack(in_channels, cfg.channels, cfg.n_layers)
        c = cfg.channels if cfg.n_layers else in_channels
        self.trunk = nn.Sequential(*layers)
        self.score = nn.Conv2d(c, 1, 1)
        self.offset = nn.Conv2d(c, 2, 1)
        self.strides = tuple(cfg.strides)
        nn.init.constant_(self.score.bias, -math.log(99.0))  # prior p = 0.01 (focal-loss practice)

    def forward(self, feats: dict[int, Tensor]) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
        logits, offsets = {}, {}
        for s in self.strides:
            h = self.trunk(feats[s])
            logits[s] = self.score(h)
            offsets[s] = self.offset(h)
        return logits, offsets


def decode(logits: dict[int, Tensor], offsets: dict[int, Tensor], image_hw: tuple[int, int],
           min_score: float = 0.2, nms_radius: float = 8.0, max_output: int = 4096
           ) -> list[tuple[Tensor, Tensor]]:
    """Detections per image: location = cell centre + s * offset, over all strides, then NMS.

    Locations decoded outside the (unpadded) image are dropped.
    Returns a list over the batch of ``(points [n, 2] (y, x), scores [n])`` sorted by score,
    ``n <= max_output``.
    """
    h_img, w_img = image_hw
    batch = next(iter(logits.values())).shape[0]
    per_img: list[list[Tensor]] = [[] for _ in range(batch)]
    per_sc: list[list[Tensor]] = [[] for _ in range(batch)]
    for s, lg in logits.items():
        sc = torch.sigmoid(lg[:, 0])  # [B, h, w]
        bi, u, v = torch.nonzero(sc >= min_score, as_tuple=True)
        off = offsets[s][bi, :, u, v]  # [n, 2]
        loc = torch.stack([u * s + (s - 1) / 2, v * s + (s - 1) / 2], 1).float() + off * s
        ok = (loc[:, 0] >= -0.5) & (loc[:, 0] < h_img - 0.5) & (loc[:, 1] >= -0.5) & (loc[:, 1] < w_img - 0.5)
        for b in range(batch):  # loop over images, not cells
            m = ok & (bi == b)
            per_img[b].append(loc[m])
            per_sc[b].append(sc[bi[m], u[m], v[m]])
    out = []
    for b in range(batch):
        pts = torch.cat(per_img[b]) if per_img[b] else torch.zeros(0, 2)
        scs = torch.cat(per_sc[b]) if per_sc[b] else torch.zeros(0)
        keep = nms_points(pts, scs, nms_radius)[:max_output]
        out.append((pts[keep], scs[keep]))
    return out


def nms_points(points: Tensor, scores: Tensor, radius: float) -> Tensor:
    """Greedy non-max suppression by point distance, vectorised.

    A detection is suppressed if a *kept* detection of higher score lies closer than ``radius``
    pixels — exactly the greedy rule. Neighbour pairs are found by bucketing the points on a grid
    of cell size ``radius`` (searchsorted over 3x3 buckets); the greedy result is the unique fixed
    point of ``keep_i = not any(keep_j for higher-ranked neighbours j)``, reached by Jacobi
    iteration in as many rounds as the longest suppression chain (a few in practice).

    Args:
        points: ``[M, 2]``. scores: ``[M]``.
    Returns:
        indices into ``points`` of the kept detections, sorted by descending score.
    """
    m = points.shape[0]
    if m == 0:
        return torch.zeros(0, dtype=torch.long, device=points.device)
    order = torch.argsort(scores, descending=True, stable=True)
    p = points[order]
    cell = torch.floor(p / radius).long()
    cell = cell - cell.min(0).values + 1
    ncol = int(cell[:, 1].max()) + 2
    lin = cell[:, 0] * ncol + cell[:, 1]
    s_lin, perm = torch.sort(lin, stable=True)
    src_list, dst_list = [], []
    for dy in (-1, 0, 1):  # 9 neighbouring buckets (constant loop, not over cells)
        for dx in (-1, 0, 1):
            tgt = lin + dy * ncol + dx
            lo = torch.searchsorted(s_lin, tgt, right=False)
            hi = torch.searchsorted(s_lin, tgt, right=True)
            cnt = hi - lo
            width = int(cnt.max())
            if width == 0:
                continue
            ar = torch.arange(width, device=p.device)
            ok = ar[None, :] < cnt[:, None]
            i = torch.arange(m, device=p.device)[:, None].expand(-1, width)[ok]
            j = perm[(lo[:, None] + ar[None, :]).clamp(max=m - 1)][ok]
            src_list.append(i)
            dst_list.append(j)
    i = torch.cat(src_list)
    j = torch.cat(dst_list)
    sel = (j < i) & ((p[i] - p[j]).pow(2).sum(1) < radius * radius)
    i, j = i[sel], j[sel]  # j (higher ranked) can suppress i
    keep = torch.ones(m, dtype=torch.bool, device=p.device)
    for _ in range(m):
        sup = torch.zeros(m, dtype=torch.bool, device=p.device)
        sup[i[keep[j]]] = True
        new = ~sup
        if torch.equal(new, keep):
            break
        keep = new
    return order[keep]


def match_predictions(gt: Tensor, pred: Tensor, pred_scores: Tensor, max_dist: float) -> Tensor:
    """Training locations of the author's code (diff #5): replace each GT point by the
    highest-scoring prediction whose nearest GT it is, if within ``max_dist`` px.

    Args: gt ``[N, 2]``, pred ``[M, 2]``, pred_scores ``[M]``. Returns ``[N, 2]`` (no gradient).
    """
    if gt.shape[0] == 0 or pred.shape[0] == 0:
        return gt.clone()
    d = torch.cdist(pred.float(), gt.float())  # [M, N] (M, N are per-image detection counts)
    dmin, nearest = d.min(1)
    ok = dmin < max_dist
    best = torch.full((gt.shape[0],), -1.0, device=gt.device)
    best = best.scatter_reduce(0, nearest[ok], pred_scores[ok].float(), "amax")
    chosen = ok & (pred_scores.float() >= best[nearest]) & (best[nearest] >= 0)
    out = gt.clone().float()
    out[nearest[chosen]] = pred[chosen].float()
    return out.detach()

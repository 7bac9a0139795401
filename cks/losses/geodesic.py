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

Shapes: ``fg [B, H, W]`` bool, ``points [K, 2]`` float (y, x), ``batch [K]`` long; labels are ``k + 1`` for
window k, 0 for no cell.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..windows import gather_windows


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


__all__ = ["geodesic_partition", "owner_windows"]

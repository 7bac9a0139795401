"""Detection loss L_det (Eq. 3): focal binary cross-entropy on D + L2 (or Huber) on D_s.

    L_det = sum_s L_fce(D, D^GT) + || D_s - D_s^GT ||                                   (Eq. 3)

The paper does not give the normalisation; as in the author's code the focal term is summed over
the grid cells of all strides and divided by the total number of cells, with gamma = 2 and no
alpha (diff #3), and the offset term is summed over positive cells and divided by their number
(the paper-era code). The paper's offset loss is L2 (squared error, default); the author uses
Huber with delta 1 (diff #2, ``offset_loss="huber"``). Offsets are in units of the stride.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..grid import detection_targets


def focal_bce(logits: Tensor, target: Tensor, gamma: float = 2.0) -> Tensor:
    """Elementwise focal BCE on logits: ``(1 - p_t)^gamma * -log(p_t)`` (no alpha)."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)
    return (1 - p_t).pow(gamma) * ce


def detection_loss(logits: dict[int, Tensor], offsets: dict[int, Tensor], points: Tensor, valid: Tensor,
                   radius: float = 8.0, own_cell: bool = True, gamma: float = 2.0,
                   offset_loss: str = "l2") -> dict[str, Tensor]:
    """Eq. 3 over all strides.

    Args:
        logits: ``{s: [B, 1, h_s, w_s]}``; offsets: ``{s: [B, 2, h_s, w_s]}``.
        points: ``[B, N, 2]`` (y, x) pixels; valid: ``[B, N]`` bool.
    Returns:
        dict ``L_det`` (total), ``L_fce``, ``L_off``.
    """
    fce_sum = logits[next(iter(logits))].new_zeros(())
    off_sum = fce_sum.clone()
    n_cells = 0
    n_pos = 0
    for s, lg in logits.items():
        tgt, off_t = detection_targets(points, valid, s, tuple(lg.shape[-2:]), radius, own_cell)
        fce_sum = fce_sum + focal_bce(lg, tgt, gamma).sum()
        n_cells += tgt.numel()
        pos = tgt[:, 0] > 0  # [B, h, w]
        if bool(pos.any()):
            diff = offsets[s].permute(0, 2, 3, 1)[pos] - off_t.permute(0, 2, 3, 1)[pos]  # [P, 2]
            if offset_loss == "l2":
                off_sum = off_sum + diff.pow(2).sum()
            elif offset_loss == "huber":
                off_sum = off_sum + F.huber_loss(diff, torch.zeros_like(diff), delta=1.0, reduction="none").mean(1).sum()
            else:
                raise ValueError(f"offset_loss must be 'l2' or 'huber', got {offset_loss!r}")
            n_pos += int(pos.sum())
    l_fce = fce_sum / max(n_cells, 1)
    l_off = off_sum / max(n_pos, 1)
    return {"L_det": l_fce + l_off, "L_fce": l_fce, "L_off": l_off}

"""Fully supervised segmentation loss (Sec. III-A; Table II): BCE between window logits and GT masks.

Used by ``loss.mode = "supervised"``: each window i is trained against the ground-truth mask of its
cell, cut from a label image at the window's position (author: ``supervised_instance_loss``).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..windows import window_index


def window_targets(label: Tensor, seg_batch: Tensor, seg_origin: Tensor, gt_ids: Tensor, window: int) -> Tensor:
    """Binary target of each window: 1 where the label image equals the window's cell id.

    Args:
        label: ``[B, H, W]`` integer label image (0 = background). seg_batch ``[K]``, seg_origin ``[K, 2]``.
        gt_ids: ``[K]`` label id of each window's cell (an id <= 0 gives an all-zero target).
        window: S.
    Returns:
        ``[K, S, S]`` float; off-image window pixels are 0.
    """
    b, h, w = label.shape
    index, valid = window_index(seg_batch, seg_origin, window, (h, w))
    ids = gt_ids.to(device=label.device, dtype=label.dtype).reshape(-1, 1, 1)
    hit = valid & (label.reshape(-1)[index] == ids) & (ids > 0)
    return hit.float()


def supervised_loss(seg_logits: Tensor, targets: Tensor) -> Tensor:
    """Mean binary cross-entropy with logits over all window pixels. Shapes ``[K, S, S]``; scalar (0 if K = 0)."""
    if seg_logits.shape[0] == 0:
        return seg_logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(seg_logits, targets.to(seg_logits.dtype))


__all__ = ["window_targets", "supervised_loss"]

"""Image-affinity pairwise term on the collaborator's foreground, ``L_PW`` (ours, issue #9; not in the paper).

Why: in CKS nothing but the collaborator ties a mask's edge to the image, and on phase contrast the collaborator
learns the bright halo around each cell as foreground (:mod:`cks.boundary_profile`: CKS masks end where the halo
ends, 3-4 px outside the annotated outline). The pairwise term of BoxInst (Tian et al., CVPR 2021) adds the
missing image evidence: two neighbouring pixels of similar intensity should get the same label, so a foreground
edge is cheap only where the image has an edge. Measured on the annotated masks of the Usiigaci tuning fields
(train/set17-20 at the training scale, cells of 32 px; ``theta`` = 0.3): the mean pair weight ``w`` across the
boundary is lowest at the annotated outline moved 1-2 px inward (0.27) and 0.29 on it, and rises outward, 0.40 at
+2 px, 0.55 at +4 px, 0.67 at +6 px: a boundary in the halo's outer flank or beyond costs about twice as much per
pixel of edge as one on the outline.

Definition, for the collaborator's foreground ``m = sigmoid(fg_logits)`` ``[B, H, W]`` and the image ``x``
``[B, C, H, W]``::

    I   = (x - median(x)) / std(x)                     per image and channel (over the crop)
    w_ij = exp(-max_c |I_i - I_j| / theta)             for each pixel pair (i, j) at the offsets
                                                       (0, s), (s, 0), (s, s), (s, -s), s = dilation
    P_ij = m_i m_j + (1 - m_i)(1 - m_j)                the probability that i and j get the same label
    L_PW = sum_ij w_ij (-log P_ij) / sum_ij w_ij

``-log P_ij`` is computed from the logits (log-sum-exp of log-sigmoids), so it is finite for saturated maps. The
image only weights the pairs (no gradient to the image). ``L_PW`` trains the collaborator only; the principal
sees its effect through ``L_S`` (Eq. 8), which reads ``M_c``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import CksConfigError

__all__ = ["pair_offsets", "pair_weights", "same_label_nll", "pairwise_loss"]


def pair_offsets(dilation: int = 1) -> tuple[tuple[int, int], ...]:
    """The four pair offsets ``(dy, dx)`` at ``dilation`` px: right, down, down-right, down-left (each pair once)."""
    s = int(dilation)
    if s < 1:
        raise CksConfigError(f"loss.pairwise_dilation must be >= 1, got {dilation!r}")
    return ((0, s), (s, 0), (s, s), (s, -s))


def _shifted(t: Tensor, dy: int, dx: int) -> tuple[Tensor, Tensor]:
    """The overlapping parts ``(a, b)`` of ``t [..., H, W]`` and of ``t`` moved by ``(dy, dx)``: ``b = t[y+dy, x+dx]``."""
    h, w = t.shape[-2], t.shape[-1]
    ya, yb = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xa, xb = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    return t[..., ya, xa], t[..., yb, xb]


def standardize(image: Tensor) -> Tensor:
    """``(x - median) / std`` per image and channel of ``image [B, C, H, W]`` (std floored at 1e-6)."""
    flat = image.detach().float().flatten(2)
    med = flat.median(dim=2).values[..., None, None]
    std = flat.std(dim=2).clamp_min(1e-6)[..., None, None]
    return (image.detach().float() - med) / std


def pair_weights(image: Tensor, theta: float = 0.3, dilation: int = 1) -> list[Tensor]:
    """``w_ij = exp(-max_c |I_i - I_j| / theta)`` for each offset of :func:`pair_offsets`.

    Args:
        image: ``[B, C, H, W]``. theta: similarity scale in standard deviations of the image (> 0).
    Returns:
        four tensors ``[B, H - |dy|, W - |dx|]`` in (0, 1], no gradient.
    """
    if not theta > 0:
        raise CksConfigError(f"loss.pairwise_theta must be > 0, got {theta!r}")
    if image.dim() != 4:
        raise CksConfigError(f"pairwise weights need an image [B, C, H, W], got shape {tuple(image.shape)}")
    std_img = standardize(image)
    out = []
    for dy, dx in pair_offsets(dilation):
        a, b = _shifted(std_img, dy, dx)
        out.append(torch.exp(-(a - b).abs().amax(dim=1) / float(theta)))
    return out


def same_label_nll(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """``-log(m_a m_b + (1 - m_a)(1 - m_b))`` with ``m = sigmoid(logits)``, elementwise and numerically stable."""
    both_fg = F.logsigmoid(logits_a) + F.logsigmoid(logits_b)
    both_bg = F.logsigmoid(-logits_a) + F.logsigmoid(-logits_b)
    return -torch.logaddexp(both_fg, both_bg)


def pairwise_loss(fg_logits: Tensor, image: Tensor, theta: float = 0.3, dilation: int = 1) -> Tensor:
    """``L_PW``: the affinity-weighted mean of :func:`same_label_nll` over all neighbour pairs (module docstring).

    Args:
        fg_logits: ``[B, H, W]`` the collaborator's foreground logits. image: ``[B, C, H, W]`` what it sees.
        theta, dilation: ``loss.pairwise_theta`` / ``loss.pairwise_dilation``.
    Returns:
        scalar >= 0; 0 for a map that is the same everywhere (all pairs agree).
    """
    if fg_logits.shape[0] != image.shape[0] or fg_logits.shape[-2:] != image.shape[-2:]:
        raise CksConfigError(f"pairwise loss: foreground {tuple(fg_logits.shape)} and image {tuple(image.shape)} "
                             "must cover the same pixels ([B, H, W] and [B, C, H, W])")
    num = fg_logits.new_zeros(())
    den = fg_logits.new_zeros(())
    for (dy, dx), w in zip(pair_offsets(dilation), pair_weights(image, theta, dilation)):
        a, b = _shifted(fg_logits, dy, dx)
        num = num + (w * same_label_nll(a, b)).sum()
        den = den + w.sum()
    return num / den.clamp_min(1e-12)

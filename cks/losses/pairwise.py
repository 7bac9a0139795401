"""Image-affinity pairwise term on the collaborator's foreground, ``L_PW`` (ours, issue #9; not in the paper).

Why: in CKS nothing but the collaborator ties a mask's edge to the image, and on phase contrast the collaborator
learns the bright halo around each cell as foreground (:mod:`cks.boundary_profile`: CKS masks end where the halo
ends, 3-4 px outside the annotated outline). The pairwise term of BoxInst (Tian et al., CVPR 2021) adds the
missing image evidence: two neighbouring pixels of similar intensity should get the same label, so a foreground
edge is cheap only where the image has an edge. Measured on the annotated masks of the Usiigaci tuning fields
(train/set17-20 at the training scale, cells of 32 px; ``theta`` = 0.3; ``benchmarks/edge_cost_profile.py``,
:func:`cks.boundary_profile.edge_cost_profile`, ``results/usiigaci_points_v2/edge_cost_profile.json``): the mean
pair weight ``w`` across the boundary is lowest at the annotated outline moved 1-2 px inward (0.25-0.26), 0.27 on
it, and rises outward, 0.39 at +2 px, 0.56 at +4 px, 0.67 at +6 px: a boundary in the halo's outer flank or beyond
costs about twice as much per pixel of edge as one on the outline (at ``theta`` = 0.15: 2.5 times at +4 px).

Definition, for the collaborator's foreground ``m = sigmoid(fg_logits)`` ``[B, H, W]`` and the image ``x``
``[B, C, H, W]``::

    I   = (x - median(x)) / std(x)                     per image and channel (over the crop)
    w_ij = exp(-max_c |I_i - I_j| / theta)             for each pixel pair (i, j) at the offsets
                                                       (0, s), (s, 0), (s, s), (s, -s), s = dilation
    P_ij = m_i m_j + (1 - m_i)(1 - m_j)                the probability that i and j get the same label
    L_PW = sum_ij w_ij (-log P_ij) / sum_ij w_ij

Measured (Usiigaci, ``usiigaci_ablation_v2``: 800 steps, seed 0, tuning split train/set17-20; rows in
``results/usiigaci_ablation_v2/pairwise_diagnostics.json``): on the collaborator at weight 1 it moves the median
boundary ~0.7 px inward at the same tuning AP50 as the base, and leaves the masks' shape (solidity ~0.95 against
0.77 true, size slope ~0.5) as it was; at weight 10, on the principal's windows (0.5; 5 makes every window
foreground) and with the one-level texture collaborator (weight 1: its foreground dies) the tuning AP50 falls.
Over 3,600 steps (``usiigaci_points_v2``, 2 seeds) weight 1 ends above both seeds of the base on the tuning split
(AP50 0.370 / 0.402 vs 0.315 / 0.297; median boundary offset 0.78 / 0.85 px vs 1.72), so the base uses it
(``cks.config.OURS``). It is not a fix for shape: the image's edges do not teach these models the cells' outlines
(solidity stays ~0.95).

With ``loss.pairwise_on=both`` the same term also acts on every window of the principal
(:func:`window_pairwise_loss`). Over 8,000 steps (``usiigaci_points_v2``, 2 seeds, session 27 of issue #9) it gives
a working model sooner (tuning AP50 0.38 at step 4,000 against the base's 0.03) but ends below the base (0.488 vs
0.507), with masks as convex as before (solidity 0.93); so the base keeps L_PW on the collaborator only
(``results/usiigaci_points_v2/pairwise_both_8000_*.json``, chapter 09). With the a2 collaborator it is the chosen
configuration (preset ``phase_points``). In that configuration (8,000 steps, 2 seeds, chapter 9c) weight 2
(``pw2_8000_seed*``) and ``theta`` 0.15 (``theta015_8000_seed*``) both end below weight 1 at ``theta`` 0.3 in tuning
AP50 (means 0.494 and 0.538 against 0.551); at ``theta`` 0.15 the masks are larger, not tighter.

``-log P_ij`` is computed from the logits (log-sum-exp of log-sigmoids), so it is finite for saturated maps. The
image only weights the pairs (no gradient to the image). With ``pairwise_on="collaborator"`` (the default)
``L_PW`` trains the collaborator only; the principal sees its effect through ``L_S`` (Eq. 8), which reads ``M_c``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import CksConfigError

__all__ = ["pair_offsets", "pair_weights", "window_pair_weights", "same_label_nll", "pairwise_loss",
           "window_pairwise_loss"]


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
    x = image.detach()
    x = x if x.is_floating_point() else x.float()
    flat = x.flatten(2)
    med = flat.median(dim=2).values[..., None, None]
    std = flat.std(dim=2).clamp_min(1e-6)[..., None, None]
    return (x - med) / std


def pair_weights(image: Tensor, theta: float = 0.3, dilation: int = 1, full: bool = False) -> list[Tensor]:
    """``w_ij = exp(-max_c |I_i - I_j| / theta)`` for each offset of :func:`pair_offsets`.

    Args:
        image: ``[B, C, H, W]``. theta: similarity scale in standard deviations of the image (> 0).
        full: False: the weights of the pairs inside the image, ``[B, H - |dy|, W - |dx|]`` (pixel ``i`` at the
            top-left of the cropped map). True: ``[B, H, W]`` indexed by the pair's first pixel ``i``, 0 where its
            partner ``i + (dy, dx)`` is off the image.
    Returns:
        four tensors in [0, 1], no gradient.
    """
    if not theta > 0:
        raise CksConfigError(f"loss.pairwise_theta must be > 0, got {theta!r}")
    if image.dim() != 4:
        raise CksConfigError(f"pairwise weights need an image [B, C, H, W], got shape {tuple(image.shape)}")
    std_img = standardize(image)
    out = []
    for dy, dx in pair_offsets(dilation):
        a, b = _shifted(std_img, dy, dx)
        w = torch.exp(-(a - b).abs().amax(dim=1) / float(theta))
        if full:  # put the weights back at their first pixel's place: rows 0..H-dy, columns max(0,-dx)..W-max(0,dx)
            w = F.pad(w, (max(0, -dx), max(0, dx), 0, dy))
        out.append(w)
    return out


def window_pair_weights(image: Tensor, seg_batch: Tensor, seg_origin: Tensor, window: int, theta: float = 0.3,
                        dilation: int = 1, full_weights: list[Tensor] | None = None) -> list[Tensor]:
    """:func:`pair_weights` read at every pixel of every window: four ``[K, S, S]`` (0 where a pair leaves the image).

    ``full_weights``: the image's ``pair_weights(image, theta, dilation, full=True)`` if already computed.
    """
    from ..windows import gather_windows

    full_weights = pair_weights(image, theta, dilation, full=True) if full_weights is None else full_weights
    return [gather_windows(w, seg_batch, seg_origin, window, fill=0.0) for w in full_weights]


def same_label_nll(logits_a: Tensor, logits_b: Tensor) -> Tensor:
    """``-log(m_a m_b + (1 - m_a)(1 - m_b))`` with ``m = sigmoid(logits)``, elementwise and numerically stable."""
    both_fg = F.logsigmoid(logits_a) + F.logsigmoid(logits_b)
    both_bg = F.logsigmoid(-logits_a) + F.logsigmoid(-logits_b)
    return -torch.logaddexp(both_fg, both_bg)


def _weighted_nll(logits: Tensor, weights: list[Tensor], dilation: int) -> tuple[Tensor, Tensor]:
    """``(sum w_ij nll_ij, sum w_ij)`` over the pairs inside ``logits [N, H, W]``; ``weights`` as :func:`pair_weights`
    (``full=False``) or :func:`window_pair_weights` (first-pixel indexed, cropped here)."""
    num = logits.new_zeros(())
    den = logits.new_zeros(())
    for (dy, dx), w in zip(pair_offsets(dilation), weights):
        a, b = _shifted(logits, dy, dx)
        if w.shape[-2:] != a.shape[-2:]:  # first-pixel indexed [N, H, W]: crop to the pairs inside the map
            w = _shifted(w, dy, dx)[0]
        num = num + (w * same_label_nll(a, b)).sum()
        den = den + w.sum()
    return num, den


def pairwise_loss(fg_logits: Tensor, image: Tensor, theta: float = 0.3, dilation: int = 1,
                  full_weights: list[Tensor] | None = None) -> Tensor:
    """``L_PW`` on the collaborator: the affinity-weighted mean of :func:`same_label_nll` over all neighbour pairs.

    Args:
        fg_logits: ``[B, H, W]`` the collaborator's foreground logits. image: ``[B, C, H, W]`` what it sees.
        theta, dilation: ``loss.pairwise_theta`` / ``loss.pairwise_dilation``.
        full_weights: ``pair_weights(image, theta, dilation, full=True)`` if already computed (``pairwise_on=both``
            computes them once for both models).
    Returns:
        scalar >= 0; 0 for a map that is the same everywhere (all pairs agree).
    """
    if fg_logits.shape[0] != image.shape[0] or fg_logits.shape[-2:] != image.shape[-2:]:
        raise CksConfigError(f"pairwise loss: foreground {tuple(fg_logits.shape)} and image {tuple(image.shape)} "
                             "must cover the same pixels ([B, H, W] and [B, C, H, W])")
    weights = pair_weights(image, theta, dilation) if full_weights is None else full_weights
    num, den = _weighted_nll(fg_logits, weights, dilation)
    return num / den.clamp_min(1e-12)


def window_pairwise_loss(seg_logits: Tensor, seg_batch: Tensor, seg_origin: Tensor, image: Tensor,
                         theta: float = 0.3, dilation: int = 1, full_weights: list[Tensor] | None = None) -> Tensor:
    """``L_PW`` on the principal: the same mean over the pixel pairs inside every window ``[K, S, S]``.

    A window's own edge is not a mask edge (``m_i = 0`` outside it by definition), so pairs that leave the window
    do not count, nor do pairs that leave the image. Returns a scalar >= 0 (0 without windows).
    ``full_weights`` as in :func:`pairwise_loss`.
    """
    if seg_logits.shape[0] == 0:
        return seg_logits.sum() * 0.0
    weights = window_pair_weights(image, seg_batch, seg_origin, seg_logits.shape[-1], theta, dilation, full_weights)
    num, den = _weighted_nll(seg_logits, weights, dilation)
    return num / den.clamp_min(1e-12)

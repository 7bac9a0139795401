"""Collapse prevention, Eq. 6 (L_MC): ``L_MC = delta / n * sum_i (mean m_i)^(-exponent)``.

The likeliest collapse of CKS training is every ``m_i`` going to zero; the penalty grows without bound
as an instance's mean probability shrinks. With delta small (0.01) it is negligible otherwise.

Paper: exponent 1. Author (diff #8): ``delta * S / sqrt(sum of m_i over in-image pixels)``, which is
``delta * (mean m_i)^(-1/2)``: exponent 0.5. The mean is over the whole S x S window with off-image
pixels counted as 0, and is clamped to >= 1e-6 (the author clips the area to >= eps).

Why the exponent matters (our analysis, measured in the closing notes / results): per window pixel, L_S
(Eq. 8, normalised by K = S^2 n) pulls ``m_i`` down with gradient ``1 / (S^2 n)`` where ``M_c = 0``, while
L_MC pushes it up with ``exponent * delta / (S^2 n * mean^(exponent + 1))``. The push wins wherever
``mean < (exponent * delta)^(1 / (exponent + 1))``: with the paper's exponent 1 and delta 0.01 that is
10 % of the window (~920 px at S = 96), so every smaller cell is grown into background; with the
author's 0.5 it is 2.9 % (~270 px). On generated images (S = 48, cells ~250 px, 800 steps) the paper's
form gave AP50 0.27 with masks twice the true area, the author's form AP50 1.0.

Both are absolute: the minimum area is a number of pixels, right for one cell size only (issue #9: at
Usiigaci's 0.5x scale 44 % of the report cells are below 270 px). The default configuration therefore
sets delta from ``loss.collapse_min_area`` (a fraction of the target cell's area, see
:func:`cks.losses.cks.effective_collapse_delta`) on images rescaled to that cell size;
:func:`push_pull_ratio` gives the balance against mask area (the collaborator chapter plots it).
That floor is still one area per image, so cells smaller than the image's median are grown to it;
``loss.collapse_spacing`` (ours, off by default) lowers it per cell from the points' spacing
(:func:`spacing_ratio`).

The push does not stop at the minimum area: at a mask of the target cell's area it is still
``collapse_min_area^(exponent + 1)`` of L_S's largest pull (0.45^1.5 = 0.30 by default), so a mask grows
wherever the collaborator's ``M_c`` exceeds ~0.35, and the collaborator then learns the grown mask (L_M). On the
Usiigaci tuning fields the CKS boundary follows that balance, not an image edge (issue #9, session 12): with
``collapse_min_area = 0.2`` from scratch the masks collapse to a quarter of the cells' area (row
``collapse_min_area02_s12_step2400`` of ``results/usiigaci_points_v2/tuning_diagnostics.json``), with the default
they carry a band of ~1.4 px containing the phase halo. At the 8,000-step budget (session 27) ``0.3`` lost every
mask by step 2,000 (tuning AP50 0.0; ``results/usiigaci_points_v2/collapse_floor_8000_stopped.json``), so the
floor of 0.45 stays, and the cells under half the median size keep masks of about twice their area.
``loss.collapse_min_area_after`` (ours, off by default) lowers the floor only after ``loss.prior_until`` of the
run, once the prior has taught the collaborator where the cells are (:func:`cks.schedule.loss_config_at`). Measured
(session 33, 8,000 steps, seed 0, 0.2 from step 4,000): the smallest cells reach their size, but every mask and the
collaborator's foreground shrink with them (matched area ratio 0.45, tuning AP50 0.10 against the same-CPU base's
0.47; ``results/usiigaci_points_v2/late_floor_8000_diagnostics.json``): after the prior the floor sets the masks' area.

``loss.collapse_form = "hinge"`` (ours, :func:`collapse_hinge_loss`) keeps the guard and drops the push above it:
``w * max(0, a_i - mean m_i)`` with the same minimum area ``a_i = (e delta_i)^(1/(e+1))`` of the window, so above
the minimum area L_S alone places the edge (where ``M_c = 0.5``). Measured (issue #9, session 13, Usiigaci tuning,
2,400 steps, one seed): the masks then shrink onto the floor (area ratio 0.52 at the default 0.45, 0.92 at 0.8),
and tuning AP50 is not above the power form's (0.06 / 0.23 vs 0.27): no image edge holds them either. The rows
``collapse_hinge*_s13_step2400`` of ``results/usiigaci_points_v2/tuning_diagnostics.json`` have the numbers.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..windows import window_index

#: lower bound of the mean window probability (keeps the penalty finite)
MIN_MEAN = 1e-6


def window_mean(seg_logits: Tensor, seg_batch: Tensor, seg_origin: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """``mean m_i`` of every window, ``[K]``: the sum of ``sigmoid(seg_logits)`` over in-image pixels over S^2."""
    s = seg_logits.shape[-1]
    _, valid = window_index(seg_batch, seg_origin, s, tuple(shape[1:]))
    return (torch.sigmoid(seg_logits) * valid.to(seg_logits.dtype)).sum((1, 2)) / (s * s)


def collapse_loss(seg_logits: Tensor, seg_batch: Tensor, seg_origin: Tensor, shape: tuple[int, int, int],
                  delta: float | Tensor = 0.01, exponent: float = 1.0) -> Tensor:
    """Eq. 6 (L_MC).

    Args:
        seg_logits: ``[K, S, S]`` window logits (``m_i = sigmoid``). seg_batch ``[K]``, seg_origin ``[K, 2]``.
        shape: (B, H, W); pixels outside the image count as 0.
        delta: the paper's delta (0.01), or ``[K]``, one per window (see :func:`spacing_ratio`).
            exponent: 1 (paper) or 0.5 (author, diff #8).
    Returns:
        scalar; 0 with no windows. Trains the principal only.
    """
    if seg_logits.shape[0] == 0:
        return seg_logits.sum() * 0.0
    mean = window_mean(seg_logits, seg_batch, seg_origin, shape).clamp_min(MIN_MEAN)
    return (delta * mean.pow(-exponent)).mean()


def hinge_floor(delta: float | Tensor, exponent: float) -> float | Tensor:
    """The minimum mean window probability of Eq. 6's power form, ``(e delta)^(1/(e+1))`` (= a_min / S^2).

    It is where the power form's push per pixel equals L_S's largest pull; the hinge form uses it as its floor, so
    ``collapse_min_area`` and ``collapse_spacing`` mean the same area in both forms.
    """
    return (exponent * delta) ** (1.0 / (exponent + 1.0))


def collapse_hinge_loss(seg_logits: Tensor, seg_batch: Tensor, seg_origin: Tensor, shape: tuple[int, int, int],
                        floor: float | Tensor, weight: float = 2.0) -> Tensor:
    """Ours (issue #9): a collapse guard that pushes only below the minimum area, ``w/n sum_i max(0, a_i - mean m_i)``.

    Per window pixel of a window below its floor, the push is ``w / (S^2 n)``: ``w`` times L_S's largest pull
    (Eq. 8 normalised by K = S^2 n), so with ``w > 1`` a mask below the floor grows even where ``M_c = 0``; a mask
    above it feels no push at all, unlike Eq. 6's ``(mean m_i)^-e``, which still pushes a cell-sized mask with 0.30
    of L_S's pull by default and so moves its edge outward.

    Args:
        seg_logits: ``[K, S, S]`` window logits. seg_batch ``[K]``, seg_origin ``[K, 2]``. shape: (B, H, W); pixels
            outside the image count as 0.
        floor: ``a_i`` as a fraction of the window (float or ``[K]``; :func:`hinge_floor`). weight: ``w``.
    Returns:
        scalar; 0 with no windows or when every window is above its floor. Trains the principal only.
    """
    if seg_logits.shape[0] == 0:
        return seg_logits.sum() * 0.0
    return (weight * torch.relu(floor - window_mean(seg_logits, seg_batch, seg_origin, shape))).mean()


def spacing_ratio(seg_points: Tensor, seg_batch: Tensor, spacing: float, diameter: float,
                  floor: float = 0.25) -> Tensor:
    """Per window, ``r_i = clip(spacing * nn_i / diameter, floor, 1)``; nn_i = distance to the nearest other point.

    Ours (issue #9, not in the paper): L_MC's minimum area is one number for the whole image (the target
    cell's), so every cell smaller than the image's median is grown to it (measured: area ratio ~3 for
    cells below half the median size). A point's nearest-neighbour distance bounds its cell's diameter
    where cells touch, so ``delta_i = delta * r_i^(2 (e + 1))`` scales window i's minimum area
    ``S^2 (e delta_i)^(1/(e+1))`` by ``r_i^2``. It only lowers the floor (``r_i <= 1``: an isolated point
    keeps the image's); ``floor`` keeps duplicate points from switching L_MC off.

    Args:
        seg_points: ``[K, 2]`` float (y, x). seg_batch: ``[K]`` image of each window (neighbours are
            looked for in the same image only). spacing: cell diameter per nearest-neighbour distance
            (1: touching cells of one size). diameter: the target cell diameter in px.
    Returns:
        ``[K]`` float in [floor, 1]; no gradient. O(K^2) memory, no loop over cells.
    """
    k = seg_points.shape[0]
    ones = torch.ones(k, device=seg_points.device)
    if k < 2 or spacing <= 0:
        return ones
    p = seg_points.detach().float()
    dist = torch.cdist(p, p)
    other = (seg_batch[:, None] == seg_batch[None, :]) & ~torch.eye(k, dtype=torch.bool, device=p.device)
    nn = dist.masked_fill(~other, float("inf")).min(1).values
    return (spacing * nn / float(diameter)).clamp(floor, 1.0)


def push_pull_ratio(area, window: int, delta: float, exponent: float, form: str = "power", weight: float = 2.0):
    """Per window pixel, the L_MC push over the L_S pull at saturated logits: ``e delta (a / S^2)^-(e+1)``.

    Args: area: mask area(s) ``a`` in px (array-like); window: S; delta, exponent: of Eq. 6 (L_MC).
        form: "power" (Eq. 6) or "hinge" (:func:`collapse_hinge_loss`: ``weight`` below the same minimum area, 0 above).
    Returns: array like ``area``; > 1 where L_MC grows the mask even where ``M_c = 0`` (the minimum area is
    where it equals 1: ``S^2 (e delta)^(1/(e+1))``).
    """
    import numpy as np

    a = np.asarray(area, dtype=np.float64)
    if form == "hinge":
        return np.where(a / float(window) ** 2 < hinge_floor(delta, exponent), float(weight), 0.0)
    return exponent * delta * (a / float(window) ** 2) ** (-(exponent + 1.0))


__all__ = ["collapse_loss", "collapse_hinge_loss", "hinge_floor", "spacing_ratio", "push_pull_ratio", "MIN_MEAN"]

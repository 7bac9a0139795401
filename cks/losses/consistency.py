"""Segmentation knowledge sharing (Sec. III-C): ``M_p`` (Eq. 4), ``L_CE`` (Eq. 5), ``L_M`` (Eq. 6 (L_M))
and ``L_S`` (Eq. 8).

Notation (shapes): K windows of side S over B images of size H x W. ``seg_logits [K, S, S]`` are the
principal's per-cell logits ``l(m_i)``; ``m_i = sigmoid(l(m_i))`` and ``m_i = 0`` outside window i.
``seg_batch [K]`` is each window's image, ``seg_origin [K, 2]`` its absolute top-left pixel (y0, x0),
``seg_points [K, 2]`` the float (y, x) cell location the window was computed for (pixel-centre
convention). ``M_c = sigmoid(fg_logits) [B, H, W]`` is the collaborator's foreground.

Gradient routing is done by detaching (the author trains both models with one optimiser):

* ``M_p`` is a target: built from detached logits, so ``L_M`` trains the collaborator only;
* ``L_S`` reads ``M_c`` detached, so it trains the principal only.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import CksConfigError
from ..windows import gather_windows, scatter_windows, window_index


def prior_logits(seg_points: Tensor, seg_origin: Tensor, window: int, d_per_window: Tensor,
                 center: str = "point", zero_at: float = 0.0, radius: Tensor | None = None) -> Tensor:
    """The prior ``l_prior = exp(-r^2 / (2 d^2))`` of Eq. 4, a 2D Gaussian of variance d^2, per window.

    Args:
        seg_points: ``[K, 2]`` float (y, x) cell locations. seg_origin: ``[K, 2]`` window top-left.
        window: S. d_per_window: ``[K]`` the paper's d (the author's sigma) for each window.
        center: ``"point"`` (paper): r is the distance of a pixel centre from the cell location;
            ``"window"`` (author, diff #7): r is measured from the window centre ((S-1)/2, (S-1)/2).
        zero_at: 0 (paper): the prior is the Gaussian g >= 0 itself, so it only ever adds foreground.
            ``k > 0`` (ours, ``loss.prior_zero``): ``(g - g_k) / (1 - g_k)`` with ``g_k = exp(-k^2 / 2)``, which
            is 1 at the point, crosses 0 at ``r = k d`` and tends to ``-g_k / (1 - g_k)`` far away: pixels
            beyond ``k d`` are pushed towards background unless the principal is confident.
        radius: ``[K, S, S]`` or None. Given (ours, ``loss.prior_shape = "geodesic"``), ``r`` is this per-pixel distance
            (:func:`cks.losses.geodesic.geodesic_prior_radius`) instead of the Euclidean one; ``center`` is unused.
    Returns:
        ``[K, S, S]`` values in (0, 1] (in ``(-g_k / (1 - g_k), 1]`` with ``zero_at``); the caller scales them
        by pi. Not differentiable in any meaningful sense (built from labels).
    """
    device = seg_origin.device
    ar = torch.arange(window, device=device, dtype=torch.float32)
    if radius is not None:
        r2 = radius.to(device=device, dtype=torch.float32) ** 2
    elif center == "point":
        cy = seg_points[:, 0].float() - seg_origin[:, 0].float()  # point in window coordinates
        cx = seg_points[:, 1].float() - seg_origin[:, 1].float()
    elif center == "window":
        k = seg_origin.shape[0]
        cy = cx = torch.full((k,), (window - 1) / 2.0, device=device)
    else:
        raise CksConfigError(f"loss.prior_center must be 'point' (paper) or 'window' (author), got {center!r}")
    if radius is None:
        dy2 = (ar[None, :] - cy[:, None]) ** 2  # [K, S]
        dx2 = (ar[None, :] - cx[:, None]) ** 2
        r2 = dy2[:, :, None] + dx2[:, None, :]
    d = d_per_window.to(device=device, dtype=torch.float32).reshape(-1, 1, 1)
    g = torch.exp(-r2 / (2.0 * d * d))
    if zero_at > 0:
        g_k = math.exp(-0.5 * zero_at * zero_at)
        g = (g - g_k) / (1.0 - g_k)
    return g


@torch.no_grad()
def principal_foreground(seg_logits: Tensor, seg_batch: Tensor, seg_origin: Tensor, seg_points: Tensor,
                         shape: tuple[int, int, int], d_per_window: Tensor, prior_scale: float = 2.0,
                         center: str = "point", force_points: bool = False, prior_zero: float = 0.0,
                         prior_radius: Tensor | None = None) -> Tensor:
    """Image-level foreground of the principal, Eq. 4: ``M_p = max_i sigmoid(l(m_i) + pi * l_prior)``.

    Since sigmoid is monotone, the max is taken over logits (scatter-amax) and the sigmoid applied
    once. Pixels covered by no window get ``M_p = 0`` (as in the author's code, whose canvas starts at
    -1e6). The result is DETACHED: ``M_p`` is the collaborator's target and the principal never learns
    from ``L_M``.

    Args:
        seg_logits: ``[K, S, S]``. seg_batch ``[K]``, seg_origin ``[K, 2]``, seg_points ``[K, 2]``.
        shape: (B, H, W). d_per_window: ``[K]`` prior widths d. prior_scale: pi (paper 2.0; 0 = no
            prior, Table VI). center: see :func:`prior_logits`.
        prior_zero: see ``zero_at`` of :func:`prior_logits` (0 = the paper's prior).
        prior_radius: ``[K, S, S]`` or None (paper): see ``radius`` of :func:`prior_logits`.
        force_points: author's code (diff #7, not in the paper): set ``M_p = 1`` at the pixel containing
            each window's cell location (``seg_points`` rounded; locations off the image are skipped).
    Returns:
        ``M_p [B, H, W]`` in [0, 1), ``requires_grad`` False.
    """
    b, h, w = shape
    z = seg_logits.detach().float()
    if prior_scale != 0 and z.shape[0] > 0:
        z = z + prior_scale * prior_logits(seg_points, seg_origin, z.shape[-1], d_per_window, center, prior_zero,
                                           prior_radius)
    canvas = scatter_windows(z, seg_batch, seg_origin, shape, reduce="amax", fill=float("-inf"))
    m_p = torch.sigmoid(canvas)
    if force_points and seg_points.shape[0] > 0:
        py = torch.floor(seg_points[:, 0].float() + 0.5).long()
        px = torch.floor(seg_points[:, 1].float() + 0.5).long()
        ok = (py >= 0) & (py < h) & (px >= 0) & (px < w)
        m_p[seg_batch[ok], py[ok], px[ok]] = 1.0
    return m_p


def linear_consistency(pred: Tensor, target: Tensor) -> Tensor:
    """Mean of ``(1 - target) * pred + target * (1 - pred)``: the linear loss of Eq. 6 (L_M) on probabilities.

    Its gradient w.r.t. ``pred`` is ``(1 - 2 target) / N`` with N the number of elements (Eq. 7 with
    N = H x W for one image). Shapes: any, equal.
    """
    return ((1.0 - target) * pred + target * (1.0 - pred)).mean()


def collaborator_linear_loss(fg_logits: Tensor, m_p: Tensor) -> Tensor:
    """Eq. 6 (L_M): ``1/(H W) sum (1 - M_p) M_c + M_p (1 - M_c)``, ``M_c = sigmoid(fg_logits)``.

    Args: fg_logits ``[B, H, W]``; m_p ``[B, H, W]`` (detached target from :func:`principal_foreground`).
    Returns: scalar, the mean over all B x H x W pixels. Trains the collaborator only.
    """
    return linear_consistency(torch.sigmoid(fg_logits), m_p.detach())


def collaborator_entropy_loss(fg_logits: Tensor, m_p: Tensor) -> Tensor:
    """Eq. 5 (L_CE): binary cross-entropy of ``M_c`` against the hard label ``1[M_p >= 0.5]`` (Table V ablation).

    Args/Returns: as :func:`collaborator_linear_loss`.
    """
    hard = (m_p.detach() >= 0.5).to(fg_logits.dtype)
    return F.binary_cross_entropy_with_logits(fg_logits, hard)


def collaborator_soft_entropy_loss(fg_logits: Tensor, m_p: Tensor) -> Tensor:
    """Ours (issue #9): binary cross-entropy of ``M_c`` against the SOFT target ``M_p`` (not in the paper).

    ``1/(H W) sum -M_p log M_c - (1 - M_p) log(1 - M_c)``. Its gradient w.r.t. the collaborator's logit z is
    ``(M_c - M_p) / N``: it does not vanish where the collaborator is confidently wrong, whereas the linear
    L_M of Eq. 6 gives ``(1 - 2 M_p) M_c (1 - M_c) / N``, about 0 once ``|z|`` is large. Its minimum is
    ``M_c = M_p`` (a calibrated copy), so an unsure principal leaves the collaborator unsure instead of
    driving its logits to +-infinity. Args/Returns: as :func:`collaborator_linear_loss`.
    """
    return F.binary_cross_entropy_with_logits(fg_logits, m_p.detach().to(fg_logits.dtype))


def instance_consistency_loss(seg_logits: Tensor, seg_batch: Tensor, seg_origin: Tensor, m_c: Tensor,
                              shape: tuple[int, int, int], variant: str = "linear",
                              overlap: str = "soft", owner: Tensor | None = None) -> Tensor:
    """Eq. 8 (L_S): drive each ``m_i`` towards ``M_c`` and penalise overlapping instances.

    Per window pixel: ``(1 - M_c) m_i + M_c (1 - m_i) + m_i (sum_j m_j - m_i)``, summed over all window
    pixels of all windows and divided by ``K = S^2 * N`` (N windows). The paper only says "K is a
    normalization factor"; S^2 N is the author's (mean over the window, then over instances).

    * ``M_c`` is read at the window pixels with :func:`~cks.windows.gather_windows`; off-image pixels
      read 0, so ``m_i`` is pushed to 0 outside the image (author's zero padding).
    * ``sum_j m_j`` is a scatter-add of all windows, read back at every window pixel. The canvas is
      padded by S on each side (as the author's), so windows also overlap where they hang off the image.
    * ``M_c`` enters DETACHED: the collaborator gets no gradient from ``L_S``.

    Args:
        seg_logits: ``[K, S, S]``. seg_batch ``[K]``, seg_origin ``[K, 2]``. m_c: ``[B, H, W]`` = M_c.
        shape: (B, H, W).
        variant: ``"linear"`` (paper, Eq. 8) or ``"entropy"`` (Table V "principal entropy"): the first
            part is replaced by the BCE of ``m_i`` against ``1[M_c >= 0.5]``; the overlap term is kept.
        overlap: ``"soft"`` (paper): ``m_i sum_{j != i} m_j``; ``"softplus"`` (author's warm-up):
            ``m_i sum_{j != i} softplus(l(m_j))`` = ``m_i sum_{j != i} -log(1 - m_j)``.
        owner: ``[K, S, S]`` in {0, 1} or None (paper). Given (``loss.consistency_principal = "geodesic"``, ours),
            window i's target is ``M_c * owner_i`` instead of ``M_c``, owner_i = 0 on the foreground of the other
            cells (:func:`cks.losses.geodesic.owner_windows`); the first part is then linear as in Eq. 8.
    Returns:
        scalar (0 with no windows, still attached to ``seg_logits``).
    """
    k, s = seg_logits.shape[0], seg_logits.shape[-1]
    if k == 0:
        return seg_logits.sum() * 0.0
    b, h, w = shape
    m = torch.sigmoid(seg_logits)
    mc = gather_windows(m_c.detach().to(m.dtype), seg_batch, seg_origin, s)  # [K, S, S], off-image 0
    if owner is not None:
        mc = mc * owner.detach().to(m.dtype)

    if variant in ("linear", "geodesic"):
        first = (1.0 - mc) * m + mc * (1.0 - m)
    elif variant == "entropy":
        first = F.binary_cross_entropy_with_logits(seg_logits, (mc >= 0.5).to(m.dtype), reduction="none")
    else:
        raise CksConfigError(f"loss.consistency_principal must be 'linear', 'entropy' or 'geodesic', got {variant!r}")

    if overlap == "soft":
        v = m
    elif overlap == "softplus":
        v = F.softplus(seg_logits)
    else:
        raise CksConfigError(f"loss.overlap must be 'soft' or 'softplus', got {overlap!r}")
    # padded canvas: every window pixel (origin in (-S, H)) lands inside (B, H + 2S, W + 2S)
    padded = (b, h + 2 * s, w + 2 * s)
    origin_p = seg_origin + s
    total = scatter_windows(v, seg_batch, origin_p, padded, reduce="sum")
    _, on_canvas = window_index(seg_batch, origin_p, s, padded[1:])  # False only for windows far off-image
    others = torch.where(on_canvas, gather_windows(total, seg_batch, origin_p, s) - v, torch.zeros_like(v))
    second = m * others

    return (first + second).sum() / (s * s * k)


__all__ = [
    "prior_logits", "principal_foreground", "linear_consistency", "collaborator_linear_loss",
    "collaborator_entropy_loss", "collaborator_soft_entropy_loss", "instance_consistency_loss",
]

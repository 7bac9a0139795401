"""The CKS objective (Sec. III-E): all knowledge-sharing terms in one differentiable sum.

The paper writes two objectives, Eq. 7 (L_pr) for the principal and Eq. 8 (L_co) for the collaborator:

    L_pr = lambda_det L_det + lambda_s L_S + lambda_B L_B + lambda_MC L_MC
    L_co = lambda_M L_M + lambda_B L_B

Like the author, we train both models with ONE optimiser on one summed objective

    total = lambda_s L_S + lambda_mc L_MC + lambda_m L_M + lambda_b L_B     (+ lambda_det L_det, added by the trainer)

and enforce who learns from what by detaching:

* ``L_M``: its target ``M_p`` is detached -> collaborator only (the principal never learns from L_M);
* ``L_S``: ``M_c`` is detached -> principal only;
* ``L_MC``: a function of the principal's windows only -> principal only;
* ``L_B``: nothing detached -> both models. It enters ``total`` ONCE; since the two models' parameters
  are disjoint, the gradient of ``total`` w.r.t. each model's parameters is exactly that of its own
  objective (Eq. 7 (L_pr) / Eq. 8 (L_co)).
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

import torch
from torch import Tensor

from ..config import LossConfig
from ..errors import CksConfigError
from .border import border_loss, principal_border
from .collapse import collapse_hinge_loss, collapse_loss, hinge_floor, spacing_ratio
from .geodesic import geodesic_partition, geodesic_prior_radius, owner_windows
from .pairwise import pair_weights, pairwise_loss, window_pairwise_loss
from ..windows import scatter_windows
from .consistency import (collaborator_entropy_loss, collaborator_linear_loss, collaborator_soft_entropy_loss,
                          instance_consistency_loss, principal_foreground)


#: L_M variants by ``loss.consistency_collaborator``: Eq. 6 (paper), L_CE of Eq. 5 (Table V), BCE against the soft M_p (ours)
COLLABORATOR_LOSSES = {"linear": collaborator_linear_loss, "entropy": collaborator_entropy_loss,
                       "soft_entropy": collaborator_soft_entropy_loss}


def prior_d_per_window(cell_type: Tensor | None, seg_batch: Tensor, d_table: Sequence[float] | Tensor) -> Tensor:
    """The prior width d of Eq. 4 for every window: ``d_table[cell_type[seg_batch]]``.

    Args:
        cell_type: ``[B]`` long cell-type index per image, or None (type 0 everywhere).
        seg_batch: ``[K]`` image of each window. d_table: one d per cell type (a single entry is used for
            every type: the paper's constant d, Table VI).
    Returns:
        ``[K]`` float. Raises :class:`CksConfigError` if a cell type has no entry in the table.
    """
    device = seg_batch.device
    table = torch.as_tensor(d_table, dtype=torch.float32, device=device).reshape(-1)
    if table.numel() == 0:
        raise CksConfigError("loss.prior_d is empty; give one d (e.g. 20) or one per cell type")
    if table.numel() == 1 or cell_type is None:  # one d for every type (or no types given)
        return table[0].expand(seg_batch.shape[0]).clone()
    types = cell_type.to(device=device, dtype=torch.long)[seg_batch]
    if types.numel() and (int(types.max()) >= table.numel() or int(types.min()) < 0):
        raise CksConfigError(
            f"cell type {int(types.max())} has no prior width: loss.prior_d has {table.numel()} entries "
            f"{tuple(table.tolist())}; give one d per cell type or a single d for all")
    return table[types]


#: the author's warm-up prior width (sigma 100 px for ~32 px cells), as a multiple of the cell diameter
WARMUP_D_REL = 100.0 / 32.0


def effective_prior_d(cfg) -> tuple[float, ...]:
    """The prior width d of Eq. 4 in px (per cell type) for a full :class:`~cks.config.Config`.

    Size-relative (default): ``loss.prior_d_rel * size.diameter`` (0.4 x 32 = 12.8 px: the author's
    LIVECell widths, 10-15 px at ~35 px cells, are 0.3-0.45 cell diameters). Absolute (the paper's form,
    ``loss.prior_d_rel = ()``): ``loss.prior_d``.
    """
    lc = cfg.loss
    if lc.prior_d_rel:
        return tuple(float(r) * float(cfg.size.diameter) for r in lc.prior_d_rel)
    return tuple(float(d) for d in lc.prior_d)


def effective_collapse_delta(cfg, late: bool = False) -> float:
    """delta of Eq. 6 (L_MC) for a full config; with ``loss.collapse_min_area = f > 0`` it follows the cell size.

    Per window pixel, L_S pulls ``m_i`` down (where ``M_c = 0``) with gradient ``1 / (S^2 n)`` and L_MC pushes
    it up with ``e delta / (S^2 n) * (a / S^2)^-(e+1)`` (a = sum of m_i, e = exponent; see
    :mod:`cks.losses.collapse`). The push wins for masks smaller than ``a_min = S^2 (e delta)^(1/(e+1))``.
    We set ``a_min = f * pi D^2 / 4`` (f of the target cell area, D = ``size.diameter``), i.e.
    ``delta = (a_min / S^2)^(e+1) / e``: the collapse guard acts on masks below f of a cell whatever the
    scale, and a cell-sized mask feels ``f^(e+1)`` of the L_S pull (1/9 at f = 1/3, e = 1). With f = 0 the
    paper's absolute ``collapse_delta`` is used (a_min = 920 px at e = 1, 270 px at e = 0.5, S = 96).
    ``late=True`` (after ``loss.prior_until`` of the run): f = ``loss.collapse_min_area_after`` where that is > 0.
    """
    lc = cfg.loss
    if lc.collapse_min_area <= 0:
        return float(lc.collapse_delta)
    f = lc.collapse_min_area_after if late and lc.collapse_min_area_after > 0 else lc.collapse_min_area
    s2 = float(cfg.segmentor.window) ** 2
    a_min = float(f) * math.pi * float(cfg.size.diameter) ** 2 / 4.0
    e = float(lc.collapse_exponent)
    return (a_min / s2) ** (e + 1.0) / e


def effective_loss_config(cfg, warmup: bool = False, spacing: bool = True, prior: bool = True):
    """``cfg.loss`` with every size-relative setting turned into px (what :func:`cks_loss_terms` reads).

    ``warmup``: the author's warm-up (diff #11): prior d = 100 px for ~32 px cells (``WARMUP_D_REL`` cell
    diameters when the prior is size-relative), pi = 1, the softplus overlap term of L_S, no ``prior_spacing``.
    ``spacing_diameter`` is set to ``size.diameter`` (what ``collapse_spacing`` / ``prior_spacing`` compare with);
    ``spacing=False`` switches both off (before ``loss.spacing_from`` of the run, :func:`cks.schedule.spacing_start`).
    ``prior=False``: pi = ``loss.prior_scale_after`` (default 0: no prior in M_p) after ``loss.prior_until`` of the
    run (:func:`cks.schedule.prior_end`), the L_MC floor ``loss.collapse_min_area_after`` where that is set, and
    L_M's target back to the principal's ``M_p`` (``collaborator_target = "principal"``).
    """
    lc = replace(cfg.loss, prior_d=effective_prior_d(cfg), prior_d_rel=(),
                 collapse_delta=effective_collapse_delta(cfg, late=not prior),
                 collapse_min_area=0.0, collapse_min_area_after=0.0, spacing_diameter=float(cfg.size.diameter))
    if not spacing:
        lc = replace(lc, collapse_spacing=0.0, prior_spacing=0.0)
    if not prior:  # the prior's phase is over: no prior (or prior_scale_after), L_M follows M_p again
        lc = replace(lc, prior_scale=float(cfg.loss.prior_scale_after), collaborator_target="principal")
    if warmup:
        d = WARMUP_D_REL * float(cfg.size.diameter) if cfg.loss.prior_d_rel else 100.0
        lc = replace(lc, prior_d=(d,), prior_scale=1.0, overlap="softplus", prior_spacing=0.0)  # a wide prior for all
    return lc


def prior_radius(cfg: LossConfig, image: Tensor | None, seg: dict[str, Tensor]) -> Tensor | None:
    """The per-pixel distance ``r`` of the prior (Eq. 4) in every window, or None for the paper's Euclidean one.

    ``cfg.prior_shape = "geodesic"`` (ours, issue #9): the distance along the image through dark pixels
    (:func:`cks.losses.geodesic.geodesic_prior_radius`, cost ``1 + prior_geodesic_beta * max(0, z)``), rescaled so that
    a disk of half the target cell diameter (``cfg.spacing_diameter / 2``) keeps its area. Needs ``image
    [B, C, H, W]``; ``seg`` as for :func:`cks_loss_terms`. Returns ``[K, S, S]`` or None (``"disk"``, or no prior).
    """
    if cfg.prior_shape not in ("disk", "geodesic"):
        raise CksConfigError(f"loss.prior_shape must be 'disk' (paper) or 'geodesic', got {cfg.prior_shape!r}")
    if cfg.prior_shape == "disk" or cfg.prior_scale == 0:
        return None
    if cfg.prior_center != "point":
        raise CksConfigError("loss.prior_shape='geodesic' measures r from each cell's point; it cannot be combined "
                             f"with loss.prior_center={cfg.prior_center!r}")
    if image is None:
        raise CksConfigError("loss.prior_shape='geodesic' needs the image: pass image=[B, C, H, W]")
    return geodesic_prior_radius(image, seg["batch"], seg["origin"], seg["points"], seg["logits"].shape[-1],
                                 0.5 * float(cfg.spacing_diameter), cfg.prior_geodesic_beta)


def geodesic_target(cfg: LossConfig, image: Tensor | None, seg: dict[str, Tensor], shape: tuple[int, int, int]) -> Tensor:
    """L_M's target with ``cfg.collaborator_target = "geodesic"`` (ours, issue #9; not in the paper).

    In place of ``M_p`` (Eq. 4), the union over the cells of the region geodesically nearest each point
    (:func:`cks.losses.geodesic.geodesic_prior_radius` with ``cfg.prior_geodesic_beta``): the pixels within half the
    target cell diameter (``cfg.spacing_diameter / 2``) along the image, as many as a disk of that radius has. It is
    1 there and 0 elsewhere, so the collaborator learns background between the cells as well as a cell-sized,
    image-shaped foreground around each point; the paper's prior (>= 0) leaves ``M_p >= 0.5`` over every window
    while the principal's logits are near 0. The same regions, without learning, are the baseline
    :func:`cks.baselines.geodesic_disks`.

    Args: cfg (px, :func:`effective_loss_config`); image ``[B, C, H, W]``; seg as for :func:`cks_loss_terms`;
        shape (B, H, W). Returns: ``[B, H, W]`` float in {0, 1}, detached (built from labels and the image).
    """
    if image is None:
        raise CksConfigError("loss.collaborator_target='geodesic' needs the image: pass image=[B, C, H, W]")
    radius = 0.5 * float(cfg.spacing_diameter)
    with torch.no_grad():
        r = geodesic_prior_radius(image, seg["batch"], seg["origin"], seg["points"], seg["logits"].shape[-1],
                                  radius, cfg.prior_geodesic_beta)
        inside = (r < radius).to(seg["logits"].dtype)
        return scatter_windows(inside, seg["batch"], seg["origin"], shape, reduce="amax")


def lm_target(cfg: LossConfig, seg: dict[str, Tensor], shape: tuple[int, int, int], d: Tensor,
              image: Tensor | None = None) -> Tensor:
    """What L_M pulls the collaborator's ``M_c`` toward: the principal's ``M_p`` (Eq. 4, detached; the paper) or,
    with ``cfg.collaborator_target = "geodesic"``, the image's regions (:func:`geodesic_target`).

    Args: cfg (px, :func:`effective_loss_config`); seg as for :func:`cks_loss_terms`; shape (B, H, W); d ``[K]`` the
        prior widths of Eq. 4 (:func:`prior_d_per_window`); image ``[B, C, H, W]`` (needed for the geodesic shapes).
    Returns: ``[B, H, W]`` in [0, 1].
    """
    if cfg.collaborator_target == "geodesic":
        return geodesic_target(cfg, image, seg, shape)
    if cfg.collaborator_target != "principal":
        raise CksConfigError(f"loss.collaborator_target must be 'principal' (paper) or 'geodesic', "
                             f"got {cfg.collaborator_target!r}")
    return principal_foreground(seg["logits"], seg["batch"], seg["origin"], seg["points"], shape, d, cfg.prior_scale,
                                cfg.prior_center, cfg.force_point_foreground, cfg.prior_zero,
                                prior_radius(cfg, image, seg))


def cks_loss_terms(seg: dict[str, Tensor], collab: dict[str, Tensor], shape: tuple[int, int, int],
                   cell_type: Tensor | None, d_table: Sequence[float] | Tensor | None = None,
                   cfg: LossConfig = LossConfig(), foreground: Tensor | None = None,
                   image: Tensor | None = None) -> dict[str, Tensor]:
    """Compute L_S (Eq. 8), L_M (Eq. 6 (L_M), or L_CE, Eq. 5), L_B (Eq. 10), L_MC (Eq. 6 (L_MC)) and their sum.

    Args:
        seg: the principal's windows, ``logits [K, S, S]``, ``batch [K]``, ``origin [K, 2]``,
            ``points [K, 2]`` (float y, x).
        collab: the collaborator's ``fg_logits [B, H, W]`` and ``border_logits [B, H, W]``.
        shape: (B, H, W) of the images.
        cell_type: ``[B]`` long (or None): selects d per window.
        d_table: prior widths per cell type; None = ``cfg.prior_d`` (pass another table, e.g. the
            author's warm-up d = 100, without rebuilding the config).
        foreground: ``[B, H, W]`` in [0, 1] or None: what L_S pulls the masks toward in place of the collaborator's
            ``M_c`` (``loss.foreground_from = "masks"``: the true foreground, a diagnostic of the principal's side).
            L_M and L_B still train the collaborator.
        image: ``[B, C, H, W]`` what the collaborator sees; needed only with ``cfg.pairwise_weight > 0`` or
            ``cfg.prior_shape = "geodesic"`` (:func:`prior_radius`) or ``cfg.collaborator_target = "geodesic"``
            (:func:`geodesic_target`)
            (ours: ``L_PW`` of :mod:`cks.losses.pairwise` on ``cfg.pairwise_on``: the collaborator's ``M_c``, the
            principal's windows or both (the sum); returned and added to ``total`` only then).
        cfg: :class:`~cks.config.LossConfig` in px (:func:`effective_loss_config` of the full config; prior_scale, prior_center, force_point_foreground,
            consistency_principal / _collaborator, overlap, border_magnitude, border_loss_factor,
            collapse_delta / _exponent / _form / _hinge_weight / _spacing / _diameter, lambda_s / _m / _b / _mc).
    Returns:
        dict of scalars: ``L_S``, ``L_M``, ``L_B``, ``L_MC`` (unweighted) and
        ``total = lambda_s L_S + lambda_mc L_MC + lambda_m L_M + lambda_b L_B`` (``+ pairwise_weight L_PW``).
    """
    if cfg.mode != "cks":
        raise CksConfigError(f"cks_loss_terms is for loss.mode='cks', got {cfg.mode!r}; "
                             "use cks.losses.supervised_loss for 'supervised'")
    logits, batch, origin, points = seg["logits"], seg["batch"], seg["origin"], seg["points"]
    fg_logits, border_logits = collab["fg_logits"], collab["border_logits"]
    d = prior_d_per_window(cell_type, batch, cfg.prior_d if d_table is None else d_table)
    if cfg.prior_spacing > 0:  # ours (issue #9): a narrower prior for a point whose neighbours are close
        d = d * spacing_ratio(points, batch, cfg.prior_spacing, cfg.spacing_diameter)

    # L_M: collaborator follows the principal (M_p is detached inside principal_foreground), or the image's regions
    m_p = lm_target(cfg, seg, shape, d, image)
    if cfg.consistency_collaborator not in COLLABORATOR_LOSSES:
        raise CksConfigError(f"loss.consistency_collaborator must be one of {sorted(COLLABORATOR_LOSSES)}, "
                             f"got {cfg.consistency_collaborator!r}")
    l_m = COLLABORATOR_LOSSES[cfg.consistency_collaborator](fg_logits, m_p)

    # L_S: principal follows the collaborator (M_c detached inside), or a given foreground
    if foreground is not None and tuple(foreground.shape) != tuple(fg_logits.shape):
        raise CksConfigError(f"foreground must have the collaborator's shape {tuple(fg_logits.shape)}, "
                             f"got {tuple(foreground.shape)}")
    m_c = torch.sigmoid(fg_logits.detach()) if foreground is None else foreground.detach().to(fg_logits.dtype)
    owner = None
    if cfg.consistency_principal == "geodesic":  # ours (issue #9): each window's share of the foreground
        reach = max(1, round(cfg.geodesic_reach * cfg.spacing_diameter))
        labels = geodesic_partition(m_c >= 0.5, points, batch, reach)
        owner = owner_windows(labels, batch, origin, logits.shape[-1])
    l_s = instance_consistency_loss(logits, batch, origin, m_c, shape, cfg.consistency_principal, cfg.overlap, owner)

    # L_B: both models
    b_p = principal_border(logits, batch, origin, shape, cfg.border_magnitude)
    l_b = border_loss(border_logits, b_p, cfg.border_loss_factor)

    # L_MC: principal only; with collapse_spacing, each window's minimum area follows its point's spacing
    delta = cfg.collapse_delta
    if cfg.collapse_spacing > 0:
        r = spacing_ratio(points, batch, cfg.collapse_spacing, cfg.spacing_diameter)
        delta = delta * r.pow(2.0 * (cfg.collapse_exponent + 1.0))
    if cfg.collapse_form == "hinge":  # ours: the same minimum area, no push above it
        l_mc = collapse_hinge_loss(logits, batch, origin, shape, hinge_floor(delta, cfg.collapse_exponent),
                                   cfg.collapse_hinge_weight)
    elif cfg.collapse_form == "power":
        l_mc = collapse_loss(logits, batch, origin, shape, delta, cfg.collapse_exponent)
    else:
        raise CksConfigError(f"loss.collapse_form must be 'power' or 'hinge', got {cfg.collapse_form!r}")

    total = cfg.lambda_s * l_s + cfg.lambda_mc * l_mc + cfg.lambda_m * l_m + cfg.lambda_b * l_b
    out = {"L_S": l_s, "L_M": l_m, "L_B": l_b, "L_MC": l_mc}
    if cfg.pairwise_weight > 0:  # ours (issue #9): the collaborator's edges follow the image's
        if image is None:
            raise CksConfigError("loss.pairwise_weight > 0 needs the image: pass image=[B, C, H, W] to cks_loss_terms")
        if cfg.pairwise_on not in ("collaborator", "principal", "both"):
            raise CksConfigError(f"loss.pairwise_on must be collaborator, principal or both, got {cfg.pairwise_on!r}")
        l_pw = fg_logits.new_zeros(())
        # "both": the image's pair weights once, indexed by each pair's first pixel, for M_c and the windows
        full = pair_weights(image, cfg.pairwise_theta, cfg.pairwise_dilation, full=True) if cfg.pairwise_on == "both" else None
        if cfg.pairwise_on in ("collaborator", "both"):
            l_pw = l_pw + pairwise_loss(fg_logits, image, cfg.pairwise_theta, cfg.pairwise_dilation, full)
        if cfg.pairwise_on in ("principal", "both"):
            l_pw = l_pw + window_pairwise_loss(logits, batch, origin, image, cfg.pairwise_theta, cfg.pairwise_dilation, full)
        out["L_PW"] = l_pw
        total = total + cfg.pairwise_weight * out["L_PW"]
    out["total"] = total
    return out


__all__ = ["prior_d_per_window", "prior_radius", "geodesic_target", "lm_target", "cks_loss_terms", "effective_prior_d", "effective_collapse_delta",
           "effective_loss_config", "WARMUP_D_REL"]

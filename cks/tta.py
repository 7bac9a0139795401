"""Test-time augmentation of the segmentation head's windows (ours; not in the paper or the author's code).

Every model is trained on images flipped and transposed at random (:func:`cks.data.augment.apply_d4`, the
dihedral group D4 of the square), so it should draw the same cell whichever way up the image is shown.
It does so only roughly; averaging the masks drawn in several orientations smooths that out, a common
trick for segmentation networks. :func:`augmented_window_logits` keeps the detections of the image as it
is (points and scores do not change; only a cell whose mask becomes empty, or stops being empty, after the
masks are pasted can be dropped or kept where it was not) and, for each other orientation ``g``:

1. pads the tile to a multiple of 32 px (the backbone's stride, so the stride-4 feature grid maps onto
   itself under ``g``) and shows ``g(image)`` to the principal model;
2. asks its segmentation head for the window of every detection at ``g(point)`` (the head takes any
   location: the learned location encoding of Eq. 12 is computed at the point given);
3. maps each ``[S, S]`` window back with ``g^-1`` and aligns it with the original window. A window is not
   symmetric about its point (it starts ``S / 2`` px before the point's feature cell and ends ``S / 2 - 4``
   after it), so the mapped-back window may sit one feature cell (4 px) off; pixels outside the
   original window are dropped, pixels it lacks keep the orientations that cover them.

The window probabilities (sigmoid of the logits) are averaged over the orientations that cover each pixel
and returned as logits, so thresholding at ``mask_threshold`` works as before. Cost: one more backbone pass
per orientation (``len(transforms)`` passes in all). Measured on the Usiigaci tuning fields (issue #9 session 44,
``benchmarks/tta.py``, ``results/usiigaci_points_v2/tta_tuning.json``): a supervised model's Dice +0.004 and AP50
+0.014 with ``"flips"`` (+0.0045 / +0.022 with ``"d4"``), a CKS model's nothing (Dice -0.0003, AP50 -0.015 with ``"flips"``, -0.012
with ``"d4"``); the models already draw nearly the same mask in every orientation. Nothing runs on import.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["TTA_CHOICES", "transforms_for", "augmented_window_logits"]

#: the orientations of each ``tta`` choice as ``(flip_ud, flip_lr, transpose)``; the identity comes first
TTA_CHOICES = {
    "none": ((False, False, False),),
    "flips": ((False, False, False), (True, False, False), (False, True, False), (True, True, False)),
    "d4": tuple((ud, lr, t) for t in (False, True) for ud in (False, True) for lr in (False, True)),
}


def transforms_for(tta) -> tuple[tuple[bool, bool, bool], ...]:
    """The orientations of ``tta``: ``False``/``None``/``"none"``, ``True``/``"flips"`` or ``"d4"``."""
    if tta is None or tta is False:
        tta = "none"
    elif tta is True:
        tta = "flips"
    if not isinstance(tta, str) or tta not in TTA_CHOICES:
        from .errors import CksConfigError

        raise CksConfigError(f"tta must be one of {', '.join(map(repr, TTA_CHOICES))} (or True = 'flips'), got {tta!r}")
    return TTA_CHOICES[tta]


def _apply(x: Tensor, g) -> Tensor:
    """``g`` applied to ``[..., H, W]``: the flips, then the transpose (as :func:`cks.data.augment.apply_d4`)."""
    ud, lr, t = g
    dims = [d for d, on in ((-2, ud), (-1, lr)) if on]
    if dims:
        x = x.flip(dims)
    return x.transpose(-2, -1) if t else x


def _apply_points(pts: Tensor, g, hw: tuple[int, int]) -> Tensor:
    """``g`` applied to ``[K, 2]`` (y, x) pixel-centre coordinates of an ``hw`` image."""
    ud, lr, t = g
    y, x = pts[:, 0], pts[:, 1]
    y = (hw[0] - 1) - y if ud else y
    x = (hw[1] - 1) - x if lr else x
    return torch.stack([x, y], 1) if t else torch.stack([y, x], 1)


def _back(win: Tensor, org: Tensor, g, hw: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Windows ``[K, S, S]`` with top-left ``org [K, 2]`` in ``g``'s frame -> the image's frame (``hw`` padded)."""
    ud, lr, t = g
    s = win.shape[-1]
    if t:  # undo the transpose first (it was applied last)
        win, org = win.transpose(-2, -1), org.flip(1)
    oy, ox = org[:, 0], org[:, 1]
    if ud:
        win, oy = win.flip(-2), hw[0] - s - oy
    if lr:
        win, ox = win.flip(-1), hw[1] - s - ox
    return win, torch.stack([oy, ox], 1)


def _shift(win: Tensor, d: Tensor) -> tuple[Tensor, Tensor]:
    """``out[k, i, j] = win[k, i - d[k, 0], j - d[k, 1]]`` where that lies inside, and where it does."""
    k, s = win.shape[0], win.shape[-1]
    ar = torch.arange(s, device=win.device)
    ii, jj = ar[None] - d[:, :1], ar[None] - d[:, 1:]  # [K, S] each
    ok = ((ii >= 0) & (ii < s))[:, :, None] & ((jj >= 0) & (jj < s))[:, None, :]
    kk = torch.arange(k, device=win.device)[:, None, None]
    out = win[kk, ii.clamp(0, s - 1)[:, :, None], jj.clamp(0, s - 1)[:, None, :]]
    return out, ok


@torch.no_grad()
def augmented_window_logits(model, x: Tensor, points: Tensor, logits: Tensor, origin: Tensor,
                            transforms) -> Tensor:
    """The windows of ``points`` averaged over the orientations ``transforms`` (see the module docstring).

    Args:
        model: a :class:`cks.models.Principal` in eval mode (its :meth:`~cks.models.Principal.windows_at`).
        x: the normalised tile ``[C, H, W]`` the detections were found on.
        points: ``[K, 2]`` (y, x) detections on ``x``; ``logits [K, S, S]`` and ``origin [K, 2]`` (long):
            their windows as the model drew them on ``x`` (the identity orientation).
        transforms: ``(flip_ud, flip_lr, transpose)`` triples, e.g. :func:`transforms_for` ``("flips")``;
            the identity is skipped (``logits`` is it).
    Returns:
        ``[K, S, S]`` logits: the log-odds of the mean probability over the orientations covering each pixel.
    """
    others = [g for g in transforms if any(g)]
    if not others or points.shape[0] == 0:
        return logits
    h, w = x.shape[-2:]
    xp = F.pad(x, (0, (32 - w % 32) % 32, 0, (32 - h % 32) % 32))  # zeros: the normalised image mean
    hw = tuple(xp.shape[-2:])
    total, count = torch.sigmoid(logits.float()), torch.ones_like(logits, dtype=torch.float32)
    for g in others:  # a few orientations, each one pass over all cells
        win, org = model.windows_at(_apply(xp, g)[None], _apply_points(points.float(), g, hw))
        win, org = _back(win, org, g, hw)
        win, ok = _shift(torch.sigmoid(win.float()), org - origin)
        total += win * ok
        count += ok
    p = (total / count).clamp(1e-6, 1 - 1e-6)
    return torch.log(p) - torch.log1p(-p)

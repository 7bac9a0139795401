"""Where does a mask's edge sit on the image? Mean intensity against the signed distance to the edge (issue #9).

In phase contrast a bright halo hugs every cell just outside its annotated outline. Averaged over all cells of a
data set, the image intensity as a function of the signed distance to the mask boundary (outward positive) shows
where a set of masks puts its edges: for the annotated masks of the Usiigaci tuning fields the intensity is low
inside, rises across the boundary and peaks 1 px outside it (the halo), then falls to the background within ~5
px; for CKS masks the same halo peak lies 3-4 px *inside* the boundary, i.e. the masks end where the halo ends.
A constant band of that kind is what the diagnostics' signed boundary offset measures per cell; this profile
says what the band is made of.

Functions take label images at native resolution and report distances in px at the training scale
(``scale`` = the model's resize factor), as :func:`cks.diagnose.shape_diagnostics` does.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from .errors import CksDataError

__all__ = ["signed_distance", "normalised_intensity", "map_profile", "boundary_profile", "edge_cost_profile"]


def signed_distance(foreground: np.ndarray) -> np.ndarray:
    """Euclidean distance to the boundary of ``foreground [H, W]`` (bool): negative inside, positive outside.

    A pixel next to the boundary is at -1 (inside) or +1 (outside); 0 never occurs. An empty or full foreground
    has no boundary: every pixel is +inf or -inf.
    """
    fg = np.asarray(foreground, bool)
    if not fg.any():
        return np.full(fg.shape, np.inf)
    if fg.all():
        return np.full(fg.shape, -np.inf)
    return np.where(fg, -ndimage.distance_transform_edt(fg), ndimage.distance_transform_edt(~fg))


def normalised_intensity(image) -> np.ndarray:
    """First channel of ``image`` ([H, W] or [C, H, W]) minus its median, divided by its standard deviation."""
    x = np.asarray(image, np.float64)
    if x.ndim == 3:
        x = x[0]
    if x.ndim != 2 or x.size == 0:
        raise CksDataError(f"boundary_profile: expected an [H, W] or [C, H, W] image, got shape {np.shape(image)}")
    sd = x.std()
    return (x - np.median(x)) / (sd if sd > 0 else 1.0)


def map_profile(maps, labels, scale=1.0, max_distance: int = 8) -> dict:
    """Mean of per-pixel ``maps`` per 1-px bin of signed distance to the foreground boundary of ``labels``.

    Args:
        maps: list of ``[H, W]`` float arrays (e.g. a normalised image, or the collaborator's ``M_c``).
        labels: list of label images (``> 0`` is foreground) of the same sizes. scale: px at the training scale
            per native px (distances are multiplied by it before binning), one for all maps or one per map.
            max_distance: bins ``-max .. -1`` (inside) and ``1 .. max`` (outside).
    Returns:
        ``{"distance": [-max, ..., -1, 1, ..., max], "mean": [...], "count": [...]}`` over all maps (NaN for an
        empty bin).
    """
    if len(maps) != len(labels):
        raise CksDataError(f"boundary profile: {len(maps)} maps but {len(labels)} label images")
    scales = list(scale) if isinstance(scale, (list, tuple, np.ndarray)) else [scale] * len(maps)
    if len(scales) != len(maps):
        raise CksDataError(f"boundary profile: {len(scales)} scales for {len(maps)} maps")
    dist = [d for d in range(-max_distance, max_distance + 1) if d != 0]
    total = np.zeros(len(dist))
    count = np.zeros(len(dist), np.int64)
    for x, lab, sc in zip(maps, labels, scales):
        x = np.asarray(x, np.float64)
        if np.shape(lab) != x.shape:
            raise CksDataError(f"boundary profile: label image {np.shape(lab)} does not match map {x.shape}")
        sd = signed_distance(np.asarray(lab) > 0) * float(sc)
        ok = np.isfinite(sd)
        b = np.where(sd > 0, np.ceil(sd - 0.5), np.floor(sd + 0.5))[ok].astype(np.int64)  # round half away from 0
        b = np.where(b == 0, np.sign(sd[ok]).astype(np.int64), b)  # |sd| < 0.5 (downscaled): the first bin
        keep = np.abs(b) <= max_distance
        idx = np.where(b[keep] < 0, b[keep] + max_distance, b[keep] + max_distance - 1)
        total += np.bincount(idx, weights=x[ok][keep], minlength=len(dist))
        count += np.bincount(idx, minlength=len(dist))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return {"distance": dist, "mean": [float(v) for v in mean], "count": [int(c) for c in count]}


def boundary_profile(images, labels, scale: float = 1.0, max_distance: int = 8) -> dict:
    """Mean normalised intensity per 1-px bin of signed distance to the foreground boundary of ``labels``.

    Args:
        images: list of ``[H, W]`` / ``[C, H, W]`` arrays. labels, scale, max_distance: as :func:`map_profile`.
    Returns:
        as :func:`map_profile`, with intensities per image by :func:`normalised_intensity`.
    """
    if len(images) != len(labels):
        raise CksDataError(f"boundary_profile: {len(images)} images but {len(labels)} label images")
    return map_profile([normalised_intensity(img) for img in images], labels, scale, max_distance)


def _to_scale(image: np.ndarray, label: np.ndarray, scale: float):
    """``image [C, H, W]`` and the foreground of ``label [H, W]`` resized by ``scale`` as training resizes a sample
    (:func:`cks.data.readers.rescale_sample`: image bilinear, antialiased when shrinking; labels nearest at pixel
    centres)."""
    from .data.readers import resize_image, resize_label

    h, w = label.shape
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        return image, label > 0
    return resize_image(image, size), resize_label(label > 0, size)


def edge_cost_profile(images, labels, scale=1.0, theta: float = 0.3, dilation: int = 1,
                      offsets=range(-3, 7)) -> dict:
    """What the image-affinity term ``L_PW`` charges for a foreground edge moved ``k`` px off the annotated outline.

    For each image (resized by ``scale`` to the training scale, where ``L_PW`` acts, as training resizes it) the
    foreground ``F = labels > 0`` is grown (``k > 0``) or shrunk (``k < 0``) along the signed distance ``d`` of
    :func:`signed_distance` shifted by half a pixel (``s = d - sign(d) / 2``: the outline at 0), ``F_k = {s < k}``
    (``F_0 = F``; ``F_1`` is ``F`` grown by a 3 x 3 square). Every pixel pair of
    :func:`cks.losses.pairwise.pair_offsets` with one pixel in ``F_k`` and one outside is an edge pair; its weight
    ``w_ij = exp(-max_c |I_i - I_j| / theta)`` (:func:`cks.losses.pairwise.pair_weights`) is what ``L_PW`` charges
    per unit of ``-log P_ij`` there. A low mean weight at ``k`` means the image has an edge there, so a mask boundary
    at ``k`` is cheap. The intensities are standardised over the whole field here, over each training crop in
    training, so ``theta`` is in slightly different units. At large ``k`` neighbouring cells' grown outlines merge:
    the mean is then over fewer, less crowded edges (``pairs``).

    Args:
        images: list of ``[H, W]`` / ``[C, H, W]`` arrays (every channel, as ``L_PW``). labels: label images of the
            same sizes. scale: training-scale px per native px, one for all or one per image. theta, dilation: as
            ``loss.pairwise_theta`` / ``loss.pairwise_dilation``. offsets: the ``k`` (px at the training scale).
    Returns:
        ``{"offset": [k...], "mean_weight": [...], "relative": [mean / mean at k = 0], "pairs": [...]}`` over all
        images (NaN where no pair crosses; ``relative`` needs ``0`` in ``offsets``).
    """
    import torch

    from .losses.pairwise import _shifted, pair_offsets, pair_weights

    if len(images) != len(labels):
        raise CksDataError(f"edge_cost_profile: {len(images)} images but {len(labels)} label images")
    scales = list(scale) if isinstance(scale, (list, tuple, np.ndarray)) else [scale] * len(images)
    if len(scales) != len(images):
        raise CksDataError(f"edge_cost_profile: {len(scales)} scales for {len(images)} images")
    ks = [int(k) for k in offsets]
    total = np.zeros(len(ks))
    count = np.zeros(len(ks), np.int64)
    for img, lab, sc in zip(images, labels, scales):
        x = np.asarray(img, np.float32)
        x = x[None] if x.ndim == 2 else x
        lab = np.asarray(lab)
        if x.ndim != 3 or x.shape[1:] != lab.shape:
            raise CksDataError(f"edge_cost_profile: label image {lab.shape} does not match image {np.shape(img)}")
        if not (np.isfinite(sc) and sc > 0):
            raise CksDataError(f"edge_cost_profile: scale must be a positive number, got {sc!r} (a field without "
                               "cells has no cell size; leave it out)")
        x, fg = _to_scale(x, lab, float(sc))
        sd = signed_distance(fg)
        s = sd - 0.5 * np.sign(sd)
        weights = pair_weights(torch.from_numpy(np.ascontiguousarray(x))[None], theta, dilation)
        for i, k in enumerate(ks):
            inside = torch.from_numpy(s < k)
            for (dy, dx), w in zip(pair_offsets(dilation), weights):
                a, b = _shifted(inside, dy, dx)
                cut = a != b
                total[i] += float(w[0][cut].sum())
                count[i] += int(cut.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    ref = mean[ks.index(0)] if 0 in ks else np.nan
    return {"offset": ks, "mean_weight": [float(v) for v in mean],
            "relative": [float(v / ref) if ref > 0 else float("nan") for v in mean], "pairs": [int(c) for c in count]}

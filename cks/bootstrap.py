"""95 % bootstrap intervals over images for AP50, AP75, mAP and Dice (Sec. IV-B-3 metrics).

The evaluated set is resampled *by image* with replacement (the image, not the cell, is the unit that
was sampled: cells of one field share its density, focus and illumination). For each resample the
pooled metrics are recomputed exactly as :func:`cks.metrics.evaluate` does (AP of Eq. 9 pooled over
the resampled images, area-weighted Dice of Eq. 15 over the same set), and the interval is the 2.5th
and 97.5th percentile of the resampled values (percentile bootstrap).

The expensive part (intersections, IoU matching per threshold, Dice sums) is done once per image by
:func:`image_terms`; a resample only concatenates per-image arrays, so 1000 resamples of a few hundred
cells take well under a second.

With very few images (5 report fields here) the interval mostly reflects how different the fields
are; it is a statement about this set of images, not about a population of labs or microscopes.
"""
from __future__ import annotations

import numpy as np

from .errors import CksDataError
from .metrics import (DEFAULT_IOU_THRESHOLDS, _check_pair, _dice_from_terms, _dice_terms, _scores_for_ids,
                      average_precision, intersections, iou_from_intersections, match_at_iou)

__all__ = ["image_terms", "metrics_from_terms", "bootstrap_intervals", "evaluate_with_intervals"]


def image_terms(pred_label, scores, gt_label, iou_thresholds=DEFAULT_IOU_THRESHOLDS) -> dict:
    """Per-image ingredients of the pooled metrics.

    Args:
        pred_label, gt_label: ``[H, W]`` integer label images. scores: ``{id: score}`` or array.
        iou_thresholds: thresholds of mAP (0.50 and 0.75 are always included).
    Returns:
        dict ``flags`` ({thr: bool [P]}), ``scores`` (float [P]), ``n_gt`` (int), ``dice`` (4 sums, see
        ``cks.metrics._dice_terms``), ``thresholds`` (the mAP thresholds).
    """
    pred_ids, gt_ids, pa, ga, inter = intersections(*_check_pair(pred_label, gt_label))
    s = _scores_for_ids(scores, pred_ids)
    iou = iou_from_intersections(pa, ga, inter)
    thrs = [float(np.round(t, 10)) for t in np.atleast_1d(iou_thresholds)]
    flags = {t: match_at_iou(iou, s, t) for t in sorted(set(thrs) | {0.5, 0.75})}
    return {"flags": flags, "scores": s, "n_gt": int(gt_ids.size), "dice": _dice_terms(pa, ga, inter),
            "thresholds": thrs}


def metrics_from_terms(terms: list[dict], index=None) -> dict:
    """AP50, AP75, mAP and Dice of the images ``terms[i]`` for ``i in index`` (repeats allowed)."""
    index = range(len(terms)) if index is None else index
    sel = [terms[i] for i in index]
    n_gt = sum(t["n_gt"] for t in sel)
    scores = [t["scores"] for t in sel]
    thrs = terms[0]["thresholds"]
    ap = {t: average_precision([x["flags"][t] for x in sel], scores, n_gt) for t in set(thrs) | {0.5, 0.75}}
    dice = _dice_from_terms(np.sum([t["dice"] for t in sel], axis=0))
    return {"ap50": ap[0.5], "ap75": ap[0.75], "map": float(np.mean([ap[t] for t in thrs])), "dice": dice}


def bootstrap_intervals(terms: list[dict], n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile-bootstrap intervals over images.

    Args:
        terms: one :func:`image_terms` dict per image of the evaluated set.
        n_boot: number of resamples. seed: RNG seed (the intervals are reproducible). level: coverage.
    Returns:
        ``{"ap50": [lo, hi], "ap75": [...], "map": [...], "dice": [...], "n_boot": n, "level": level,
        "unit": "image"}``. A resample without GT cells gives nan AP and is ignored in the percentile.
    """
    if not terms:
        raise CksDataError("bootstrap_intervals: no images to resample; evaluate at least one image")
    if n_boot < 1 or not 0 < level < 1:
        raise CksDataError(f"bootstrap_intervals: need n_boot >= 1 and 0 < level < 1, got {n_boot}, {level}")
    rng = np.random.default_rng(seed)
    n = len(terms)
    draws = rng.integers(0, n, size=(n_boot, n))
    vals = {k: [] for k in ("ap50", "ap75", "map", "dice")}
    for idx in draws:
        m = metrics_from_terms(terms, idx)
        for k in vals:
            vals[k].append(m[k])
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    out = {k: [float(x) for x in np.nanpercentile(np.asarray(v, float), q)] for k, v in vals.items()}
    out.update(n_boot=int(n_boot), level=float(level), unit="image", seed=int(seed))
    return out


def evaluate_with_intervals(pred_labels: list, pred_scores: list, gt_labels: list, n_boot: int = 1000,
                            seed: int = 0) -> dict:
    """:func:`cks.metrics.evaluate` of a list of images plus ``ci95`` (:func:`bootstrap_intervals`), with one
    pass over the images: ``ap50, ap75, map, dice, n_gt, n_pred, n_images, ci95``."""
    if not (len(pred_labels) == len(pred_scores) == len(gt_labels)):
        raise CksDataError(f"got {len(pred_labels)} predicted label images, {len(pred_scores)} score sets and "
                           f"{len(gt_labels)} ground-truth label images; give one of each per image.")
    terms = [image_terms(p, s, g) for p, s, g in zip(pred_labels, pred_scores, gt_labels)]
    return {**metrics_from_terms(terms), "n_gt": sum(t["n_gt"] for t in terms),
            "n_pred": sum(int(t["scores"].size) for t in terms), "n_images": len(terms),
            "ci95": bootstrap_intervals(terms, n_boot=n_boot, seed=seed)}

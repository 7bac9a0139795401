"""95 % bootstrap intervals over images for AP50, AP75, mAP and Dice (Sec. IV-B-3 metrics).

The evaluated set is resampled *by image* with replacement (the image, not the cell, is the unit that
was sampled: cells of one field share its density, focus and illumination). For each resample the
pooled metrics are recomputed exactly as :func:`cks.metrics.evaluate` does (AP of Eq. 9 pooled over
the resampled images, area-weighted Dice of Eq. 15 over the same set), and the interval is the 2.5th
and 97.5th percentile of the resampled values (percentile bootstrap).

The expensive part (intersections, IoU matching per threshold, Dice sums) is done once per image by
:func:`cks.metrics.image_terms`; a resample only concatenates per-image arrays, so 1000 resamples of a few hundred
cells take well under a second.

With very few images (5 report fields here) the interval mostly reflects how different the fields
are; it is a statement about this set of images, not about a population of labs or microscopes.
"""
from __future__ import annotations

import numpy as np

from .errors import CksDataError
from .metrics import image_terms, metrics_from_terms

__all__ = ["bootstrap_intervals", "evaluate_with_intervals"]


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

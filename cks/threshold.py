"""Choosing the detection score threshold on a tuning split.

``predict`` pastes masks in descending score order, the higher-scoring cell winning every overlap, so a
lower-scoring cell never takes a pixel from a higher one. Dropping every cell below ``t`` from a label
image predicted at a low threshold therefore gives exactly the label image predicted at ``t``:
one prediction pass serves every candidate threshold (:func:`apply_threshold`).

AP (Eq. 9) ranks by score and cannot rise when low-scoring detections are removed, so it cannot choose
a threshold. The count of reported cells and the F1 score at IoU 0.5 can: :func:`tune_score_threshold`
picks the threshold that maximises F1 at IoU 0.5 pooled over the tuning images (ties: the lower one).
"""
from __future__ import annotations

import numpy as np

from .metrics import intersections, iou_from_intersections, match_at_iou, _scores_for_ids

#: candidate thresholds (the detector's own floor is ``detector.min_score`` = 0.2)
DEFAULT_GRID = tuple(np.round(np.arange(0.2, 0.951, 0.05), 2))


def apply_threshold(label: np.ndarray, scores: dict[int, float], t: float) -> tuple[np.ndarray, dict[int, float]]:
    """``label`` with every cell whose score is below ``t`` set to 0 (ids kept), and the kept scores."""
    ids = np.fromiter(scores.keys(), dtype=np.int64, count=len(scores))
    sc = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    lut = np.zeros(int(max(label.max(initial=0), ids.max(initial=0))) + 1, label.dtype)
    keep = sc >= t
    lut[ids[keep]] = ids[keep]
    return lut[label], {int(i): float(s) for i, s in zip(ids[keep], sc[keep])}


def f1_at_iou(labels: list, scores: list, gts: list, iou: float = 0.5) -> dict:
    """Pooled F1 at one IoU threshold: greedy score-ordered matching as in :func:`cks.metrics.evaluate`."""
    tp = n_pred = n_gt = 0
    for lab, sc, gt in zip(labels, scores, gts):
        pred_ids, gt_ids, pa, ga, inter = intersections(lab, gt)
        s = _scores_for_ids(sc, pred_ids)
        flags = match_at_iou(iou_from_intersections(pa, ga, inter), s, iou)
        tp += int(np.sum(flags))
        n_pred += int(pred_ids.size)
        n_gt += int(gt_ids.size)
    prec = tp / n_pred if n_pred else 0.0
    rec = tp / n_gt if n_gt else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"f1": f1, "precision": prec, "recall": rec, "n_pred": n_pred, "n_gt": n_gt}


def tune_score_threshold(labels: list, scores: list, gts: list, grid=DEFAULT_GRID) -> dict:
    """The threshold in ``grid`` maximising pooled F1 at IoU 0.5 on (predicted at the grid's lowest value) labels.

    Returns ``{"threshold", "f1", "count_ratio", "table": [{threshold, f1, precision, recall, n_pred, n_gt}]}``.
    """
    table = []
    for t in grid:
        cut = [apply_threshold(lab, sc, float(t)) for lab, sc in zip(labels, scores)]
        r = f1_at_iou([c[0] for c in cut], [c[1] for c in cut], gts)
        table.append({"threshold": float(t), **r})
    best = max(table, key=lambda r: (r["f1"], -r["threshold"]))
    return {"threshold": best["threshold"], "f1": best["f1"],
            "count_ratio": best["n_pred"] / best["n_gt"] if best["n_gt"] else float("nan"), "table": table}


__all__ = ["DEFAULT_GRID", "apply_threshold", "f1_at_iou", "tune_score_threshold"]

"""Point-detection AP (the author's ``LoiAP``; the detection branch of Sec. III-A, scored as in Sec. IV-B-3).

A detection is a (y, x) point with a score. Per image, predictions in descending score order each
take the nearest still-unmatched ground-truth point if it is STRICTLY closer than the threshold
(the author's code: 1/d^2 > 1/t^2, thresholds 5, 2 and 1 px); AP is then Eq. 9 pooled over the
images (:func:`cks.metrics.average_precision`). Shapes: points ``[N, 2]`` float (y, x), scores ``[N]``.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .errors import CksDataError
from .metrics import _greedy_match, average_precision

__all__ = ["match_points", "point_ap"]


def _check_points(a, name: str) -> np.ndarray:
    a = np.asarray(a, np.float64)
    if a.size == 0:
        return a.reshape(0, 2)
    if a.ndim != 2 or a.shape[1] != 2:
        raise CksDataError(f"{name} must be an array of (y, x) points [N, 2]; got shape {a.shape}.")
    return a


def match_points(pred_points, pred_scores, gt_points, thr: float) -> np.ndarray:
    """Point-matching TP flags [N] (author's ``LoiAP``): nearest unmatched GT at distance < thr.

    Args: pred_points [N, 2] (y, x), pred_scores [N], gt_points [M, 2] (y, x), thr in pixels.
    """
    pp, gp = _check_points(pred_points, "pred_points"), _check_points(gt_points, "gt_points")
    s = np.asarray(pred_scores, np.float64).ravel()
    if s.size != pp.shape[0]:
        raise CksDataError(f"pred_scores has {s.size} entries but pred_points has {pp.shape[0]} points.")
    if pp.shape[0] == 0 or gp.shape[0] == 0:
        return np.zeros(pp.shape[0], bool)
    pairs = cKDTree(pp).sparse_distance_matrix(cKDTree(gp), float(thr), output_type="ndarray")
    keep = pairs["v"] < thr
    return _greedy_match(pp.shape[0], pairs["i"][keep], pairs["j"][keep], -pairs["v"][keep], s)


def point_ap(pred_points_list, pred_scores_list, gt_points_list, thresholds=(5.0, 2.0, 1.0)) -> dict:
    """Point-detection AP (author's ``LoiAP``) pooled over images: {threshold: AP}.

    Args:
        pred_points_list: list of [N_i, 2] (y, x) float arrays (or one array for one image).
        pred_scores_list: list of [N_i] scores.
        gt_points_list: list of [M_i, 2] (y, x) GT points.
        thresholds: distances in pixels; a match needs distance < threshold (author: 1/d² > 1/t²).
    Per image, predictions in descending score order take the nearest still-unmatched GT point;
    AP as :func:`average_precision` (nan without GT points).
    """
    pl, sl, gl = pred_points_list, pred_scores_list, gt_points_list
    if isinstance(pl, np.ndarray):  # one image
        pl, sl, gl = [pl], [sl], [gl]
    pl, sl, gl = list(pl), list(sl), list(gl)
    if not (len(pl) == len(sl) == len(gl)):
        raise CksDataError(f"got {len(pl)} prediction point sets, {len(sl)} score sets and "
                           f"{len(gl)} GT point sets; give one of each per image.")
    n_gt = sum(_check_points(g, "gt_points").shape[0] for g in gl)
    out = {}
    for t in thresholds:
        tps = [match_points(p, s, g, t) for p, s, g in zip(pl, sl, gl)]
        out[float(t)] = average_precision(tps, [np.asarray(s, np.float64).ravel() for s in sl], n_gt)
    return out

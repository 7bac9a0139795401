"""Instance-segmentation metrics of the paper (Sec. IV-B-3): ranked AP (Eq. 9), mAP and Dice (Eq. 15).

Conventions
-----------
* A label image is an integer numpy array ``[H, W]``; 0 is background and every positive value is
  one instance. Ids need not be contiguous. Instances of one label image cannot overlap.
* The scores of one predicted label image are either a mapping ``{label id: score}`` or a 1-D
  array ``scores`` with ``scores[k]`` = score of label ``k + 1``.
* Per image, instances are indexed by their sorted ids (``pred_ids[P]``, ``gt_ids[G]``); [P, G]
  matrices (intersections, IoU) are ``scipy.sparse.csr_matrix`` holding only overlapping pairs.

What is computed (paper and the author's ``lacss`` code, anchor notes section 6)
---------------------------------------------------------------------------------
* IoU = |P∩G| / (|P| + |G| - |P∩G|) from pixel counts (the author adds 1e-8 to the denominator,
  which only matters for ties at the threshold; those are "not matched" here as well).
* Matching, per image and threshold: predictions in descending score order, each is matched to the
  still-unmatched GT with the highest IoU if that IoU is STRICTLY greater than the threshold.
* AP (Eq. 9): the indicators T_k of all predictions of the evaluated set are sorted by score,
  P_k = cumsum(T)_k / k and AP = sum_k T_k P_k / C, with C the number of GT in the set; no
  smoothing of the precision-recall curve. mAP = mean AP over IoU 0.50:0.05:0.95.
* Dice (Eq. 15): each prediction's partner is the GT with the largest intersection (not IoU),
  D = 2|∩| / (|m| + |g|) (0 without overlap); symmetric for GT; area weights w = area / total area
  over ALL predictions (resp. GT) of the evaluated set; Dice = (sum_i w_i D_i + sum_j w_j D_j) / 2.
  The author evaluates Dice only on predictions with score >= 0.5 (``dice_min_score`` of
  :func:`evaluate`; default None = all predictions).
* Point AP (the author's ``LoiAP``) is in :mod:`cks.point_metrics` (re-exported here).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from .errors import CksDataError

DEFAULT_IOU_THRESHOLDS = np.arange(0.5, 0.96, 0.05)

__all__ = ["DEFAULT_IOU_THRESHOLDS", "intersections", "iou_from_intersections", "iou_matrix", "match_at_iou",
           "average_precision", "instance_dice", "evaluate",
           "match_points", "point_ap"]  # the last two from cks.point_metrics (module __getattr__)


# ----------------------------------------------------------------------------- input handling
def _check_label(a, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise CksDataError(f"{name} must be a 2-D label image [H, W]; got shape {a.shape}. "
                           "Pass one image per list element.")
    if not np.issubdtype(a.dtype, np.integer):
        raise CksDataError(f"{name} has dtype {a.dtype}; label images must be integer arrays "
                           "(0 = background, positive = instance id). Convert with .astype(np.int32).")
    if a.size and a.min() < 0:
        raise CksDataError(f"{name} contains negative labels (min {a.min()}); use 0 for background "
                           "and positive ids for instances.")
    return a


def _check_pair(pred, gt, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    pred, gt = _check_label(pred, "pred_label" + where), _check_label(gt, "gt_label" + where)
    if pred.shape != gt.shape:
        raise CksDataError(f"pred_label{where} has shape {pred.shape} but gt_label{where} has shape "
                           f"{gt.shape}; resize or crop the prediction to the ground-truth size "
                           "before evaluating.")
    return pred, gt


def _ids_areas_index(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted positive ids, their pixel counts and, for the foreground pixels of ``v``, the row index."""
    fg = v[v > 0]
    if fg.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    vmax = int(fg.max())
    if vmax <= 4 * v.size + 1024:  # small ids: counting sort via bincount
        counts = np.bincount(fg, minlength=vmax + 1)
        counts[0] = 0
        ids = np.flatnonzero(counts)
        lut = np.zeros(vmax + 1, np.int64)
        lut[ids] = np.arange(ids.size)
        return ids.astype(np.int64), counts[ids].astype(np.int64), lut[fg]
    ids, inv, counts = np.unique(fg, return_inverse=True, return_counts=True)
    return ids.astype(np.int64), counts.astype(np.int64), inv.astype(np.int64).ravel()


def _scores_for_ids(scores, ids: np.ndarray, where: str = "") -> np.ndarray:
    """Scores aligned with ``ids`` from a dict ``{id: score}`` or an array (``scores[k]`` <-> id k+1)."""
    if isinstance(scores, Mapping):
        table = {int(k): float(v) for k, v in scores.items()}
        missing = [int(i) for i in ids if int(i) not in table]
        if missing:
            raise CksDataError(f"pred_scores{where} has no score for predicted label id(s) "
                               f"{missing[:10]}{' ...' if len(missing) > 10 else ''}; add them to the dict.")
        return np.array([table[int(i)] for i in ids], np.float64)
    arr = np.asarray(scores, np.float64)
    if arr.ndim != 1:
        raise CksDataError(f"pred_scores{where} must be a dict {{id: score}} or a 1-D array (np.ones(n) "
                           f"for unranked predictions); got {scores!r:.60}.")
    if ids.size and ids[-1] > arr.size:
        missing = ids[ids > arr.size]
        raise CksDataError(f"pred_scores{where} has {arr.size} entries (labels 1..{arr.size}) but the "
                           f"prediction contains label id(s) {missing[:10].tolist()}; scores[k] must be "
                           "the score of label k+1, or pass a dict {id: score}.")
    return arr[ids - 1]


def _as_list(x, name: str) -> list:
    if isinstance(x, np.ndarray):
        return [x] if x.ndim == 2 else list(x)
    if isinstance(x, Sequence) and not isinstance(x, (str, bytes)):
        return list(x)
    raise CksDataError(f"{name} must be a 2-D label image, a 3-D stack or a list; got {type(x).__name__}.")


# ----------------------------------------------------------------------------- overlaps
def intersections(pred_label, gt_label):
    """Pixel counts of all overlapping (prediction, GT) pairs, without looping over cells.

    Args:
        pred_label, gt_label: integer label images [H, W] (same shape), 0 = background.
    Returns:
        pred_ids [P] int64 (sorted), gt_ids [G] int64 (sorted), pred_area [P], gt_area [G],
        inter: ``scipy.sparse.csr_matrix`` [P, G] int64, inter[p, g] = |pred p ∩ gt g|.
    """
    pred, gt = _check_pair(pred_label, gt_label)
    p, g = pred.ravel(), gt.ravel()
    pred_ids, pred_area, pidx = _ids_areas_index(p)
    gt_ids, gt_area, gidx = _ids_areas_index(g)
    n_p, n_g = pred_ids.size, gt_ids.size
    # pidx / gidx index the foreground pixels of p / g; keep those that are foreground in both.
    both_p, both_g = g[p > 0] > 0, p[g > 0] > 0  # the same pixels, in raveled order, in both
    key = pidx[both_p] * max(n_g, 1) + gidx[both_g]
    ukey, cnt = np.unique(key, return_counts=True)  # one sort of the overlapping pixels
    inter = sp.csr_matrix((cnt.astype(np.int64), (ukey // max(n_g, 1), ukey % max(n_g, 1))),
                          shape=(n_p, n_g))
    return pred_ids, gt_ids, pred_area, gt_area, inter


def _pairs(m):
    """(rows, cols, float values) of the stored positive entries of a [P, G] matrix."""
    coo = sp.coo_matrix(m)
    keep = coo.data > 0
    return coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64), coo.data[keep].astype(np.float64)


def iou_from_intersections(pred_area, gt_area, inter) -> sp.csr_matrix:
    """IoU = |P∩G| / (|P| + |G| - |P∩G|) for the stored pairs of ``inter`` ([P, G] sparse or dense).

    Returns a float64 ``csr_matrix`` [P, G]; pairs without overlap are implicit zeros.
    """
    r, c, i = _pairs(inter)
    pa, ga = np.asarray(pred_area, np.float64), np.asarray(gt_area, np.float64)
    return sp.csr_matrix((i / (pa[r] + ga[c] - i), (r, c)), shape=np.shape(inter))


def iou_matrix(pred_label, gt_label):
    """Mask IoU of two label images [H, W]: returns (pred_ids [P], gt_ids [G], iou csr [P, G])."""
    pred_ids, gt_ids, pa, ga, inter = intersections(pred_label, gt_label)
    return pred_ids, gt_ids, iou_from_intersections(pa, ga, inter)


# ----------------------------------------------------------------------------- matching
def _greedy_match(n_pred: int, rows, cols, sim, scores) -> np.ndarray:
    """True-positive flags [n_pred] from the candidate pairs that already pass the threshold.

    Greedy: predictions in descending score order (stable), each takes the still-unmatched
    candidate with the highest ``sim`` (ties: lowest column). Fast path without a loop: when no
    row and no column occurs twice among the candidates, they form a one-to-one matching, each
    prediction's only candidate can never be taken by another one, and TP = "has a candidate".
    """
    tp = np.zeros(n_pred, bool)
    rows, cols, sim = np.asarray(rows, np.int64), np.asarray(cols, np.int64), np.asarray(sim, float)
    if rows.size == 0:
        return tp
    if np.unique(rows).size == rows.size and np.unique(cols).size == cols.size:
        tp[rows] = True
        return tp
    idx = np.lexsort((cols, -sim, rows))  # by row, then best similarity, then lowest column
    rows, cols = rows[idx], cols[idx]
    starts = np.searchsorted(rows, np.arange(n_pred), side="left")
    ends = np.searchsorted(rows, np.arange(n_pred), side="right")
    taken = np.zeros(int(cols.max()) + 1, bool)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    for p in order[starts[order] < ends[order]]:
        for c in cols[starts[p]:ends[p]]:
            if not taken[c]:
                taken[c] = True
                tp[p] = True
                break
    return tp


def match_at_iou(iou, pred_scores, thr: float) -> np.ndarray:
    """Per-prediction true-positive flags [P] at one IoU threshold (matching step of Eq. 9).

    Args:
        iou: [P, G] IoU matrix (dense array or scipy.sparse).
        pred_scores: [P] scores aligned with the rows of ``iou``.
        thr: a pair can match only if IoU > thr (strict, as the author's code).

    Fast path (no loop) for thr >= 0.5 with non-overlapping predictions and GT: IoU > 0.5 means
    3|∩| > |P| + |G| >= |P| + |∩| (as |∩| <= |G|), i.e. |∩| > |P|/2, and likewise |∩| > |G|/2.
    Disjoint GTs cannot each hold more than half of P, so P has at most one GT with IoU > thr, and
    each GT at most one such prediction: the candidate pairs form a one-to-one matching and the
    greedy result is "has a candidate", independent of the score order. The check is done on the
    candidate pairs themselves, so any input gets the greedy loop whenever it is needed
    (e.g. thr < 0.5 or overlapping instances).
    """
    n_pred = np.shape(iou)[0]
    scores = np.asarray(pred_scores, np.float64).ravel()
    if scores.size != n_pred:
        raise CksDataError(f"pred_scores has {scores.size} entries but iou has {n_pred} rows.")
    r, c, v = _pairs(iou)
    keep = v > thr
    return _greedy_match(n_pred, r[keep], c[keep], v[keep], scores)


# ----------------------------------------------------------------------------- AP and Dice
def average_precision(tp_flags_list, scores_list, n_gt_total: int) -> float:
    """Ranked AP of Eq. 9, pooled over a set of images, without smoothing.

    Args:
        tp_flags_list: list of bool arrays [N_i] (or one array), TP flags per prediction.
        scores_list: matching list of score arrays [N_i] (or one array).
        n_gt_total: C, the number of GT instances over the whole set.
    Returns:
        AP = sum_k T_k P_k / C with predictions sorted by descending score (stable: ties keep the
        concatenation order) and P_k = cumsum(T)_k / k. nan if C == 0 (undefined: no GT to
        recall); 0.0 if there are no predictions (and C > 0).
    """
    if isinstance(tp_flags_list, np.ndarray):
        tp_flags_list, scores_list = [tp_flags_list], [scores_list]
    t = np.concatenate([np.asarray(x, bool).ravel() for x in tp_flags_list] or [np.zeros(0, bool)])
    s = np.concatenate([np.asarray(x, np.float64).ravel() for x in scores_list] or [np.zeros(0)])
    if t.size != s.size:
        raise CksDataError(f"{t.size} TP flags but {s.size} scores; give one score per prediction.")
    if n_gt_total <= 0:
        return float("nan")
    if t.size == 0:
        return 0.0
    tk = t[np.argsort(-s, kind="stable")].astype(np.float64)
    pk = np.cumsum(tk) / np.arange(1, tk.size + 1)
    return float(np.sum(tk * pk) / n_gt_total)


def _dice_terms(pred_area, gt_area, inter) -> np.ndarray:
    """[sum_j |m_j| D_j, sum_j |m_j|, sum_i |g_i| D_i, sum_i |g_i|] of one image (partner = max ∩)."""
    pa, ga = np.asarray(pred_area, np.float64), np.asarray(gt_area, np.float64)
    r, c, i = _pairs(inter)
    out = np.array([0.0, pa.sum(), 0.0, ga.sum()])
    if i.size:
        d = 2.0 * i / (pa[r] + ga[c])
        o = np.lexsort((c, -i, r))  # per prediction: largest intersection first (ties: lowest GT)
        _, first = np.unique(r[o], return_index=True)
        out[0] = np.sum(pa[r[o][first]] * d[o][first])
        o = np.lexsort((r, -i, c))  # per GT: largest intersection first (ties: lowest prediction)
        _, first = np.unique(c[o], return_index=True)
        out[2] = np.sum(ga[c[o][first]] * d[o][first])
    return out


def _dice_from_terms(t) -> float:
    if t[1] == 0 and t[3] == 0:
        return float("nan")
    pred_part = t[0] / t[1] if t[1] > 0 else 0.0
    gt_part = t[2] / t[3] if t[3] > 0 else 0.0
    return float(0.5 * (pred_part + gt_part))


def _keep_rows(scores, min_score, pred_area, inter):
    keep = scores >= min_score
    return pred_area[keep], sp.csr_matrix(inter)[keep]


def instance_dice(pred_labels, gt_labels, pred_scores=None, min_score: float | None = None) -> float:
    """Instance Dice of Eq. 15 over one image [H, W] or a list of images (pooled).

    Each prediction j gets D_j = 2|m_j ∩ g| / (|m_j| + |g|) with g the GT of largest intersection
    (0 if none); each GT i symmetric. Weights are areas over the totals of ALL predictions (resp.
    GT) of the set, so Dice = ½(Σ|g_i|D_i / Σ|g| + Σ|m_j|D_j / Σ|m|).
    Edge cases: an empty side contributes 0 (its sum is empty), so predictions without GT or GT
    without predictions give 0; nan if the set has neither predictions nor GT.
    ``min_score``: if given, only predictions with score >= min_score count (the author uses 0.5);
    then ``pred_scores`` (dict or array per image, as in :func:`evaluate`) is required.
    """
    preds, gts = _as_list(pred_labels, "pred_labels"), _as_list(gt_labels, "gt_labels")
    if len(preds) != len(gts):
        raise CksDataError(f"{len(preds)} predicted but {len(gts)} ground-truth label images.")
    single = isinstance(pred_labels, np.ndarray) and pred_labels.ndim == 2
    scs = [pred_scores] if single else (list(pred_scores) if pred_scores is not None else [None] * len(preds))
    total = np.zeros(4)
    for k, (p, g) in enumerate(zip(preds, gts)):
        where = "" if single else f"[{k}]"
        pred_ids, _, pa, ga, inter = intersections(*_check_pair(p, g, where))
        if min_score is not None:
            pa, inter = _keep_rows(_scores_for_ids(scs[k], pred_ids, where), min_score, pa, inter)
        total += _dice_terms(pa, ga, inter)
    return _dice_from_terms(total)


def evaluate(pred_labels, pred_scores, gt_labels, iou_thresholds=DEFAULT_IOU_THRESHOLDS,
             dice_min_score: float | None = None) -> dict:
    """AP (Eq. 9) at each IoU threshold, mAP and Dice (Eq. 15) of a set of label images.

    Args:
        pred_labels: one label image [H, W], a stack [N, H, W] or a list of label images.
        pred_scores: for one image a dict {id: score} or array (scores[k] <-> label k+1);
            for several images a list of those.
        gt_labels: same layout as ``pred_labels`` (each GT image the shape of its prediction).
        iou_thresholds: thresholds for "map" (default 0.50:0.05:0.95; rounded to 10 decimals so
            that floating-point noise of ``np.arange`` does not decide exact ties).
        dice_min_score: only predictions with score >= this count for Dice (author: 0.5).
    Returns:
        dict with ``ap50``, ``ap75``, ``map`` (mean of ``ap``), ``dice``, ``ap`` ({thr rounded to
        2 decimals: AP}), ``n_gt``, ``n_pred``, ``n_images``. AP values are nan when there is no GT.

    Example: two true cells, one found exactly, one missed (AP = TP / (TP + FP + FN))::

        >>> import numpy as np
        >>> gt = np.zeros((20, 20), int); gt[2:8, 2:8] = 1; gt[12:18, 12:18] = 2
        >>> pred = np.where(gt == 1, 1, 0)
        >>> m = evaluate(pred, {1: 0.9}, gt)
        >>> m["ap50"], m["n_gt"], m["n_pred"]
        (0.5, 2, 1)
    """
    single = isinstance(pred_labels, np.ndarray) and pred_labels.ndim == 2
    preds, gts = _as_list(pred_labels, "pred_labels"), _as_list(gt_labels, "gt_labels")
    scs = [pred_scores] if single else _as_list(pred_scores, "pred_scores")
    if not (len(preds) == len(gts) == len(scs)):
        raise CksDataError(f"got {len(preds)} predicted label images, {len(scs)} score sets and "
                           f"{len(gts)} ground-truth label images; give one of each per image.")
    terms = [image_terms(p, sc, g, iou_thresholds, "" if single else f"[{k}]", dice_min_score)
             for k, (p, g, sc) in enumerate(zip(preds, gts, scs))]
    return {**metrics_from_terms(terms), "n_gt": int(sum(t["n_gt"] for t in terms)),
            "n_pred": int(sum(t["scores"].size for t in terms)), "n_images": len(preds)}


def image_terms(pred_label, scores, gt_label, iou_thresholds=DEFAULT_IOU_THRESHOLDS, where: str = "",
                dice_min_score: float | None = None) -> dict:
    """Per-image ingredients of the pooled metrics.

    Args:
        pred_label, gt_label: ``[H, W]`` integer label images. scores: ``{id: score}`` or array.
        iou_thresholds: thresholds of mAP (0.50 and 0.75 are always included).
        where: names the image in error messages. dice_min_score: see :func:`evaluate`.
    Returns:
        dict ``flags`` ({thr: bool [P]}), ``scores`` (float [P]), ``n_gt`` (int), ``dice`` (4 sums, see
        ``_dice_terms``), ``thresholds`` (the mAP thresholds). :func:`metrics_from_terms` pools them.
    """
    pred_ids, gt_ids, pa, ga, inter = intersections(*_check_pair(pred_label, gt_label, where))
    s = _scores_for_ids(scores, pred_ids, where)
    iou = iou_from_intersections(pa, ga, inter)
    thrs = [float(np.round(t, 10)) for t in np.atleast_1d(iou_thresholds)]
    flags = {t: match_at_iou(iou, s, t) for t in sorted(set(thrs) | {0.5, 0.75})}
    if dice_min_score is not None:
        pa, inter = _keep_rows(s, dice_min_score, pa, inter)
    return {"flags": flags, "scores": s, "n_gt": int(gt_ids.size), "dice": _dice_terms(pa, ga, inter),
            "thresholds": thrs}


def metrics_from_terms(terms: list[dict], index=None) -> dict:
    """AP50, AP75, mAP and Dice of the images ``terms[i]`` for ``i in index`` (repeats allowed)."""
    index = range(len(terms)) if index is None else index
    sel = [terms[i] for i in index]
    n_gt = sum(t["n_gt"] for t in sel)
    scores = [t["scores"] for t in sel]
    thrs = terms[0]["thresholds"] if terms else [float(np.round(t, 10)) for t in DEFAULT_IOU_THRESHOLDS]
    ap = {t: average_precision([x["flags"][t] for x in sel], scores, n_gt) for t in set(thrs) | {0.5, 0.75}}
    dice = _dice_from_terms(np.sum([t["dice"] for t in sel], axis=0))
    return {"ap50": ap[0.5], "ap75": ap[0.75], "map": float(np.mean([ap[t] for t in thrs])), "dice": dice,
            "ap": {round(t, 2): ap[t] for t in thrs}}


def __getattr__(name: str):
    """``match_points`` and ``point_ap`` live in :mod:`cks.point_metrics`; still importable from here."""
    if name in ("match_points", "point_ap"):
        from . import point_metrics
        return getattr(point_metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Shape of predicted masks against the ground truth, per matched cell and per size bin (issue #9).

* :func:`shape_diagnostics` pairs every ground-truth (GT) cell with the predicted cell of largest
  intersection and measures, per pair and per size bin, how the predicted boundary sits relative to
  the true one (signed offset: **positive = outside the cell, i.e. masks too large**), the area ratio,
  solidities and IoU, next to the IoU of the Voronoi-disk baseline (:func:`cks.baselines.voronoi_disks`)
  for the same cell. A constant positive offset in every bin is the "band around every cell" failure.
* :func:`size_slope`: do the masks follow each cell's size?
* :func:`touching_neighbours`: how many other cells come within a few px of each cell; the same statistics by
  that count (``crowding``) say whether the masks fail on crowded cells (the split between neighbours) or on
  cells alone as well (the cell's own outline).
* :func:`summarise`: the JSON-serialisable part of a result.

Signed offset of a pair: the true boundary runs along pixel edges, so the signed distance of a pixel
centre to it is ``edt(outside) - 0.5`` outside the true cell and ``-(edt(inside) - 0.5)`` inside
(``scipy.ndimage.distance_transform_edt`` of the true mask and its complement in a padded bounding box).
The predicted boundary is the set of 4-neighbour pixel edges between a predicted-cell pixel and any other
pixel; each edge takes the mean signed distance of its two pixels, and the offset is the mean over
those edges. Identical masks give exactly 0, a straight edge moved by k px gives k; digital disks of
radii 13 and 10 give +2.7 px and of radii 8 and 10 -1.9 px (diagonal staircases read ~0.2 px short).
Edges on the image border are not boundary (a cell cut by the border is measured on its other edges).

Used by :mod:`cks.diagnose` (``cks diagnose``) and :mod:`cks.run_maps`; plots in :mod:`cks.viz_diagnose`.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from .errors import CksDataError

__all__ = ["shape_diagnostics", "size_slope", "summarise", "touching_neighbours", "DEFAULT_BINS", "MATCH_IOU",
           "CROWDING", "TOUCH_GAP"]

DEFAULT_BINS = (0, 16, 24, 32, 48, math.inf)
MATCH_IOU = 0.1  # a GT cell counts as matched when IoU with its largest-intersection partner >= this
#: groups of GT cells by their number of touching neighbours (inclusive ranges): alone, one, two or more
CROWDING = ((0, 0), (1, 1), (2, math.inf))
#: two cells touch when a pixel of one is within this many px (Euclidean, pixel centres; label-image px) of the other
TOUCH_GAP = 2.0


def touching_neighbours(label, gap: float = TOUCH_GAP) -> tuple[np.ndarray, np.ndarray]:
    """How many other cells come within ``gap`` px of each cell of a label image (ours, issue #9).

    Two cells touch when some pixel of one lies within ``gap`` px (Euclidean distance of pixel centres) of some
    pixel of the other: edge-adjacent cells at ``gap`` 1, cells with one background pixel between them at 2.
    Vectorised over pixels: one comparison of the image with itself shifted, per offset ``(dy, dx)`` with
    ``0 < dy^2 + dx^2 <= gap^2`` (6 offsets at ``gap`` 2), never a loop over cells.

    Args:
        label: int label image ``[H, W]``, 0 = background.
        gap: distance in px, >= 1.
    Returns:
        ``ids [G]`` (sorted cell ids, as :func:`cks.metrics.intersections` orders them) and ``counts [G]`` int64.
    """
    if not (gap >= 1 and math.isfinite(gap)):
        raise CksDataError(f"touching_neighbours: gap must be a finite number of px >= 1, got {gap}")
    lab = np.asarray(label)
    if lab.ndim != 2:
        raise CksDataError(f"touching_neighbours: expected a 2-D label image, got shape {lab.shape}")
    ids = np.unique(lab)
    ids = ids[ids > 0]
    # dense indices 1..G (0 = background), so that the pair key below cannot overflow whatever the ids are
    lab = np.where(lab > 0, np.searchsorted(ids, lab) + 1, 0).astype(np.int64)
    h, w = lab.shape
    r, base = min(int(math.floor(gap)), max(h, w)), ids.size + 1
    keys = []
    for dy in range(0, r + 1):
        for dx in range(-r, r + 1):
            if (dy == 0 and dx <= 0) or dy * dy + dx * dx > gap * gap or dy >= h or abs(dx) >= w:
                continue
            a = lab[: h - dy, max(0, -dx): w - max(0, dx)]  # pixel (y, x) ...
            b = lab[dy:, max(0, dx): w - max(0, -dx)]  # ... and pixel (y + dy, x + dx)
            keep = (a > 0) & (b > 0) & (a != b)
            keys += [a[keep] * base + b[keep], b[keep] * base + a[keep]]  # both directions
    pairs = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    counts = np.bincount(pairs // base - 1, minlength=ids.size).astype(np.int64)
    return ids, counts


# ----------------------------------------------------------------------------- shape of matched pairs
def _best_partner(inter, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Per GT column of a sparse [P, G] matrix: the row of largest value (-1 if none) and that value."""
    coo = inter.tocoo()
    rows, cols, vals = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data.astype(np.float64)
    best, val = np.full(n_gt, -1, np.int64), np.zeros(n_gt)
    if vals.size:
        order = np.lexsort((rows, -vals, cols))  # by column, largest value first, then lowest row
        first = np.r_[True, np.diff(cols[order]) != 0]
        best[cols[order][first]], val[cols[order][first]] = rows[order][first], vals[order][first]
    return best, val


def _signed_offset(pm: np.ndarray, tm: np.ndarray, valid: np.ndarray) -> float:
    """Mean signed distance (px) of the predicted boundary (pixel edges of ``pm``) from that of ``tm``."""
    # signed distance of pixel centres to the true boundary, which runs along pixel edges
    sd = np.where(tm, 0.5 - ndimage.distance_transform_edt(tm), ndimage.distance_transform_edt(~tm) - 0.5)
    vals = []
    for a, b in ((np.s_[:-1, :], np.s_[1:, :]), (np.s_[:, :-1], np.s_[:, 1:])):
        edge = (pm[a] != pm[b]) & valid[a] & valid[b]  # one pixel in the predicted cell, one not
        vals.append((sd[a][edge] + sd[b][edge]) / 2)  # the edge's midpoint
    v = np.concatenate(vals)
    return float(v.mean()) if v.size else math.nan


def _crop(sl_a, sl_b, shape, margin: int = 2):
    """Union bounding box of two ``find_objects`` slices, grown by ``margin`` and clipped to the image."""
    y0 = max(min(sl_a[0].start, sl_b[0].start) - margin, 0)
    y1 = min(max(sl_a[0].stop, sl_b[0].stop) + margin, shape[0])
    x0 = max(min(sl_a[1].start, sl_b[1].start) - margin, 0)
    x1 = min(max(sl_a[1].stop, sl_b[1].stop) + margin, shape[1])
    return y0, y1, x0, x1


def _pair_shape(pred, gt, pid, gid, sl_p, sl_g):
    """(signed offset px, solidity pred, solidity true) of one pair of cells."""
    from skimage.morphology import convex_hull_image

    y0, y1, x0, x1 = _crop(sl_p, sl_g, gt.shape)
    pm = np.pad(pred[y0:y1, x0:x1] == pid, 1)
    tm = np.pad(gt[y0:y1, x0:x1] == gid, 1, mode="edge")  # the image border is no boundary of the true cell
    valid = np.ones_like(pm)  # the pad ring is off the image only where the crop touches the image border
    valid[0, :], valid[-1, :] = y0 > 0, y1 < gt.shape[0]
    valid[:, 0], valid[:, -1] = valid[:, 0] & (x0 > 0), valid[:, -1] & (x1 < gt.shape[1])
    sol = [m.sum() / max(convex_hull_image(m).sum(), 1) for m in (pm, tm & valid)]
    return _signed_offset(pm, tm, valid), float(sol[0]), float(sol[1])


def _stats(c: dict, sel: np.ndarray) -> dict:
    m = sel & c["matched"]

    def med(k, s=m):
        return float(np.median(c[k][s])) if s.any() else math.nan

    return {"n_gt": int(sel.sum()), "n_matched": int(m.sum()), "n_matched_50": int((sel & (c["iou"] >= 0.5)).sum()),
            "offset_median": med("offset"), "offset_mean": float(c["offset"][m].mean()) if m.any() else math.nan,
            "offset_rel_median": med("offset_rel"),
            "offset_rel_mean": float(c["offset_rel"][m].mean()) if m.any() else math.nan,
            "area_ratio_median": med("area_ratio"), "solidity_pred_median": med("solidity_pred"),
            "solidity_true_median": med("solidity_true"), "iou_median": med("iou", sel),
            "disk_iou_median": med("disk_iou", sel)}


def size_slope(pred_area, true_area) -> float:
    """Least-squares slope of ``log(predicted area)`` on ``log(true area)`` over matched cells (ours, issue #9).

    1: the masks follow each cell's size; 0: one mask size for every cell, as the Voronoi disks (one radius per
    image) have. Args: two arrays ``[N]`` of areas > 0 (any common unit). Returns NaN for fewer than 3 cells or
    cells of one size.
    """
    pa, ta = np.asarray(pred_area, np.float64), np.asarray(true_area, np.float64)
    keep = (pa > 0) & (ta > 0) & np.isfinite(pa) & np.isfinite(ta)
    if keep.sum() < 3:
        return math.nan
    x, y = np.log(ta[keep]), np.log(pa[keep])
    var = float(((x - x.mean()) ** 2).sum())
    return float(((x - x.mean()) * (y - y.mean())).sum() / var) if var > 1e-12 else math.nan


def shape_diagnostics(pred_labels, gt_labels, points=None, scale: float = 1.0, bins=DEFAULT_BINS,
                      disk_radius: float | None = None) -> dict:
    """Shape of predicted vs true cells, per size bin and overall.

    Args:
        pred_labels, gt_labels: lists of int label images ``[H, W]`` (pairwise the same shape, 0 = background).
        points: optional list of GT point arrays ``[N, 2]`` (y, x) for the disk baseline; default: GT centroids.
        scale: factor from these images to the model's training scale: diameters and offsets in px are
            multiplied by it (so bins and offsets read at the scale the model was trained at).
        bins: edges of the size bins, on the true equivalent diameter ``sqrt(4 A / pi) * scale``.
        disk_radius: radius (px of these images) of the Voronoi-disk baseline; default per image: half the
            median true equivalent diameter.
    Returns:
        dict with ``bins`` (one stats dict per bin, with ``bin``, ``lo``, ``hi``), ``overall`` (stats),
        ``count_ratio`` (n predicted / n GT, pooled), ``n_pred``, ``n_gt``, ``scale``, ``bin_edges``,
        ``disk_radius`` (per image), ``crowding`` (the stats per group of :data:`CROWDING`: GT cells by their number
        of touching GT neighbours, :func:`touching_neighbours` at :data:`TOUCH_GAP` px of these images, with
        ``group``, ``lo``, ``hi``) and ``cells`` (per-GT-cell numpy arrays: ``image, gt_id, pred_id``
        (0 = none), ``diameter, bin, iou, matched, offset, offset_rel, area_ratio, solidity_pred,
        solidity_true, disk_iou, neighbours``; NaN where unmatched). ``overall`` also has ``size_slope``
        (:func:`size_slope` of the matched cells: do masks follow cell size?). Stats: counts (matched = IoU >= 0.1, and at
        IoU >= 0.5), medians/means of the signed offset (px at ``scale``) and of the offset relative to
        the true diameter, medians of area ratio, solidities (matched pairs), IoU and disk IoU (all GT).
        :func:`summarise` drops ``cells`` and makes the rest JSON-serialisable.
    """
    from .baselines import voronoi_disks
    from .metrics import intersections
    from .points import centroids

    preds, gts = list(pred_labels), list(gt_labels)
    if len(preds) != len(gts):
        raise CksDataError(f"shape_diagnostics: {len(preds)} predicted but {len(gts)} ground-truth label images")
    if points is not None and len(points) != len(gts):
        raise CksDataError(f"shape_diagnostics: {len(points)} point arrays for {len(gts)} images")
    edges = np.asarray(bins, np.float64)
    cols = {k: [] for k in ("image", "gt_id", "pred_id", "diameter", "iou", "offset", "area_ratio", "solidity_pred",
                            "solidity_true", "disk_iou", "neighbours")}
    n_pred, radii = 0, []
    for i, (pred, gt) in enumerate(zip(preds, gts)):
        pred_ids, gt_ids, pa, ga, inter = intersections(pred, gt)
        n_pred += pred_ids.size
        g = gt_ids.size
        best, ib = _best_partner(inter, g)
        pa_b = np.where(best >= 0, pa[np.maximum(best, 0)] if pa.size else 0, 0).astype(np.float64)
        iou = np.where(best >= 0, ib / np.maximum(pa_b + ga - ib, 1), 0.0)
        diam = np.sqrt(4 * ga / np.pi)
        r = float(disk_radius) if disk_radius is not None else (float(np.median(diam)) / 2 if g else math.nan)
        radii.append(r)
        disk_iou = np.zeros(g)
        if g and r > 0:
            pts = centroids(gt)[1] if points is None else np.asarray(points[i], np.float64).reshape(-1, 2)
            _, _, da, _, d_inter = intersections(voronoi_disks(pts, gt.shape, r), gt)
            db, dv = _best_partner(d_inter, g)
            da_b = np.where(db >= 0, da[np.maximum(db, 0)] if da.size else 0, 0).astype(np.float64)
            disk_iou = np.where(db >= 0, dv / np.maximum(da_b + ga - dv, 1), 0.0)
        nb_ids, nb = touching_neighbours(gt)
        assert np.array_equal(nb_ids, gt_ids)  # both the sorted positive ids of gt
        offset, sol_p, sol_t = np.full(g, math.nan), np.full(g, math.nan), np.full(g, math.nan)
        matched = iou >= MATCH_IOU
        if matched.any():
            sl_g, sl_p = ndimage.find_objects(gt), ndimage.find_objects(pred)
            for k in np.flatnonzero(matched):  # diagnostic, not a hot path: one small crop per pair
                pid, gid = int(pred_ids[best[k]]), int(gt_ids[k])
                offset[k], sol_p[k], sol_t[k] = _pair_shape(pred, gt, pid, gid, sl_p[pid - 1], sl_g[gid - 1])
        for key, val in (("image", np.full(g, i)), ("gt_id", gt_ids), ("diameter", diam * scale),
                         ("pred_id", np.where(best >= 0, pred_ids[np.maximum(best, 0)] if pred_ids.size else 0, 0)),
                         ("iou", iou), ("offset", offset * scale), ("solidity_pred", sol_p), ("solidity_true", sol_t),
                         ("area_ratio", np.where(matched, pa_b / np.maximum(ga, 1), math.nan)), ("disk_iou", disk_iou),
                         ("neighbours", nb)):
            cols[key].append(np.asarray(val))
    c = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    for k in ("image", "gt_id", "pred_id", "neighbours"):
        c[k] = c[k].astype(np.int64)
    c["matched"] = c["iou"] >= MATCH_IOU
    c["offset_rel"] = c["offset"] / np.maximum(c["diameter"], 1e-9)
    c["bin"] = np.clip(np.searchsorted(edges, c["diameter"], side="right") - 1, 0, len(edges) - 2)
    per_bin = []
    for b in range(len(edges) - 1):
        lo, hi = edges[b], edges[b + 1]
        name = f"{lo:g}-{hi:g}" if math.isfinite(hi) else f"{lo:g}+"
        per_bin.append({"bin": name, "lo": float(lo), "hi": float(hi), **_stats(c, c["bin"] == b)})
    crowding = [{"group": f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}" if math.isfinite(hi) else f"{lo:g}+",
                 "lo": float(lo), "hi": float(hi), **_stats(c, (c["neighbours"] >= lo) & (c["neighbours"] <= hi))}
                for lo, hi in CROWDING]
    n_gt = int(c["gt_id"].size)
    overall = _stats(c, np.ones(n_gt, bool))
    true_area = np.pi * c["diameter"] ** 2 / 4  # px^2 at the training scale; the slope does not depend on it
    overall["size_slope"] = size_slope((c["area_ratio"] * true_area)[c["matched"]], true_area[c["matched"]])
    return {"bins": per_bin, "overall": overall, "count_ratio": n_pred / n_gt if n_gt else math.nan,
            "n_pred": int(n_pred), "n_gt": n_gt, "scale": float(scale), "bin_edges": [float(e) for e in edges],
            "disk_radius": radii, "crowding": crowding, "cells": c}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in (x.tolist() if isinstance(x, np.ndarray) else x)]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None  # NaN / inf -> null (strict JSON)
    return x


def summarise(result: dict) -> dict:
    """The JSON-serialisable part of a :func:`shape_diagnostics` result (no per-cell arrays; NaN -> None)."""
    return _jsonable({k: v for k, v in result.items() if k != "cells"})

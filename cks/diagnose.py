"""Is shape being learned? Diagnostics of predicted masks against the ground truth, and of a run's maps.

* :func:`shape_diagnostics` pairs every ground-truth (GT) cell with the predicted cell of largest
  intersection and measures, per pair and per size bin, how the predicted boundary sits relative to
  the true one (signed offset: **positive = outside the cell, i.e. masks too large**), the area ratio,
  solidities and IoU, next to the IoU of the Voronoi-disk baseline (:func:`cks.baselines.voronoi_disks`)
  for the same cell. A constant positive offset in every bin is the "band around every cell" failure.
* :func:`collaborator_foreground_fraction`: foreground fraction of the collaborator's ``M_c`` vs the GT.
* :func:`training_maps`: ``M_p`` (Eq. 4), ``M_c`` and ``B_p`` (Eq. 9) on one crop for every snapshot of a run.
* :func:`diagnose_run` (``cks diagnose RUN --data SPEC``): all of it for a run folder, written as
  ``diagnostics.json`` + PNG figures (plots: :mod:`cks.viz_diagnose`).

Signed offset of a pair: the true boundary runs along pixel edges, so the signed distance of a pixel
centre to it is ``edt(outside) - 0.5`` outside the true cell and ``-(edt(inside) - 0.5)`` inside
(``scipy.ndimage.distance_transform_edt`` of the true mask and its complement in a padded bounding box).
The predicted boundary is the set of 4-neighbour pixel edges between a predicted-cell pixel and any other
pixel; each edge takes the mean signed distance of its two pixels, and the offset is the mean over
those edges. Identical masks give exactly 0, a straight edge moved by k px gives k; digital disks of
radii 13 and 10 give +2.7 px and of radii 8 and 10 -1.9 px (diagonal staircases read ~0.2 px short).
Edges on the image border are not boundary (a cell cut by the border is measured on its other edges).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from .errors import CksDataError

DEFAULT_BINS = (0, 16, 24, 32, 48, math.inf)
MATCH_IOU = 0.1  # a GT cell counts as matched when IoU with its largest-intersection partner >= this

__all__ = ["shape_diagnostics", "summarise", "foreground_iou", "collaborator_foreground_fraction", "training_maps", "diagnose_run",
           "add_parser", "run_cli"]


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
        ``disk_radius`` (per image) and ``cells`` (per-GT-cell numpy arrays: ``image, gt_id, pred_id``
        (0 = none), ``diameter, bin, iou, matched, offset, offset_rel, area_ratio, solidity_pred,
        solidity_true, disk_iou``; NaN where unmatched). ``overall`` also has ``size_slope``
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
                            "solidity_true", "disk_iou")}
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
                         ("area_ratio", np.where(matched, pa_b / np.maximum(ga, 1), math.nan)), ("disk_iou", disk_iou)):
            cols[key].append(np.asarray(val))
    c = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}
    for k in ("image", "gt_id", "pred_id"):
        c[k] = c[k].astype(np.int64)
    c["matched"] = c["iou"] >= MATCH_IOU
    c["offset_rel"] = c["offset"] / np.maximum(c["diameter"], 1e-9)
    c["bin"] = np.clip(np.searchsorted(edges, c["diameter"], side="right") - 1, 0, len(edges) - 2)
    per_bin = []
    for b in range(len(edges) - 1):
        lo, hi = edges[b], edges[b + 1]
        name = f"{lo:g}-{hi:g}" if math.isfinite(hi) else f"{lo:g}+"
        per_bin.append({"bin": name, "lo": float(lo), "hi": float(hi), **_stats(c, c["bin"] == b)})
    n_gt = int(c["gt_id"].size)
    overall = _stats(c, np.ones(n_gt, bool))
    true_area = np.pi * c["diameter"] ** 2 / 4  # px^2 at the training scale; the slope does not depend on it
    overall["size_slope"] = size_slope((c["area_ratio"] * true_area)[c["matched"]], true_area[c["matched"]])
    return {"bins": per_bin, "overall": overall, "count_ratio": n_pred / n_gt if n_gt else math.nan,
            "n_pred": int(n_pred), "n_gt": n_gt, "scale": float(scale), "bin_edges": [float(e) for e in edges],
            "disk_radius": radii, "cells": c}


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


# ----------------------------------------------------------------------------- models of a run
def _image_tensor(image, scale: float = 1.0):
    from .data.io import image_batch
    from .predict import _as_chw, _resize

    x = image_batch(_as_chw(image).astype(np.float32))[0]
    h, w = x.shape[-2:]
    hs, ws = max(1, round(h * scale)), max(1, round(w * scale))
    return _resize(x, (hs, ws)) if (hs, ws) != (h, w) else x


def _collaborator(ckpt: dict):
    """The collaborator of a checkpoint dict (eval mode), or None when the run has none (supervised)."""
    from .config import Config
    from .models.collaborator import Collaborator

    if ckpt.get("collaborator") is None:
        return None
    m = Collaborator(Config.from_dict(ckpt["config"]).collaborator)
    m.load_state_dict(ckpt["collaborator"])
    return m.eval()


def foreground_iou(pred, label) -> float:
    """IoU of two foregrounds (``pred`` and ``label`` > 0, same ``[H, W]`` shape); NaN if both are empty."""
    a, b = np.asarray(pred) > 0, np.asarray(label) > 0
    union = int((a | b).sum())
    return float((a & b).sum() / union) if union else math.nan


def collaborator_foreground_fraction(collaborator, samples, scale=1.0) -> dict:
    """Per image: fraction of pixels with ``M_c = sigmoid(fg_logits) >= 0.5`` vs the GT, and their IoU; and how
    ``M_c`` and the collaborator's confidence run across the true boundary.

    Args:
        collaborator: a :class:`cks.models.collaborator.Collaborator`. samples: dicts with ``image``, ``label``
            (and optional ``cell_type``). scale: resize factor to the training scale before the collaborator,
            one for all images or one per image (e.g. each image at its true cell size).
    Returns:
        ``{"collaborator": [...], "true": [...], "ratio": [...], "iou": [...], "profile": {...}}``: ratio =
        collaborator / true (NaN if no GT); iou = foreground IoU of ``M_c >= 0.5`` with ``label > 0`` at native
        resolution (the logits resized bilinearly to the label's size; NaN if both are empty). The IoU says how
        well the collaborator sees cells at all; ``benchmarks/collaborator_ceiling.py`` measures what the same
        network reaches when trained on the true foreground. ``profile`` (:func:`cks.boundary_profile.map_profile`,
        distances in px at the training scale, outside > 0): ``"m_c"`` the mean ``M_c`` and ``"abs_logit"`` the
        mean ``|fg_logit|`` per bin, and ``"saturated"`` the fraction of pixels within 3 px of the true boundary
        with ``|fg_logit| >= 3`` (``M_c`` outside [0.05, 0.95]). The linear L_M of Eq. 6 moves a logit by
        ``(1 - 2 M_p) M_c (1 - M_c)``: < 0.05 of its largest value at such pixels, however wrong ``M_c`` is there.
    """
    import torch
    import torch.nn.functional as F

    from .boundary_profile import map_profile, signed_distance

    dev = next(collaborator.parameters()).device
    scales = list(scale) if isinstance(scale, (list, tuple, np.ndarray)) else [scale] * len(samples)
    if len(scales) != len(samples):
        raise CksDataError(f"collaborator_foreground_fraction: {len(scales)} scales for {len(samples)} images")
    pred, true, iou, probs, conf, labels = [], [], [], [], [], []
    near = sat = 0
    with torch.no_grad():
        for s, sc in zip(samples, scales):
            ct = torch.tensor([max(int(s.get("cell_type", 0) or 0), 0)], device=dev)
            fg = collaborator(_image_tensor(s["image"], float(sc))[None].to(dev), ct)["fg_logits"]
            pred.append(float((fg >= 0).float().mean()))  # sigmoid(z) >= 0.5  <=>  z >= 0
            lab = np.asarray(s["label"]) > 0
            true.append(float(lab.mean()))
            native = F.interpolate(fg[:, None].float(), size=lab.shape, mode="bilinear", align_corners=False)[0, 0]
            z = native.cpu().numpy()
            iou.append(foreground_iou(z >= 0, lab))
            probs.append(torch.sigmoid(native).cpu().numpy())
            conf.append(np.abs(z))
            labels.append(lab)
            band = np.abs(signed_distance(lab) * float(sc)) <= 3
            near += int(band.sum())
            sat += int((band & (conf[-1] >= 3)).sum())
    ratio = [p / t if t > 0 else math.nan for p, t in zip(pred, true)]
    m_c, abs_z = map_profile(probs, labels, scales), map_profile(conf, labels, scales)
    return {"collaborator": pred, "true": true, "ratio": ratio, "iou": iou,
            "profile": {"distance": m_c["distance"], "m_c": m_c["mean"], "abs_logit": abs_z["mean"],
                        "saturated": sat / near if near else math.nan}}


def snapshot_files(run_dir, keep: int | None = None) -> list[Path]:
    """``run_dir/snapshots/step_*.pt`` in step order (then ``checkpoint.pt`` if it is further on), or
    ``[run_dir/checkpoint.pt]`` when there are none. ``keep``: at most this many, evenly spaced (the last always
    kept)."""
    p = Path(run_dir)
    if p.is_file():
        return [p]
    if keep and keep > 0:
        files = snapshot_files(p)
        return files if len(files) <= keep else [files[int(round(j))] for j in np.linspace(len(files) - 1, 0, keep)][::-1]
    snaps = sorted((p / "snapshots").glob("step_*.pt"))
    last = p / "checkpoint.pt"
    if snaps and last.exists():  # a run stopped by its time budget: its last state is not a snapshot
        from .checkpoint import load_checkpoint

        if int(load_checkpoint(last).get("step", 0)) > int(snaps[-1].stem.split("_")[-1]):
            snaps.append(last)
    return snaps or [last]


def _loss_at(cfg, step: int) -> tuple:
    """(d table in px, pi, prior centre, force points, prior zero) of Eq. 4 as training used them at ``step``."""
    from .train import loss_config_at

    lc = loss_config_at(cfg, step)
    return lc.prior_d, lc.prior_scale, lc.prior_center, lc.force_point_foreground, lc.prior_zero


def training_maps(run_dir, sample: dict, crop: int | None = None, max_snapshots: int | None = None) -> dict:
    """``M_p`` (Eq. 4), ``M_c = sigmoid(fg_logits)`` and ``B_p`` (Eq. 9) on one crop, for every snapshot of a run.

    The principal runs at the sample's GT points (as in training); ``M_p`` uses the prior (d in px, pi) of
    the training objective at that step (:func:`cks.losses.cks.effective_loss_config`, warm-up included).

    Args:
        run_dir: run folder (``snapshots/step_*.pt``, else ``checkpoint.pt``) or one checkpoint file.
        sample: dict with ``image`` and ``points`` (or ``label``, whose centroids are used), optional
            ``label`` (shown) and ``cell_type``; at the model's training scale.
        crop: side of the square crop around the median point (default: min(H, W, 4 x window)).
        max_snapshots: keep this many snapshots, evenly spaced (the last always kept).
    Returns:
        ``{"image", "label", "points"`` (crop), ``"rows": [{"step", "M_p", "M_c", "B_p", "fg_fraction"}]}``.
    """
    import torch

    from .checkpoint import load_checkpoint
    from .config import Config
    from .losses.border import principal_border
    from .losses.cks import prior_d_per_window
    from .losses.consistency import principal_foreground
    from .models.principal import Principal
    from .points import centroids

    files = snapshot_files(run_dir, max_snapshots)
    pts = sample.get("points")
    if pts is None:
        if sample.get("label") is None:
            raise CksDataError("training_maps: the sample needs points or a label image")
        pts = centroids(sample["label"])[1]
    pts = np.asarray(pts, np.float32).reshape(-1, 2)
    img = np.asarray(sample["image"])
    img = img[None] if img.ndim == 2 else img
    h, w = img.shape[-2:]
    rows, cfg0 = [], None
    for f in files:
        ck = load_checkpoint(f)
        cfg = Config.from_dict(ck["config"])
        if cfg0 is None:
            cfg0 = cfg
            side = int(min(h, w, crop or 4 * cfg.segmentor.window))
            cy, cx = np.median(pts, axis=0) if len(pts) else (h / 2, w / 2)
            y0, x0 = int(np.clip(cy - side / 2, 0, h - side)), int(np.clip(cx - side / 2, 0, w - side))
            inside = ((pts[:, 0] >= y0 - 0.5) & (pts[:, 0] < y0 + side - 0.5)
                      & (pts[:, 1] >= x0 - 0.5) & (pts[:, 1] < x0 + side - 0.5))
            cpts = pts[inside] - np.array([y0, x0], np.float32)
            cimg = img[:, y0:y0 + side, x0:x0 + side]
            lab = None if sample.get("label") is None else np.asarray(sample["label"])[y0:y0 + side, x0:x0 + side]
            x = _image_tensor(img)[None, :, y0:y0 + side, x0:x0 + side]  # normalised as a whole, as in training
            p = torch.from_numpy(cpts)[None]
            ct = torch.tensor([max(int(sample.get("cell_type", 0) or 0), 0)])
        step = int(ck.get("step", 0))
        principal = Principal(cfg)
        principal.load_state_dict(ck["principal"])
        collab = _collaborator(ck)
        d_table, pi, center, force, zero = _loss_at(cfg, step)
        shape = (1, side, side)
        with torch.no_grad():
            out = principal.eval()(x, p)
            lg, b, o, sp = out["seg_logits"], out["seg_batch"], out["seg_origin"], out["seg_points"]
            d = prior_d_per_window(ct, b, torch.as_tensor(d_table, dtype=torch.float32).reshape(-1))
            m_p = principal_foreground(lg, b, o, sp, shape, d, pi, center, force, zero)[0].numpy()
            b_p = principal_border(lg, b, o, shape, cfg.loss.border_magnitude)[0].numpy()
            m_c = None if collab is None else torch.sigmoid(collab(x, ct)["fg_logits"])[0].numpy()
        rows.append({"step": step, "M_p": m_p, "M_c": m_c, "B_p": b_p,
                     "fg_fraction": None if m_c is None else float((m_c >= 0.5).mean())})
    return {"image": cimg, "label": lab, "points": cpts, "rows": rows}


def shape_over_training(run_dir, samples: list[dict], score_threshold: float = 0.5) -> list[dict]:
    """Shape diagnostics of every snapshot of a run: does the boundary drift outward as training goes on?

    Each snapshot's principal predicts ``samples`` (native, with masks) at their true cell size (median
    equivalent diameter of the masks; a fixed-scale model at its own scale). Returns one row per snapshot:
    ``step``, AP50, count ratio and the overall and per-bin median signed offset / area ratio / IoU.
    """
    from .checkpoint import load_checkpoint, load_model
    from .metrics import evaluate
    from .predict import predict, scores_by_label
    from .size import median_diameter

    rows = []
    for f in snapshot_files(run_dir):
        model = load_model(f)
        norm = model.cfg.size.normalize
        preds = [predict(model, s["image"], score_threshold=score_threshold,
                         diameter=median_diameter(s["label"]) if norm else None) for s in samples]
        labels = [p[0] for p in preds]
        res = summarise(shape_diagnostics(labels, [s["label"] for s in samples], scale=float(model.scale)))
        ap = evaluate(labels, [scores_by_label(p[1]) for p in preds], [s["label"] for s in samples])
        keep = ("offset_median", "offset_rel_median", "area_ratio_median", "iou_median", "n_gt", "n_matched")
        rows.append({"step": int(load_checkpoint(f).get("step", 0)),
                     "ap50": ap["ap50"], "count_ratio": res["count_ratio"],
                     "overall": {k: res["overall"][k] for k in keep},
                     "bins": [{"bin": b["bin"], **{k: b[k] for k in keep}} for b in res["bins"]]})
    return rows


# ----------------------------------------------------------------------------- a whole run
def _portable(spec) -> str:
    """A data spec without this machine's absolute paths (relative to CKS_DATA_DIR, else the last part)."""
    out = []
    for one in [spec] if isinstance(spec, (str, os.PathLike)) else list(spec):
        s = str(one)
        base = os.environ.get("CKS_DATA_DIR")
        if os.path.isabs(s) or s.startswith("~"):
            full = os.path.abspath(os.path.expanduser(s))
            if base and full.startswith(os.path.abspath(base) + os.sep):
                s = os.path.relpath(full, os.path.abspath(base))
            else:
                s = os.path.basename(full.rstrip(os.sep)) or s
        out.append(s)
    return ",".join(out) if len(out) > 1 else out[0]


def diagnose_run(run_dir, data_spec, out_dir=None, max_images: int | None = None, score_threshold: float = 0.5,
                 progress: bool = True, true_size: bool = False) -> dict:
    """Shape diagnostics, collaborator foreground fraction and training maps of a run on a data set with masks.

    Predicts every image of ``data_spec`` with :func:`cks.predict.predict` (the model's training scale),
    compares with the GT at native resolution (bins and offsets at the training scale), writes
    ``diagnostics.json``, ``shape.png``, ``boundary_profile.png`` (:mod:`cks.boundary_profile`: the image's mean
    intensity against the signed distance to the true and to the predicted boundaries), ``training_maps.png`` and,
    for a CKS run, ``consistency_trace.png`` (:mod:`cks.trace`: masks and ``M_c`` on the true cells per snapshot)
    into ``out_dir`` (default ``run_dir/diagnose``) and returns the JSON summary. ``true_size``: predict each image at its true cell size
    (median equivalent diameter of its masks) instead of the model's own size estimate, so the figures show
    the shape of the masks alone.
    """
    from tqdm.auto import tqdm

    from .checkpoint import load_checkpoint, load_model
    from .data.writers import atomic_write_text
    from .data.readers import rescale_sample
    from .data.spec import load_dataset
    from .predict import predict
    from .boundary_profile import boundary_profile
    from .viz_diagnose import plot_boundary_profile, plot_shape_diagnostics, show_training_maps

    run = Path(run_dir)
    out = Path(out_dir) if out_dir else (run if run.is_dir() else run.parent) / "diagnose"
    model = load_model(run)
    scale = float(getattr(model, "scale", 1.0))
    samples = load_dataset(data_spec, scale=1.0, points="none")[:max_images]
    if not samples or any(s.get("label") is None for s in samples):
        raise CksDataError(f"{_portable(data_spec)}: diagnose needs images with masks (label images)")
    from .size import median_diameter

    preds = [predict(model, s["image"], score_threshold=score_threshold,
                     diameter=median_diameter(s["label"]) if true_size else None)[0]
             for s in tqdm(samples, desc="diagnose", disable=not progress, dynamic_ncols=True)]
    res = shape_diagnostics(preds, [s["label"] for s in samples], scale=scale)
    images = [s["image"] for s in samples]
    true_profile = boundary_profile(images, [s["label"] for s in samples], scale)
    profile = {"scale": scale, "distance": true_profile["distance"], "true": true_profile["mean"],
               "predicted": boundary_profile(images, preds, scale)["mean"]}
    ckpt = load_checkpoint(run)
    collab = _collaborator(ckpt)
    fraction = None if collab is None else collaborator_foreground_fraction(collab, samples, scale)
    first = rescale_sample(samples[0], scale) if scale != 1.0 else samples[0]
    maps = training_maps(run, first)
    over = shape_over_training(run, samples, score_threshold) if len(snapshot_files(run)) > 1 else []
    from .trace import consistency_trace, plot_consistency_trace

    # masks on their own / the neighbours' cells and M_c on the cells, per snapshot (collapse or spread?)
    trace = [] if collab is None else consistency_trace(
        run, samples if model.cfg.size.normalize or scale == 1.0 else [rescale_sample(s, scale) for s in samples])
    summary = {"run": run.name if run.is_dir() else f"{run.parent.name}/{run.name}", "data": _portable(data_spec),
               "step": int(ckpt.get("step", 0)), "scale": scale, "score_threshold": float(score_threshold),
               "size": "true cell size (from the masks)" if true_size else "the model's own estimate",
               "n_images": len(samples), "shape": summarise(res), "collaborator_foreground": fraction,
               "training_maps": {"steps": [r["step"] for r in maps["rows"]],
                                 "fg_fraction": [r["fg_fraction"] for r in maps["rows"]],
                                 "true_fg_fraction": None if maps["label"] is None else float((maps["label"] > 0).mean())},
               "shape_over_training": over, "boundary_profile": profile, "consistency_trace": trace,
               "figures": ["shape.png", "boundary_profile.png", "training_maps.png"]
               + (["consistency_trace.png"] if trace else [])}
    summary = _jsonable(summary)
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib.pyplot as plt

    figures = [("shape.png", plot_shape_diagnostics(res)), ("boundary_profile.png",
               plot_boundary_profile(profile, collaborator=(fraction or {}).get("profile"))),
               ("training_maps.png", show_training_maps(maps))]
    if trace:
        figures.append(("consistency_trace.png", plot_consistency_trace({summary["run"]: trace})))
    for name, fig in figures:
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
    atomic_write_text(json.dumps(summary, indent=2), out / "diagnostics.json")
    return summary


# ----------------------------------------------------------------------------- command line
def add_parser(subparsers):
    """Register ``cks diagnose RUN --data SPEC [--out DIR] [--max-images N] [--score-threshold T]``."""
    import argparse

    text = ("is shape being learned? signed boundary offset, area ratio and IoU vs disks per size bin, where the mask "
            "edges sit on the image (boundary profile), run maps")
    p = subparsers.add_parser("diagnose", help=text, description=text, formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="example:\n  cks diagnose runs/cks --data usiigaci_nih3t3_phase/val:set46-50")
    p.add_argument("run", help="run folder (or checkpoint.pt)")
    p.add_argument("--data", required=True, help="dataset spec with masks, PATH[:SELECTOR] (see cks.data.spec)")
    p.add_argument("--out", help="output folder (default RUN/diagnose)")
    p.add_argument("--max-images", type=int, help="use only the first N images")
    p.add_argument("--score-threshold", type=float, default=0.5,
                   help="detection score threshold for the predictions that are diagnosed (default 0.5)")
    p.add_argument("--true-size", action="store_true",
                   help="predict each image at its true cell size (from its masks) instead of the automatic estimate")
    return p


def run_cli(args) -> dict:
    s = diagnose_run(args.run, args.data, out_dir=args.out, max_images=args.max_images,
                     score_threshold=args.score_threshold, true_size=args.true_size)
    print("| bin (px) | GT | matched | IoU>=0.5 | offset px | offset/diam | area ratio | IoU | disk IoU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in s["shape"]["bins"] + [dict(s["shape"]["overall"], bin="all")]:
        f = [("-" if r[k] is None else f"{r[k]:.3g}") for k in ("offset_median", "offset_rel_median",
                                                                 "area_ratio_median", "iou_median", "disk_iou_median")]
        print(f"| {r['bin']} | {r['n_gt']} | {r['n_matched']} | {r['n_matched_50']} | " + " | ".join(f) + " |")
    cr = s["shape"]["count_ratio"]
    sl = s["shape"]["overall"].get("size_slope")
    print(f"size tracking (log-log slope of predicted on true area, matched cells; 1 = masks follow cell size, "
          f"0 = one size for all): {'-' if sl is None else f'{sl:.2f}'}")
    print(f"count ratio (predicted / GT): {'-' if cr is None else f'{cr:.3f}'}")
    prof = s["boundary_profile"]

    def peak(curve):  # the distance (px) of the brightest bin; "-" when no bin has pixels
        ok = [(v, d) for v, d in zip(curve, prof["distance"]) if v is not None and math.isfinite(v)]
        return f"{max(ok)[1]:+d} px" if ok else "-"

    print(f"brightest image band (boundary_profile.png; a phase halo): {peak(prof['true'])} from the true boundary, "
          f"{peak(prof['predicted'])} from the predicted one (outside > 0)")
    cp = (s.get("collaborator_foreground") or {}).get("profile")
    if cp:
        at = {d: v for d, v in zip(cp["distance"], cp["m_c"])}
        shown = " ".join(f"{d:+d}:{at[d]:.2f}" for d in (-3, -1, 1, 3, 5) if d in at and at[d] is not None
                         and math.isfinite(at[d]))
        print(f"collaborator M_c across the true boundary (px: mean M_c) {shown}; {100 * cp['saturated']:.0f} % of "
              f"pixels within 3 px of it have |logit| >= 3 (where the linear L_M of Eq. 6 hardly moves M_c)")
    if s.get("consistency_trace"):
        print("consistency trace (consistency_trace.png; masks at the true centroids; a collapse drives all to 0):")
        for r in s["consistency_trace"]:
            v = {k: ("-" if r[k] is None or not math.isfinite(r[k]) else f"{r[k]:.2f}")
                 for k in ("mask_own", "mask_neighbours", "mask_peak", "m_c_cells", "m_c_background")}
            print(f"  step {r['step']}{'' if r['prior_on'] else ' (prior off)'}: mask on own cell {v['mask_own']}, on "
                  f"neighbours {v['mask_neighbours']}, peak {v['mask_peak']}; M_c on cells {v['m_c_cells']}, "
                  f"background {v['m_c_background']}")
    return s

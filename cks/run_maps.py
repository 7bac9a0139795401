"""What a run's models show on images with masks: the collaborator's foreground and the maps of every snapshot.

* :func:`collaborator_foreground_fraction`: foreground fraction of the collaborator's ``M_c`` vs the GT, their
  IoU, and how ``M_c`` runs across the true boundary.
* :func:`snapshot_files`: a run's snapshots in step order (optionally a few, evenly spaced).
* :func:`training_maps`: ``M_p`` (Eq. 4), ``M_c`` and ``B_p`` (Eq. 9) on one crop for every snapshot of a run.
* :func:`shape_over_training`: :func:`cks.matched_shape.shape_diagnostics` of every snapshot.
* :func:`collaborator_maps`: the collaborator's ``M_c`` and ``B_c`` on one image (Fig. 7 analogue).

Used by :func:`cks.diagnose.diagnose_run` (``cks diagnose``), :mod:`cks.trace` and the benchmarks; plots in
:mod:`cks.viz_diagnose`. Models are loaded lazily; nothing runs on import.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import CksDataError
from .matched_shape import shape_diagnostics, summarise

__all__ = ["foreground_iou", "collaborator_foreground_fraction", "snapshot_files", "training_maps",
           "shape_over_training", "collaborator_maps"]


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
            (and optional ``cell_type``, the head index of a collaborator with one head per line, ``cell_type_name``
            and ``name``). scale: resize factor to the training scale before the collaborator,
            one for all images or one per image (e.g. each image at its true cell size).
    Returns:
        ``{"collaborator": [...], "true": [...], "ratio": [...], "iou": [...], "names": [...], "cell_types": [...],
        "heads": [...], "profile": {...}}``, one entry per image in ``samples``' order (``names``: each sample's
        ``name``; ``cell_types``: its ``cell_type_name``, "" where none; ``heads``: the collaborator head it was read
        with, ``max(cell_type, 0)``; so that per-line heads can be read apart): ratio =
        collaborator / true (NaN if no GT); iou = foreground IoU of ``M_c >= 0.5`` with ``label > 0`` at native
        resolution (the logits resized bilinearly to the label's size; NaN if both are empty). The IoU says how
        well the collaborator sees cells at all; ``benchmarks/collaborator_ceiling.py`` measures what the same
        network reaches when trained on the true foreground. ``profile`` (:func:`cks.boundary_profile.map_profile`,
        distances in px at the training scale, outside > 0): ``"m_c"`` the mean ``M_c`` and ``"abs_logit"`` the
        mean ``|fg_logit|`` per bin, and ``"saturated"`` the fraction of pixels within 3 px of the true boundary
        with ``|fg_logit| >= 3`` (``M_c`` outside [0.05, 0.95]). The linear L_M of Eq. 6 moves a logit by
        ``(1 - 2 M_p) M_c (1 - M_c)``: M_c (1 - M_c) < 0.046 at such pixels, under a fifth of its largest value (0.25),
        however wrong ``M_c`` is there.
    """
    import torch
    import torch.nn.functional as F

    from .boundary_profile import map_profile, signed_distance

    dev = next(collaborator.parameters()).device
    scales = list(scale) if isinstance(scale, (list, tuple, np.ndarray)) else [scale] * len(samples)
    if len(scales) != len(samples):
        raise CksDataError(f"collaborator_foreground_fraction: {len(scales)} scales for {len(samples)} images")
    heads = [max(int(s.get("cell_type", 0) or 0), 0) for s in samples]  # the head each image is read with
    pred, true, iou, probs, conf, labels = [], [], [], [], [], []
    near = sat = 0
    with torch.no_grad():
        for s, sc, head in zip(samples, scales, heads):
            ct = torch.tensor([head], device=dev)
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
            "names": [str(s.get("name", "")) for s in samples],
            "cell_types": [str(s.get("cell_type_name", "") or "") for s in samples],
            "heads": heads,
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


def training_maps(run_dir, sample: dict, crop: int | None = None, max_snapshots: int | None = None) -> dict:
    """``M_p`` (Eq. 4), ``M_c = sigmoid(fg_logits)`` and ``B_p`` (Eq. 9) on one crop, for every snapshot of a run.

    The principal runs at the sample's GT points (as in training); ``M_p`` uses the prior (d in px, pi) of
    the training objective at that step (:func:`cks.losses.cks.effective_loss_config`, warm-up included). Where
    that step's L_M followed the image's regions (``loss.collaborator_target = "geodesic"``, ours), ``"M_p"`` is
    that target (:func:`cks.losses.cks.geodesic_target`) and ``"target"`` says so.

    Args:
        run_dir: run folder (``snapshots/step_*.pt``, else ``checkpoint.pt``) or one checkpoint file.
        sample: dict with ``image`` and ``points`` (or ``label``, whose centroids are used), optional
            ``label`` (shown) and ``cell_type``; at the model's training scale.
        crop: side of the square crop around the median point (default: min(H, W, 4 x window)).
        max_snapshots: keep this many snapshots, evenly spaced (the last always kept).
    Returns:
        ``{"image", "label", "points"`` (crop), ``"rows": [{"step", "M_p", "M_c", "B_p", "fg_fraction", "target"}]}``
        (``"target"``: ``"M_p"`` or ``"geodesic"``, what L_M's target is at that step by the run's schedule, i.e. for the
        step after the snapshot, as ``"M_p"``'s prior is).
    """
    import torch

    from .checkpoint import load_checkpoint
    from .config import Config
    from .losses.border import principal_border
    from .losses.cks import lm_target, prior_d_per_window
    from .models.principal import Principal
    from .points import centroids
    from .schedule import loss_config_at

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
        principal.load_state_dict(ck.get("principal_raw", ck["principal"]))  # the weights training used (cks.ema)
        collab = _collaborator(ck)
        lc = loss_config_at(cfg, step)  # Eq. 4's d (px), pi, centre and shape as training used them at ``step``
        shape = (1, side, side)
        with torch.no_grad():
            out = principal.eval()(x, p)
            lg, b, o, sp = out["seg_logits"], out["seg_batch"], out["seg_origin"], out["seg_points"]
            d = prior_d_per_window(ct, b, torch.as_tensor(lc.prior_d, dtype=torch.float32).reshape(-1))
            m_p = lm_target(lc, {"logits": lg, "batch": b, "origin": o, "points": sp}, shape, d, x)[0].numpy()
            b_p = principal_border(lg, b, o, shape, cfg.loss.border_magnitude)[0].numpy()
            m_c = None if collab is None else torch.sigmoid(collab(x, ct)["fg_logits"])[0].numpy()
        rows.append({"step": step, "M_p": m_p, "M_c": m_c, "B_p": b_p,
                     "fg_fraction": None if m_c is None else float((m_c >= 0.5).mean()),
                     "target": "geodesic" if lc.collaborator_target == "geodesic" else "M_p"})
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


def collaborator_maps(collaborator, image, cell_type: int | None = None) -> dict:
    """The collaborator's ``M_c`` (foreground) and ``B_c`` (border) probabilities for one image.

    Args:
        collaborator: a trained :class:`cks.models.collaborator.Collaborator` (``train(...)["collaborator"]``).
        image: ``[C, H, W]`` or ``[H, W]`` raw image (normalised here as in training).
        cell_type: the image's cell-type index (needed when the collaborator has several heads).
    Returns:
        ``{"M_c": float32 [H, W], "B_c": float32 [H, W]}`` in [0, 1].
    """
    import numpy as np
    import torch

    from .data.io import image_batch

    param = next(collaborator.parameters())
    x = image_batch(np.asarray(image, np.float32), param.device)
    ct = None if cell_type is None else torch.tensor([int(cell_type)], device=param.device)
    was = collaborator.training
    collaborator.eval()
    with torch.no_grad():
        out = collaborator(x, ct)
    collaborator.train(was)
    return {"M_c": torch.sigmoid(out["fg_logits"][0]).cpu().numpy(),
            "B_c": torch.sigmoid(out["border_logits"][0]).cpu().numpy()}

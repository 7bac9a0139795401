"""Inference: image in, label image + per-cell table out (untiled or by overlapping tiles).

``predict(model, image)`` normalises the image per channel, optionally rescales it (by a factor
or an expected cell diameter), runs the principal model, keeps detections with score >=
``score_threshold`` (default 0.5, the author's ``predict_label`` default), thresholds each cell's
window at ``mask_threshold`` (0.5) and pastes the windows into one label image, the
higher-scoring cell winning overlaps (:func:`cks.windows.paste_labels`). Labels are numbered 1..n
in descending score order; the table has ``label, score, y, x, area`` (native resolution).

Large images are cut into overlapping tiles. The *cores* of the tiles (each tile minus half the
overlap on its interior sides) partition the image. A tile proposes the cells it detects in its
core grown by a small margin (``detector.nms_radius``, at most ``(overlap - window) / 2``), and one
point-distance NMS over all proposals keeps the best-scoring detection of each cell: a cell near
a seam that two tiles locate slightly differently is neither duplicated nor lost. The overlap
(default 2 x window + 32, at least one window) keeps a proposed cell's window inside its tile, so
cells are never cut. The windows of all tiles are pasted together once, so memory holds one
tile's features plus the thresholded (uint8) windows. The model's GroupNorm layers normalise over
a whole tile, so tiled and untiled results agree closely but not exactly; use a large ``tile``.

A blank (constant) image has no cells: the result is an all-zero label image and an empty table, and no
cell size is estimated for it (``info["diameter"]`` is None).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .data.io import normalize_image
from .errors import CksConfigError
from .predict_checks import as_chw as _as_chw, check_diameter, check_scale
from .tta import TTA_CHOICES, augmented_window_logits, transforms_for
from .predict_scale import (  # noqa: F401  (constants re-exported: cks.predict.SEARCH_SIDE, ...)
    MAX_RANGE, MIN_CELLS_FOR_SIZE, POINT_PASSES, REFINE_RANGE, REGRESSOR_MIN_CELLS, REGRESSOR_PASSES,
    SEARCH_MIN_SCORE, SEARCH_SIDE, SEARCH_STEPS, SIZE_FROM, SIZE_MIN_SCORE, TOP_N, _diameter_at_points,
    _scale_by_points, _scale_by_regressor, _scale_by_score)
from .windows import native_windows, paste_labels


def _is_blank(img: np.ndarray) -> bool:
    """True when every channel of ``img [C, H, W]`` is constant (no cells, nothing to normalise)."""
    flat = img.reshape(img.shape[0], -1)
    return bool((flat.min(1) == flat.max(1)).all())


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


@torch.no_grad()
def _run_tile(model, x: torch.Tensor, core: tuple[int, int, int, int], offset: tuple[int, int], mask_threshold: float,
              margin: float = 0.0, keep_probs: bool = False, transforms=TTA_CHOICES["none"]):
    """Detections of one tile whose location lies in ``core`` (y0, y1, x0, x1, tile coords) grown by ``margin``.

    Returns ``(points [K, 2], scores [K], masks [K, S, S], origin [K, 2])``: ``masks`` are the windows thresholded
    at ``mask_threshold`` (uint8), or with ``keep_probs`` their probabilities (float16, thresholded later).
    ``transforms``: the orientations whose windows are averaged (:func:`cks.tta.augmented_window_logits`).
    """
    out = model(x[None])
    pts, sc, lg, org = out["seg_points"], out["seg_scores"], out["seg_logits"], out["seg_origin"]
    y0, y1, x0, x1 = core
    keep = ((pts[:, 0] >= y0 - 0.5 - margin) & (pts[:, 0] < y1 - 0.5 + margin)
            & (pts[:, 1] >= x0 - 0.5 - margin) & (pts[:, 1] < x1 - 0.5 + margin))
    off = torch.tensor(offset, device=pts.device)
    lg = augmented_window_logits(model, x, pts[keep], lg[keep], org[keep], transforms)
    prob = torch.sigmoid(lg)
    masks = prob.half() if keep_probs else (prob >= mask_threshold).to(torch.uint8)
    return pts[keep] + off, sc[keep], masks, org[keep] + off


def _tiles(n: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """``(start, size, core0, core1)`` per tile along one axis of length ``n`` (core in tile coords)."""
    if n <= tile:
        return [(0, n, 0, n)]
    step = tile - overlap
    count = max(1, math.ceil((n - overlap) / step))
    out = []
    for i in range(count):
        start = min(i * step, n - tile)
        c0 = 0 if i == 0 else i * step + overlap // 2 - start
        c1 = tile if i == count - 1 else (i + 1) * step + overlap // 2 - start
        out.append((start, tile, c0, c1))
    return out


def _empty_result(h: int, w: int):
    table = {"label": np.zeros(0, np.int32), "score": np.zeros(0, np.float32), "y": np.zeros(0, np.float32),
             "x": np.zeros(0, np.float32), "area": np.zeros(0, np.int64)}
    return np.zeros((h, w), np.int32), table


@torch.no_grad()
def predict(model, image, score_threshold: float = 0.5, mask_threshold: float = 0.5, min_area: int = 0,
            scale: float | None = None, diameter: float | None = None, model_diameter: float | None = None,
            tile: int = 1024, overlap: int | None = None, device: str | None = None, size_from: str = "auto",
            points=None, mask_resampling: str = "label", tta="none", return_info: bool = False):
    """Segment one image.

    Args:
        model: a :class:`cks.models.Principal` (``cks.checkpoint.load_model(run_dir)``).
        image: ``[H, W]``, ``[C, H, W]`` or channel-last ``[H, W, C]`` array (C <= 3, real numbers of any
            dtype); normalised here.
        score_threshold: minimum detection score of a reported cell, in [0, 1].
        mask_threshold: a pixel belongs to a cell where the sigmoid of its mask logit reaches this, in (0, 1);
            lower draws larger cells (:func:`cks.threshold.tune_mask_threshold` chooses it on images with masks).
        min_area: cells with fewer pixels at the model's resolution are dropped (0: none).
        scale: resize factor applied before the model (results are mapped back); wins over everything else.
        diameter: the cell size of this image (median equivalent diameter, px); the image is resized by
            ``model_diameter / diameter``.
        model_diameter: the cell size the model was trained at (default: ``model.cfg.size.diameter`` for a
            size-normalised model, else 30).
        size_from: how a size-normalised model finds an image's cell size when neither ``scale`` nor
            ``diameter`` is given (other models use ``model.scale``, their fixed training scale):
            ``"auto"`` (default): ``"learned"`` when the model has a fitted size regressor
            (``model.size_model``, fitted at the end of ``cks train``), else ``"score"``.
            ``"learned"``: :func:`cks.size_model.estimate_diameter_learned`, a ridge regressor on the model's
            own features trained on the training images shown at random scales (Cellpose's size model). Within
            20 % of the true size on 28/28 Usiigaci and 5/10 DeepCell tuning field-runs (scale search 19/28,
            2/10), but on only 13/35 Usiigaci report field-runs (scale search 20/35): it over-estimated their
            smaller cells (``results/size_estimate/prediction_*.json``). Regressors fitted since issue #9 session
            31 pool the features at the model's detections: 9/15 report field-runs within 20 % against 6/15 for
            the same three runs pooled over the whole image (``results/size_estimate/probe_*_report_*.json``).
            ``"score"``: a scale search. A detector is most confident about cells shown at the
            size it was trained on, so the image (a central crop of it) is predicted at
            ``SEARCH_STEPS`` scales ``model.scale * 2^(k/3)`` and the one whose top detection scores are
            highest wins (refined by a parabola through it and its neighbours in log-scale). The sizes of
            the predicted masks are no guide: a model draws cells near its training size whatever the
            scale, and fragments cells shown too large (measured on the tuning fields, issue #9).
            ``"refined"``: ``"learned"`` (``"score"`` without a regressor), then ``"points"`` started there and kept
            within ``REFINE_RANGE`` of it: the regressor reads the *look* of a field, the detections measure its
            cells (foreground area per detected cell), and the start near the right scale keeps the detections
            from running away (see ``"points"``). Measured on the tuning splits (session 14,
            ``results/size_estimate/*_s14.json``): within 20 % on 6/8 Usiigaci field-runs (regressor 8/8) and 2/5
            DeepCell fields (regressor 1/5); the detections of debris, fragments and missed cells bias it (a
            ``SIZE_MIN_SCORE`` of 0.7 instead of 0.5 over-estimated instead: 1/8 and 1/5), so ``"auto"`` keeps
            the regressor.
            ``"points"``: predict, :func:`cks.size.estimate_diameter` at the confident detections (the
            estimate used for training from points), rescale, repeat. Right on clean cells, but a model that
            also detects debris or cuts cells into fragments sees more points, a smaller size, a larger
            scale and more fragments: on Usiigaci tuning fields it ran away to 2-3x the true scale where the
            score search stayed within 25 % (issue #9 closing note); use it only with clean detections.
        points: ``[N, 2]`` (y, x) native px, one per cell of this image, e.g. a nuclear stain's
            (:func:`cks.points.points_from_nuclei`) or clicks: the cell size is measured at them
            (:func:`cks.size.estimate_diameter`, the estimate used for training from points) instead of
            estimated by the model; ``scale`` and ``diameter`` win over it. The image is still segmented by
            the model alone (the points set its scale, nothing else).
        tile: tile side (px, model resolution); images larger than this are tiled.
        overlap: tile overlap (default 2 x window + 32; at least one window, less than ``tile``).
        mask_resampling: how the masks of an image shown at another scale return to its resolution.
            ``"label"`` (default): each cell's window is thresholded at the model's resolution and the label
            image is mapped back by nearest neighbour. ``"bilinear"``: each cell's mask probabilities are resized
            to the input's resolution (bilinear) and thresholded there, so its boundary is placed to a native
            pixel. Sent through either path, the true Usiigaci tuning masks keep a median IoU of 0.925 with
            themselves with ``"label"`` and 0.953 with ``"bilinear"`` (``benchmarks/mask_resolution.py``). It costs
            more time: ``python -m cks.bench`` times both ways back (about 4x the label path's pasting with
            thousands of large random masks, a third of the model's time at 4,000 cells on a 2-core CPU).
        tta: test-time augmentation of the masks (ours): ``"none"`` (default), ``"flips"`` (or ``True``: the
            image also flipped up-down, left-right and both) or ``"d4"`` (those and their transposes). The cells
            are found on the image as it is (detections and scores unchanged; a cell whose mask becomes empty may be
            dropped or kept where it was not); each cell's mask probabilities are averaged over the orientations
            (:mod:`cks.tta`), at one more model pass per orientation (4x or 8x the time of the final pass; the
            size search is not repeated). Measured on the Usiigaci tuning fields (``benchmarks/tta.py``, 2,400-step
            probes): supervised Dice +0.004, AP50 +0.014 with ``"flips"``; CKS from points no gain (Dice -0.0003,
            AP50 -0.015), so no protocol uses it.
        return_info: also return ``{"scale", "diameter" (estimated or given, native px, or None),
            "diameter_source", "passes"}``.
    Returns:
        ``(label int32 [H, W], table)`` with ``table`` a dict of numpy arrays ``label, score, y, x, area``
        (labels 1..n in descending score order, ``y, x, area`` at native resolution), plus ``info`` with
        ``return_info``. The label image is always at the input's native resolution.
    Raises:
        CksDataError: bad image shape or dtype (complex, non-numeric), NaN/inf pixels or values beyond float32.
            CksConfigError: bad scale/tile/overlap/diameter, a threshold out of range, or a scale that would enlarge
            the image past :data:`cks.predict_checks.MAX_MODEL_PIXELS`.
    Warns:
        UserWarning: a result that cannot be good (a scale far from a fixed-scale model's, an image smaller than
            one cell at its scale, a learned size estimate from too small an image or at the end of its range).
    """
    img = _as_chw(image)
    if not 0.0 <= float(score_threshold) <= 1.0:
        raise CksConfigError(f"score_threshold must be in [0, 1] (a detection score), got {score_threshold}")
    if not 0.0 < float(mask_threshold) < 1.0:
        raise CksConfigError(f"mask_threshold must be in (0, 1) (a mask probability; default 0.5), got {mask_threshold}")
    size_cfg = getattr(getattr(model, "cfg", None), "size", None)
    normalised = bool(getattr(size_cfg, "normalize", False))
    if model_diameter is None:
        model_diameter = float(size_cfg.diameter) if normalised else 30.0
    if mask_resampling not in MASK_RESAMPLING:
        raise CksConfigError(f"mask_resampling must be one of {', '.join(map(repr, MASK_RESAMPLING))}, "
                             f"got {mask_resampling!r}")
    transforms_for(tta)  # a bad choice fails here, before any work
    kw = dict(score_threshold=score_threshold, mask_threshold=mask_threshold, min_area=min_area, tile=tile,
              overlap=overlap, device=device, mask_resampling=mask_resampling, tta=tta)
    info = {"scale": None, "diameter": None, "diameter_source": None, "passes": 1}
    source = "given"
    blank = _is_blank(img)  # no cells, so no cell size to find or warn about
    if scale is None and diameter is None and points is not None and not blank:
        diameter, source = _diameter_at_points(img, points), "measured at the given points"
    if scale is None and diameter is not None:
        diameter = check_diameter(diameter)
        scale = model_diameter / diameter
        info.update(diameter=diameter, diameter_source=source)
    if size_from not in SIZE_FROM:
        raise CksConfigError(f"size_from must be one of {', '.join(map(repr, SIZE_FROM))}, got {size_from!r}")
    if scale is None and normalised and not blank:
        learned = getattr(model, "size_model", None)
        if size_from == "learned" and learned is None:
            raise CksConfigError("size_from='learned' needs a fitted size regressor (size_model.json in the run "
                                 "folder, written at the end of `cks train`); use size_from='score' or give diameter=")
        # the size found depends neither on the reporting mask threshold nor on how the masks are resampled
        search_kw = dict(kw, mask_threshold=0.5, mask_resampling="label", tta="none")
        if size_from in ("auto", "learned", "refined") and learned is not None:
            scale, passes, source = _scale_by_regressor(model, img)
        else:
            find = _scale_by_points if size_from == "points" else _scale_by_score
            scale, passes, source = find(model, img, **search_kw)
        if size_from == "refined":  # then measured at the model's own confident detections at that scale
            scale, more, _ = _scale_by_points(model, img, start=scale, max_range=REFINE_RANGE, **search_kw)
            passes, source = passes + more, source[:-1] + ", refined at its detections)"
        info.update(diameter=model_diameter / scale, diameter_source=source, passes=passes + 1)
    scale = float(getattr(model, "scale", 1.0)) if scale is None else scale
    scale = check_scale(scale, img.shape[-2:], None if normalised else float(getattr(model, "scale", 1.0)),
                        info["diameter"], model_diameter if normalised and not blank else None)
    label, table = _predict_at(model, img, scale, **kw)
    info["scale"] = scale
    return (label, table, info) if return_info else (label, table)


#: the values of ``predict(mask_resampling=...)``
MASK_RESAMPLING = ("label", "bilinear")


def _predict_at(model, img: np.ndarray, scale: float, score_threshold: float, mask_threshold: float, min_area: int,
                tile: int, overlap: int | None, device: str | None, mask_resampling: str = "label", tta="none"):
    """One pass at a fixed ``scale`` (see :func:`predict`); ``img`` is ``[C, H, W]``, checked."""
    h, w = img.shape[-2:]
    if not (math.isfinite(scale) and scale > 0):
        raise CksConfigError(f"scale must be a positive number, got {scale}")
    if _is_blank(img):
        return _empty_result(h, w)  # blank image: nothing to find (and nothing to normalise)
    device = device or next(model.parameters()).device
    x = torch.from_numpy(normalize_image(img.astype(np.float32))).to(device)
    hs, ws = max(1, round(h * scale)), max(1, round(w * scale))
    if (hs, ws) != (h, w):
        x = _resize(x, (hs, ws))
    window = model.cfg.segmentor.window
    overlap = int(overlap) if overlap is not None else 2 * window + 32
    probs = mask_resampling == "bilinear" and (hs, ws) != (h, w)  # threshold after resizing the masks back
    transforms = transforms_for(tta)
    if hs < MIN_SIDE or ws < MIN_SIDE:  # the deepest feature map must have more than one pixel (GroupNorm)
        return _predict_small(model, x, (h, w), (hs, ws), score_threshold, mask_threshold, min_area, probs, transforms)
    tiled = hs > tile or ws > tile
    if tiled and not window <= overlap < tile:
        raise CksConfigError(f"tile overlap must be at least the window ({window} px) and less than the tile "
                             f"({tile} px), got {overlap}; use a tile of at least {overlap + 32} px")
    margin = min(float(model.cfg.detector.nms_radius), (overlap - window) / 2) if tiled else 0.0
    parts = []
    for ty, th, cy0, cy1 in _tiles(hs, tile, overlap):  # loop over tiles, not cells
        for tx, tw, cx0, cx1 in _tiles(ws, tile, overlap):
            parts.append(_run_tile(model, x[:, ty:ty + th, tx:tx + tw], (cy0, cy1, cx0, cx1), (ty, tx),
                                   mask_threshold, margin, probs, transforms))
    pts = torch.cat([p[0] for p in parts]).cpu()
    sc = torch.cat([p[1] for p in parts]).cpu()
    masks = torch.cat([p[2] for p in parts]).cpu()
    org = torch.cat([p[3] for p in parts]).cpu()
    if len(parts) > 1:  # one detection per cell across tile seams
        from .models.detector import nms_points

        keep = nms_points(pts, sc, float(model.cfg.detector.nms_radius))
        pts, sc, masks, org = pts[keep], sc[keep], masks[keep], org[keep]
    return _finish(pts, sc, masks, org, (h, w), (hs, ws), score_threshold, min_area, mask_threshold if probs else None)


#: inputs smaller than this (px, model resolution) are padded with the image mean before the model
MIN_SIDE = 128


def _predict_small(model, x: torch.Tensor, native: tuple[int, int], size: tuple[int, int], score_threshold: float,
                   mask_threshold: float, min_area: int, probs: bool = False, transforms=TTA_CHOICES["none"]):
    """An input smaller than ``MIN_SIDE``: pad it (zeros = the normalised mean), keep detections inside."""
    hs, ws = size
    xp = F.pad(x, (0, max(0, MIN_SIDE - ws), 0, max(0, MIN_SIDE - hs)))
    pts, sc, masks, org = _run_tile(model, xp, (0, hs, 0, ws), (0, 0), mask_threshold, keep_probs=probs,
                                    transforms=transforms)
    return _finish(pts.cpu(), sc.cpu(), masks.cpu(), org.cpu(), native, size, score_threshold, min_area,
                   mask_threshold if probs else None)


def _finish(pts, sc, masks, org, native: tuple[int, int], size: tuple[int, int], score_threshold: float,
            min_area: int, mask_threshold: float | None = None):
    """Paste windows (model resolution ``size``) into a label image at ``native`` + table.

    ``masks [K, S, S]``: thresholded windows (uint8), pasted at model resolution and mapped back by nearest
    neighbour; or, with ``mask_threshold``, probabilities resized to ``native`` first (:func:`cks.windows.native_windows`).
    """
    (h, w), (hs, ws) = native, size
    if mask_threshold is not None:
        keep = sc >= score_threshold  # resize only the windows that can become cells
        pts, sc, masks, org = pts[keep], sc[keep], masks[keep], org[keep]
        masks, org = native_windows(masks, org, (h / hs, w / ws), mask_threshold)
        min_area = int(math.ceil(min_area * (h / hs) * (w / ws)))  # min_area counts model-resolution pixels
        hs, ws = h, w
    logits = masks.to(torch.int8) * 2 - 1  # >= 0 where the mask is on
    label, _, label_of = paste_labels(logits, sc, torch.zeros(len(sc), dtype=torch.long), org, (1, hs, ws),
                                      score_threshold=score_threshold, mask_threshold=0.5, min_area=min_area)
    label = label[0]
    if (hs, ws) != (h, w):  # back to native resolution (nearest neighbour)
        label = F.interpolate(label[None, None].float(), size=(h, w), mode="nearest")[0, 0].int()
    if size != native:
        pts = (pts + 0.5) * torch.tensor([h / size[0], w / size[1]]) - 0.5
    label = label.numpy().astype(np.int32)
    alive = (label_of > 0).numpy()
    lab = label_of.numpy()[alive]
    order = np.argsort(lab)
    lab = lab[order]
    area = np.bincount(label.ravel(), minlength=int(lab.max(initial=0)) + 1)[lab]
    table = {"label": lab.astype(np.int32), "score": sc.numpy()[alive][order].astype(np.float32),
             "y": pts[:, 0].numpy()[alive][order].astype(np.float32),
             "x": pts[:, 1].numpy()[alive][order].astype(np.float32), "area": area.astype(np.int64)}
    gone = table["area"] == 0  # a cell can vanish when mapped back to a coarser grid
    if gone.any():
        table = {k: v[~gone] for k, v in table.items()}
        lut = np.zeros(int(lab.max()) + 1, np.int32)
        lut[table["label"]] = np.arange(1, len(table["label"]) + 1, dtype=np.int32)
        label = lut[label]
        table["label"] = np.arange(1, len(table["label"]) + 1, dtype=np.int32)
    return label, table


def scores_by_label(table: dict) -> dict[int, float]:
    """``{label: score}`` mapping for :func:`cks.metrics.evaluate`."""
    return {int(l): float(s) for l, s in zip(table["label"], table["score"])}

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

A blank (constant) image has no cells: the result is an all-zero label image and an empty table.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .data.io import normalize_image
from .errors import CksConfigError, CksDataError
from .windows import paste_labels


def _as_chw(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] > 3 or min(a.shape) < 1:
        raise CksDataError(f"image must be [H, W] or [C, H, W] with C <= 3, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise CksDataError("image has NaN/inf pixels; replace them (e.g. np.nan_to_num) before predicting")
    return a


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


@torch.no_grad()
def _run_tile(model, x: torch.Tensor, core: tuple[int, int, int, int], offset: tuple[int, int], mask_threshold: float,
              margin: float = 0.0):
    """Detections of one tile whose location lies in ``core`` (y0, y1, x0, x1, tile coords) grown by ``margin``."""
    out = model(x[None])
    pts, sc, lg, org = out["seg_points"], out["seg_scores"], out["seg_logits"], out["seg_origin"]
    y0, y1, x0, x1 = core
    keep = ((pts[:, 0] >= y0 - 0.5 - margin) & (pts[:, 0] < y1 - 0.5 + margin)
            & (pts[:, 1] >= x0 - 0.5 - margin) & (pts[:, 1] < x1 - 0.5 + margin))
    off = torch.tensor(offset, device=pts.device)
    masks = (torch.sigmoid(lg[keep]) >= mask_threshold).to(torch.uint8)
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
            tile: int = 1024, overlap: int | None = None, device: str | None = None, size_from: str = "masks",
            max_passes: int = 4, return_info: bool = False):
    """Segment one image.

    Args:
        model: a :class:`cks.models.Principal` (``cks.checkpoint.load_model(run_dir)``).
        image: ``[H, W]`` or ``[C, H, W]`` array (any dtype); normalised here.
        score_threshold: minimum detection score of a reported cell.
        scale: resize factor applied before the model (results are mapped back); wins over everything else.
        diameter: the cell size of this image (median equivalent diameter, px); the image is resized by
            ``model_diameter / diameter``.
        model_diameter: the cell size the model was trained at (default: ``model.cfg.size.diameter`` for a
            size-normalised model, else 30).
        With neither ``scale`` nor ``diameter``: a size-normalised model (``cfg.size.normalize``) estimates
        each image's cell size itself, Cellpose-style — predict at the model's median training scale
        (``model.scale``), measure the cell size of that result (``size_from``: ``"masks"``, the median
        equivalent diameter of the predicted masks, or ``"points"``, :func:`cks.size.estimate_diameter` at the
        detected points), rescale so the cells have ``model_diameter`` px and predict again, until the scale
        changes by <= 5 % (at most ``max_passes`` passes, a secant step in log-scale of at most 2x; the
        scale stays within 3x of the first). ``info["diameter"]`` is the cell size measured on the last pass
        but one. Other models use ``model.scale`` (their fixed training scale, e.g. 0.5 for Usiigaci).
        tile: tile side (px, model resolution); images larger than this are tiled.
        overlap: tile overlap (default 2 x window + 32; at least one window, less than ``tile``).
        return_info: also return ``{"scale", "diameter" (estimated or given, native px, or None),
            "diameter_source", "passes"}``.
    Returns:
        ``(label int32 [H, W], table)`` with ``table`` a dict of numpy arrays ``label, score, y, x, area``
        (labels 1..n in descending score order, ``y, x, area`` at native resolution), plus ``info`` with
        ``return_info``. The label image is always at the input's native resolution.
    Raises:
        CksDataError: bad image shape or NaN/inf pixels. CksConfigError: bad scale/tile/overlap/diameter.
    """
    img = _as_chw(image)
    size_cfg = getattr(getattr(model, "cfg", None), "size", None)
    normalised = bool(getattr(size_cfg, "normalize", False))
    if model_diameter is None:
        model_diameter = float(size_cfg.diameter) if normalised else 30.0
    kw = dict(score_threshold=score_threshold, mask_threshold=mask_threshold, min_area=min_area, tile=tile,
              overlap=overlap, device=device)
    info = {"scale": None, "diameter": None, "diameter_source": None, "passes": 1}
    if scale is None and diameter is not None:
        if not (math.isfinite(float(diameter)) and diameter > 0):
            raise CksConfigError(f"diameter must be > 0 px, got {diameter}")
        scale = model_diameter / float(diameter)
        info.update(diameter=float(diameter), diameter_source="given")
    if scale is not None or not normalised:
        scale = float(getattr(model, "scale", 1.0)) if scale is None else scale
        label, table = _predict_at(model, img, scale, **kw)
        info["scale"] = scale
        return (label, table, info) if return_info else (label, table)
    if size_from not in ("masks", "points"):
        raise CksConfigError(f"size_from must be 'masks' or 'points', got {size_from!r}")
    s0 = float(getattr(model, "scale", 1.0))
    scale, prev = s0, None
    label, table = _predict_at(model, img, scale, **kw)
    info["scale"] = scale
    for _ in range(max_passes - 1):  # predict, measure, rescale, predict again (until the scale settles)
        est = _measured_diameter(img, label, table, size_from)
        if est is None:
            break
        info.update(diameter=est, diameter_source=f"estimated from predicted {size_from}")
        # in model px the cells measure est * scale; a model pulls what it sees towards its training size,
        # so m(s) = est * s grows like s^alpha with alpha <= 1: a secant step in log-space (alpha from the
        # last two passes, clipped to [0.3, 1]) reaches m = model_diameter in few passes
        m = est * scale
        alpha = 1.0
        if prev is not None and abs(math.log(scale / prev[0])) > 1e-3:
            alpha = float(np.clip(math.log(m / prev[1]) / math.log(scale / prev[0]), 0.3, 1.0))
        step = float(np.clip((model_diameter / m) ** (1.0 / alpha), 1 / MAX_STEP, MAX_STEP))
        new = float(np.clip(scale * step, s0 / MAX_RANGE, s0 * MAX_RANGE))
        if abs(new / scale - 1.0) <= 0.05:
            break
        prev, scale = (scale, m), new
        label, table = _predict_at(model, img, scale, **kw)
        info.update(scale=scale, passes=info["passes"] + 1)
    return (label, table, info) if return_info else (label, table)


#: the automatic scale changes by at most this factor per pass, and stays within MAX_RANGE of the training scale
#: (cells of unseen fields differ ~2x in size; a poorly trained model's fragments must not blow an image up 16x)
MAX_STEP, MAX_RANGE = 2.0, 3.0

#: only detections scoring at least this measure the cell size (a low reporting threshold adds fragments)
SIZE_MIN_SCORE = 0.5

#: fewer cells than this in the first pass: too few to measure a size, the first pass stands
MIN_CELLS_FOR_SIZE = 3


def _measured_diameter(img: np.ndarray, label: np.ndarray, table: dict, size_from: str) -> float | None:
    """Median cell diameter (native px) of a first-pass result, or None when it found too few cells."""
    from . import size

    sure = table["score"] >= SIZE_MIN_SCORE  # the size comes from confident cells only, whatever is reported
    if int(sure.sum()) < MIN_CELLS_FOR_SIZE:
        return None
    if size_from == "masks":
        d = float(np.median(np.sqrt(4.0 * table["area"][sure] / np.pi)))
    else:
        d = size.estimate_diameter(img, np.stack([table["y"][sure], table["x"][sure]], 1))
    return float(d) if math.isfinite(d) and d > 0 else None


def _predict_at(model, img: np.ndarray, scale: float, score_threshold: float, mask_threshold: float, min_area: int,
                tile: int, overlap: int | None, device: str | None):
    """One pass at a fixed ``scale`` (see :func:`predict`); ``img`` is ``[C, H, W]``, checked."""
    h, w = img.shape[-2:]
    if not (math.isfinite(scale) and scale > 0):
        raise CksConfigError(f"scale must be a positive number, got {scale}")
    if np.all(img.reshape(img.shape[0], -1).std(1) == 0):
        return _empty_result(h, w)  # blank image: nothing to find (and nothing to normalise)
    device = device or next(model.parameters()).device
    x = torch.from_numpy(normalize_image(img.astype(np.float32))).to(device)
    hs, ws = max(1, round(h * scale)), max(1, round(w * scale))
    if (hs, ws) != (h, w):
        x = _resize(x, (hs, ws))
    window = model.cfg.segmentor.window
    overlap = int(overlap) if overlap is not None else 2 * window + 32
    tiled = hs > tile or ws > tile
    if tiled and not window <= overlap < tile:
        raise CksConfigError(f"tile overlap must be at least the window ({window} px) and less than the tile "
                             f"({tile} px), got {overlap}; use a tile of at least {overlap + 32} px")
    margin = min(float(model.cfg.detector.nms_radius), (overlap - window) / 2) if tiled else 0.0
    parts = []
    for ty, th, cy0, cy1 in _tiles(hs, tile, overlap):  # loop over tiles, not cells
        for tx, tw, cx0, cx1 in _tiles(ws, tile, overlap):
            parts.append(_run_tile(model, x[:, ty:ty + th, tx:tx + tw], (cy0, cy1, cx0, cx1), (ty, tx),
                                   mask_threshold, margin))
    pts = torch.cat([p[0] for p in parts]).cpu()
    sc = torch.cat([p[1] for p in parts]).cpu()
    masks = torch.cat([p[2] for p in parts]).cpu()
    org = torch.cat([p[3] for p in parts]).cpu()
    if len(parts) > 1:  # one detection per cell across tile seams
        from .models.detector import nms_points

        keep = nms_points(pts, sc, float(model.cfg.detector.nms_radius))
        pts, sc, masks, org = pts[keep], sc[keep], masks[keep], org[keep]
    logits = masks.float() * 2 - 1  # >= 0 where the mask is on
    label, _, label_of = paste_labels(logits, sc, torch.zeros(len(sc), dtype=torch.long), org, (1, hs, ws),
                                      score_threshold=score_threshold, mask_threshold=0.5, min_area=min_area)
    label = label[0]
    if (hs, ws) != (h, w):  # back to native resolution (nearest neighbour)
        label = F.interpolate(label[None, None].float(), size=(h, w), mode="nearest")[0, 0].int()
        pts = (pts + 0.5) * torch.tensor([h / hs, w / ws]) - 0.5
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

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
            scale: float | None = None, diameter: float | None = None, model_diameter: float = 30.0,
            tile: int = 1024, overlap: int | None = None, device: str | None = None):
    """Segment one image.

    Args:
        model: a :class:`cks.models.Principal` (``cks.checkpoint.load_model(run_dir)``).
        image: ``[H, W]`` or ``[C, H, W]`` array (any dtype); normalised here.
        score_threshold: minimum detection score of a reported cell.
        scale: resize factor applied before the model (results are mapped back). Defaults to the
            model's training scale (``model.scale``, e.g. 0.5 for Usiigaci) or, with ``diameter``,
            ``model_diameter / diameter`` (expected cell diameter in px of this image).
        tile: tile side (px, model resolution); images larger than this are tiled.
        overlap: tile overlap (default 2 x window + 32; at least one window, less than ``tile``).
    Returns:
        ``(label int32 [H, W], table)`` with ``table`` a dict of numpy arrays ``label, score, y, x, area``
        (labels 1..n in descending score order, ``y, x, area`` at native resolution).
    Raises:
        CksDataError: bad image shape or NaN/inf pixels. CksConfigError: bad scale/tile/overlap.
    """
    img = _as_chw(image)
    h, w = img.shape[-2:]
    if diameter is not None:
        if not diameter > 0:
            raise CksConfigError(f"diameter must be > 0 px, got {diameter}")
        scale = model_diameter / float(diameter)
    if scale is None:
        scale = float(getattr(model, "scale", 1.0))
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

"""Inference: image in, label image + per-cell table out (untiled or by overlapping tiles).

``predict(model, image)`` normalises the image per channel, optionally rescales it (by a factor
or an expected cell diameter), runs the principal model, keeps detections with score >=
``score_threshold`` (default 0.5, the author's ``predict_label`` default), thresholds each cell's
window at ``mask_threshold`` (0.5) and pastes the windows into one label image, the
higher-scoring cell winning overlaps (:func:`cks.windows.paste_labels`). Labels are numbered 1..n
in descending score order; the table has ``label, score, y, x, area`` (native resolution).

Large images are cut into overlapping tiles. A cell is kept by the tile whose *core* (the tile
minus half the overlap on interior sides) contains its detected location, so every cell is taken
from exactly one tile; the overlap (default 2 x window) is wider than a window, so a kept cell's
window lies inside its tile and is never cut. The windows of all tiles are pasted together once,
so memory holds one tile's features plus the thresholded (uint8) windows.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .data.io import normalize_image
from .errors import CksDataError
from .windows import paste_labels


def _as_chw(image) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[0] > 4 or min(a.shape[-2:]) < 1:
        raise CksDataError(f"image must be [H, W] or [C, H, W] with C <= 3, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise CksDataError("image has NaN/inf pixels; replace them (e.g. np.nan_to_num) before predicting")
    return a


def _resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


@torch.no_grad()
def _run_tile(model, x: torch.Tensor, core: tuple[int, int, int, int], offset: tuple[int, int], mask_threshold: float):
    """Detections of one tile whose location lies in ``core`` (y0, y1, x0, x1, tile coords)."""
    out = model(x[None])
    pts, sc, lg, org = out["seg_points"], out["seg_scores"], out["seg_logits"], out["seg_origin"]
    y0, y1, x0, x1 = core
    keep = (pts[:, 0] >= y0 - 0.5) & (pts[:, 0] < y1 - 0.5) & (pts[:, 1] >= x0 - 0.5) & (pts[:, 1] < x1 - 0.5)
    off = torch.tensor(offset)
    masks = (torch.sigmoid(lg[keep]) >= mask_threshold).to(torch.uint8)
    return pts[keep] + off, sc[keep], masks, org[keep] + off


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
        overlap: tile overlap (default 2 x window + 32).
    Returns:
        ``(label int32 [H, W], table)`` with ``table`` a dict of numpy arrays ``label, score, y, x, area``.
    """
    img = _as_chw(image)
    h, w = img.shape[-2:]
    if diameter is not None:
        scale = model_diameter / float(diameter)
    if scale is None:
        scale = float(getattr(model, "scale", 1.0))
    device = device or next(model.parameters()).device
    x = torch.from_numpy(normalize_image(img.astype(np.float32))).to(device)
    hs, ws = max(1, round(h * scale)), max(1, round(w * scale))
    if (hs, ws) != (h, w):
        x = _resize(x, (hs, ws))
    window = model.cfg.segmentor.window
    overlap = overlap if overlap is not None else 2 * window + 32
    parts = []
    if hs <= tile and ws <= tile:
        parts.append(_run_tile(model, x, (0, hs, 0, ws), (0, 0), mask_threshold))
    else:
        step = tile - overlap
        if step <= 0:
            raise ValueError(f"tile ({tile}) must be larger than overlap ({overlap})")
        ny = max(1, math.ceil((hs - overlap) / step))
        nx = max(1, math.ceil((ws - overlap) / step))
        for iy in range(ny):  # loop over tiles, not cells
            for ix in range(nx):
                ty = min(iy * step, max(hs - tile, 0))
                tx = min(ix * step, max(ws - tile, 0))
                th, tw = min(tile, hs - ty), min(tile, ws - tx)
                cy0 = 0 if iy == 0 else (iy * step + overlap // 2) - ty
                cy1 = th if iy == ny - 1 else ((iy + 1) * step + overlap // 2) - ty
                cx0 = 0 if ix == 0 else (ix * step + overlap // 2) - tx
                cx1 = tw if ix == nx - 1 else ((ix + 1) * step + overlap // 2) - tx
                parts.append(_run_tile(model, x[:, ty:ty + th, tx:tx + tw], (cy0, cy1, cx0, cx1), (ty, tx),
                                       mask_threshold))
    pts = torch.cat([p[0] for p in parts]).cpu()
    sc = torch.cat([p[1] for p in parts]).cpu()
    masks = torch.cat([p[2] for p in parts]).cpu()
    org = torch.cat([p[3] for p in parts]).cpu()
    logits = masks.float() * 2 - 1  # >= 0 where the mask is on
    label, _, label_of = paste_labels(logits, sc, torch.zeros(len(sc), dtype=torch.long), org, (1, hs, ws),
                                      score_threshold=score_threshold, mask_threshold=0.5, min_area=min_area)
    label = label[0]
    if (hs, ws) != (h, w):  # back to native resolution (nearest neighbour)
        label = F.interpolate(label[None, None].float(), size=(h, w), mode="nearest")[0, 0].int()
        pts = (pts + 0.5) / scale - 0.5
    label = label.numpy().astype(np.int32)
    alive = label_of > 0
    lab = label_of[alive].numpy()
    order = np.argsort(lab)
    area = np.bincount(label.ravel(), minlength=int(lab.max(initial=0)) + 1)
    lab = lab[order]
    table = {"label": lab.astype(np.int32), "score": sc[alive].numpy()[order].astype(np.float32),
             "y": pts[alive, 0].numpy()[order].astype(np.float32), "x": pts[alive, 1].numpy()[order].astype(np.float32),
             "area": area[lab].astype(np.int64)}
    gone = table["area"] == 0  # a cell can vanish when mapped back to a coarser grid
    if gone.any():
        table = {k: v[~gone] for k, v in table.items()}
    return label, table


def scores_by_label(table: dict) -> dict[int, float]:
    """``{label: score}`` mapping for :func:`cks.metrics.evaluate`."""
    return {int(l): float(s) for l, s in zip(table["label"], table["score"])}

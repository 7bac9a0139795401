"""Point files from the tools biologists click cells in, recognised by content.

=====================  ==========================================  =========================================
tool                   file                                        read as (ours: pixel centre at integer)
=====================  ==========================================  =========================================
napari (Points layer)  CSV ``index, axis-0, axis-1`` (3-D: the     y = axis-(n-2), x = axis-(n-1), as is
                       last two axes are y, x)                     (napari indexes pixel centres)
Fiji / ImageJ          Results CSV with columns ``X``, ``Y``       y = Y - 0.5, x = X - 0.5
                       (multi-point tool, Analyze > Measure)       (ImageJ: pixel corners, centre at i + 0.5)
ImageJ ROIs            ``.roi`` or ROI-set ``.zip`` of point ROIs  integer ROIs: the pixel, as is;
                       (read with ``roifile``)                     sub-pixel ROIs: minus 0.5 (corners)
QuPath                 GeoJSON (``FeatureCollection`` of Point /   minus 0.5 (QuPath: pixel corners)
                       MultiPoint geometries, ``[x, y]``)
cks / plain            CSV ``y, x``; JSON ``{"points": [[y, x]]}``  as is
=====================  ==========================================  =========================================

Coordinates must be in pixels of the image (ImageJ: an uncalibrated image, or Analyze > Set Scale... >
"Click to Remove Scale" before measuring). Empty files, NaN and points outside the image are one-line
errors naming the file; duplicated points are dropped with a warning.
"""
from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import numpy as np

from ..errors import CksDataError

#: suffixes of point files, in the order a folder's image looks for its partner
POINT_SUFFIXES = (".csv", ".zip", ".roi", ".geojson", ".json")


def _fail(path, what: str) -> CksDataError:
    return CksDataError(f"{path}: {what}")


def _csv_points(path: Path) -> tuple[np.ndarray, str]:
    text = path.read_text(errors="replace")
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise _fail(path, "empty point file; click some cells (or delete the file)")
    head = [c.strip() for c in rows[0]]
    body = rows[1:]

    def col(name):
        return np.array([float(r[head.index(name)]) for r in body], np.float64)

    try:
        axes = sorted((c for c in head if c.startswith("axis-")), key=lambda c: int(c.split("-")[1]))
        if len(axes) >= 2:  # napari: the last two axes are (y, x), pixel centres
            return np.stack([col(axes[-2]), col(axes[-1])], 1), "napari"
        if "X" in head and "Y" in head:  # Fiji / ImageJ Results table: pixel-corner coordinates
            return np.stack([col("Y"), col("X")], 1) - 0.5, "imagej"
        low = [c.lower() for c in head]
        if "y" in low and "x" in low:  # ours
            return np.stack([col(head[low.index("y")]), col(head[low.index("x")])], 1), "cks"
    except (ValueError, IndexError):
        raise _fail(path, "a row is not a pair of numbers; re-export the points") from None
    raise _fail(path, f"unknown CSV columns {head[:6]}; expected napari (axis-0, axis-1), Fiji/ImageJ (X, Y) or "
                      "y, x")


def _roi_points(path: Path) -> tuple[np.ndarray, str]:
    try:
        from roifile import ROI_TYPE, roiread
    except ImportError:  # pragma: no cover - roifile is in requirements.txt
        raise _fail(path, "reading ImageJ ROIs needs the roifile package: pip install roifile") from None
    try:
        rois = roiread(str(path))
    except Exception as exc:  # noqa: BLE001  (roifile raises many types on damaged files)
        raise _fail(path, f"not a readable ImageJ ROI file ({type(exc).__name__}); re-save it from the ROI "
                          "Manager (More > Save...)") from None
    rois = rois if isinstance(rois, list) else [rois]
    pts = []
    for k, roi in enumerate(rois):  # one ROI per click or one multi-point ROI: a handful, not one per pixel
        if roi.roitype != ROI_TYPE.POINT:
            raise _fail(path, f"ROI {k + 1} ({roi.name or 'unnamed'}) is not a point ROI; save the clicks of the "
                              "multi-point tool (outlines are not points)")
        xy = np.asarray(roi.coordinates(), np.float64).reshape(-1, 2)
        shift = 0.5 if roi.subpixelresolution else 0.0  # sub-pixel ROIs are corner-based
        pts.append(xy[:, ::-1] - shift)
    if not rois or not any(len(p) for p in pts):
        raise _fail(path, "no points in the ROI file; click some cells with the multi-point tool")
    return np.concatenate(pts), "imagej-roi"


def _geojson_points(path: Path, data) -> tuple[np.ndarray, str]:
    feats = data.get("features", []) if data.get("type") == "FeatureCollection" else [data]
    pts = []
    for f in feats:
        g = f.get("geometry") or {}
        if g.get("type") == "Point":
            pts.append([g["coordinates"][:2]])
        elif g.get("type") == "MultiPoint":
            pts.append([c[:2] for c in g["coordinates"]])
    if not pts:
        raise _fail(path, "no Point/MultiPoint geometries in the GeoJSON; export QuPath point annotations")
    xy = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in pts])
    return xy[:, ::-1] - 0.5, "qupath"  # QuPath: [x, y] in pixel-corner coordinates


def read_point_file(path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Points ``[N, 2]`` (y, x), pixel centres at integers, from any format of the table above.

    Args:
        path: the point file. shape: ``(H, W)`` of its image: points outside it are an error.
    Returns:
        float32 ``[N, 2]`` with duplicates (same pixel, within 0.5 px) removed, with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "point file not found; check the path")
    if path.stat().st_size == 0:
        raise _fail(path, "empty point file (0 bytes); click some cells (or delete the file)")
    suffix = path.suffix.lower()
    if suffix in (".roi", ".zip"):
        pts, kind = _roi_points(path)
    elif suffix == ".csv":
        pts, kind = _csv_points(path)
    elif suffix in (".geojson", ".json"):
        try:
            data = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError):
            raise _fail(path, "not valid JSON; re-export the points") from None
        if isinstance(data, dict) and data.get("type") in ("FeatureCollection", "Feature"):
            pts, kind = _geojson_points(path, data)
        else:
            from ..points import read_points

            pts, kind = read_points(path).astype(np.float64), "cks"
    else:
        raise _fail(path, f"unknown point file type {suffix!r}; use {', '.join(POINT_SUFFIXES)}")
    if len(pts) == 0:
        raise _fail(path, "no points in the file; click some cells")
    if not np.isfinite(pts).all():
        raise _fail(path, f"{int((~np.isfinite(pts)).any(1).sum())} point(s) with NaN/inf coordinates; remove them")
    if shape is not None:
        h, w = shape[-2:]
        bad = (pts[:, 0] < -0.5) | (pts[:, 0] >= h - 0.5) | (pts[:, 1] < -0.5) | (pts[:, 1] >= w - 0.5)
        if bad.any():
            y, x = pts[np.argmax(bad)]
            raise _fail(path, f"{int(bad.sum())} point(s) outside the {h}x{w} image (e.g. y={y:.1f}, x={x:.1f}); "
                              f"read as {kind}: is the file for this image, in pixels (not microns)?")
    key = np.round(pts).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    if len(first) < len(pts):
        warnings.warn(f"{path}: {len(pts) - len(first)} duplicated point(s) (same pixel) dropped", stacklevel=2)
        pts = pts[np.sort(first)]
    return pts.astype(np.float32)


def partner_point_file(image_path) -> Path | None:
    """The point file beside an image with the same stem (``img.tif`` -> ``img.csv`` / ``.zip`` / ...)."""
    image_path = Path(image_path)
    for suffix in POINT_SUFFIXES:
        cand = image_path.with_suffix(suffix)
        if cand.is_file():
            return cand
    return None


__all__ = ["POINT_SUFFIXES", "read_point_file", "partner_point_file"]

"""Results in the formats other tools open: ImageJ/Fiji ROI sets, QuPath GeoJSON, COCO instances.

* :func:`write_imagej_rois`: a ``.zip`` of ROIs, one per cell, named ``cell_0001``... (Fiji: ROI Manager >
  More > Open...): a polygon ROI, or for a cell in several pieces one *composite* ROI (ImageJ's ``ShapeRoi``:
  one closed path per piece, image coordinates), so ROI Manager lists and measures each cell once. ImageJ
  coordinates are pixel corners, so our outlines move by +0.5 px.
* :func:`write_geojson`: a ``FeatureCollection`` of polygon *detections* with the score as a measurement
  (QuPath: File > Import objects / drag and drop). QuPath coordinates are pixel corners too.
* :func:`write_coco`: one COCO instances JSON for a set of images, masks as RLE (pycocotools), the score
  per annotation; :func:`cks.data.annotations.read_coco` reads it back.

Outlines are traced per cell (``skimage.measure.find_contours`` on the cell's bounding box, the largest
contour at level 0.5); the readers :func:`read_imagej_rois` and :func:`read_geojson` paint them back
(pixel centres inside the polygon), which is what the round-trip tests compare against the label image.
Export is not a hot path: it loops over cells, like the tools that open the files.
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import CksDataError
from .writers import atomic_write_bytes, atomic_write_text


def cell_outlines(label: np.ndarray) -> dict[int, list[np.ndarray]]:
    """``{cell id: [[N, 2] (y, x) polygon per connected piece]}`` in pixel-centre coordinates.

    A predicted cell can come in several pieces (a window cut by a higher-scoring neighbour, nearest-neighbour
    upsampling): each piece gets its outer outline, so nothing of the cell is lost (holes are not kept). A piece
    that lies inside a hole of another piece is dropped: the other's outline already covers it, and in an even-odd
    fill (ImageJ's composite ROIs) it would cut a hole instead.
    """
    from skimage.measure import find_contours, points_in_poly

    label = np.asarray(label)
    out = {}
    for i, sl in enumerate(ndimage.find_objects(label), start=1):
        if sl is None:
            continue
        y0, x0 = sl[0].start, sl[1].start
        pieces, n = ndimage.label(np.pad(label[sl] == i, 1))
        polys = []
        for k in range(1, n + 1):
            contours = find_contours((pieces == k).astype(np.float32), 0.5)
            if contours:
                polys.append(max(contours, key=len) + np.array([y0 - 1, x0 - 1]))
        if len(polys) > 1:  # outlines of separate pieces never cross: one vertex tells inside from outside
            polys = [a for k, a in enumerate(polys)
                     if not any(points_in_poly(a[:1], b)[0] for j, b in enumerate(polys) if j != k)]
        if polys:
            out[i] = polys
    return out


def _paint(shape, groups: dict[int, list[list[np.ndarray]]]) -> np.ndarray:
    """Label image ``shape``: cell ``i`` covers the union of its groups ``groups[i]``; the ``[N, 2]`` (y, x)
    polygons of one group combine by the even-odd rule (an ImageJ composite ROI: a piece inside another is a hole;
    a group of one polygon is that polygon)."""
    from skimage.draw import polygon

    lab = np.zeros(shape, np.int32)
    for i, cell in groups.items():
        for group in cell:  # pixels covered an odd number of times (work bounded by the polygons, not the image)
            flat = np.concatenate([np.ravel_multi_index(polygon(p[:, 0], p[:, 1], shape), shape) for p in group])
            ids, times = np.unique(flat, return_counts=True)
            lab.flat[ids[times % 2 == 1]] = i
    return lab


def shape_path(polygons: list[np.ndarray]) -> np.ndarray:
    """ImageJ ``ShapeRoi`` path data for closed ``[N, 2]`` (x, y) polygons: per polygon ``0 x y`` (MOVETO), ``1 x y``
    (LINETO) for each further vertex, ``4`` (CLOSE); float32, as ``ShapeRoi.getShapeAsArray`` writes it."""
    path: list[float] = []
    for xy in polygons:
        xy = np.asarray(xy, np.float64)
        if len(xy) > 1 and np.array_equal(xy[0], xy[-1]):  # CLOSE returns to the start: no repeated vertex
            xy = xy[:-1]
        steps = np.concatenate([np.ones((len(xy), 1)), xy], axis=1)
        steps[0, 0] = 0.0  # MOVETO the first vertex
        path.extend(steps.ravel().tolist())
        path.append(4.0)  # CLOSE
    return np.asarray(path, np.float32)


def _composite_roi(polygons: list[np.ndarray], name: str):
    """A composite (``ShapeRoi``) ImageJ ROI of several closed (x, y) polygons: rectangle type, the path after the
    header (``shape_roi_size`` floats), the bounds of all pieces in the header."""
    from roifile import ROI_TYPE, ImagejRoi

    xy = np.concatenate(polygons)
    roi = ImagejRoi()
    roi.roitype = ROI_TYPE.RECT
    roi.name = name
    roi.left, roi.top = (int(np.floor(v)) for v in xy.min(0))
    roi.right, roi.bottom = (int(np.ceil(v)) for v in xy.max(0))
    roi.multi_coordinates = shape_path(polygons)
    roi.shape_roi_size = int(roi.multi_coordinates.size)
    return roi


def write_imagej_rois(label: np.ndarray, path) -> int:
    """Write every cell of ``label`` as one ROI into the ROI-set zip ``path``: a polygon, or a composite ROI for a
    cell in pieces. Returns the number of cells (= ROIs)."""
    from roifile import ROI_TYPE, ImagejRoi

    buf = io.BytesIO()
    n = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, polys in cell_outlines(label).items():
            name, xy = f"cell_{i:04d}", [poly[:, ::-1] + 0.5 for poly in polys]  # (x, y), pixel corners
            if len(xy) == 1:
                roi = ImagejRoi.frompoints(xy[0], name=name)
                roi.roitype = ROI_TYPE.POLYGON
            else:
                roi = _composite_roi(xy, name)
            zf.writestr(name + ".roi", roi.tobytes())
            n += 1
    atomic_write_bytes(buf.getvalue(), path)
    return n


def read_imagej_rois(path, shape: tuple[int, int]) -> np.ndarray:
    """Label image ``shape`` painted from a ROI-set zip of polygon or composite ROIs (every piece of a composite
    ROI, and ROIs sharing a name, as zips written before composite ROIs were, are one cell; cells are numbered in
    order of appearance). A composite ROI's pieces combine as ImageJ fills them, by the even-odd rule."""
    from roifile import roiread

    rois = roiread(str(path))
    rois = rois if isinstance(rois, list) else [rois]
    ids: dict[str, int] = {}
    groups: dict[int, list[list[np.ndarray]]] = {}
    for k, r in enumerate(rois):
        i = ids.setdefault(r.name or f"roi_{k}", len(ids) + 1)
        groups.setdefault(i, []).append([np.asarray(xy, np.float64)[:, ::-1] - 0.5
                                         for xy in r.coordinates(multi=True)])
    return _paint(shape, groups)


def write_geojson(label: np.ndarray, table: dict | None, path) -> int:
    """QuPath detections (polygons, ``[x, y]`` pixel corners) with the score; returns the count."""
    scores = {} if table is None else {int(k): float(v) for k, v in zip(table["label"], table["score"])}
    feats = []
    for i, polys in cell_outlines(label).items():
        rings = []
        for poly in polys:
            ring = (poly[:, ::-1] + 0.5).round(3).tolist()
            rings.append([ring + [ring[0]]])
        geom = ({"type": "Polygon", "coordinates": rings[0]} if len(rings) == 1
                else {"type": "MultiPolygon", "coordinates": rings})  # a cell in pieces
        feats.append({"type": "Feature", "id": f"cell_{i:04d}", "geometry": geom,
                      "properties": {"objectType": "detection", "name": f"cell_{i:04d}", "label": i,
                                     "measurements": {"score": scores.get(i, float("nan"))}}})
    atomic_write_text(json.dumps({"type": "FeatureCollection", "features": feats}), path)
    return len(feats)


def read_geojson(path, shape: tuple[int, int]) -> np.ndarray:
    """Label image painted from a GeoJSON of polygons (the ``label`` property, else the feature's order)."""
    data = json.loads(Path(path).read_text())
    polys = {}
    for k, f in enumerate(data.get("features", []), start=1):
        g = f.get("geometry") or {}
        parts = ([g["coordinates"]] if g.get("type") == "Polygon" else g["coordinates"]
                 if g.get("type") == "MultiPolygon" else [])
        if parts:
            i = int((f.get("properties") or {}).get("label", k))
            polys[i] = [[np.asarray(p[0], np.float64)[:, ::-1] - 0.5] for p in parts]  # pieces: a union
    return _paint(shape, polys)


def write_coco(items, path, chunk: int = 64) -> int:
    """One COCO instances JSON for ``items = [(file_name, label, table or None), ...]``; returns the count.

    Masks are RLE-encoded with pycocotools, ``chunk`` cells at a time (bounded memory); ``score`` is each
    annotation's detection score; one category, ``cell``.
    """
    from pycocotools import mask as mask_utils

    images, anns = [], []
    for img_id, (file_name, label, table) in enumerate(items, start=1):
        label = np.asarray(label)
        h, w = label.shape
        images.append({"id": img_id, "file_name": str(file_name), "height": int(h), "width": int(w)})
        ids = np.unique(label[label > 0])
        scores = {} if table is None else {int(k): float(v) for k, v in zip(table["label"], table["score"])}
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            stack = np.asfortranarray((label[..., None] == part[None, None, :]).astype(np.uint8))
            rles = mask_utils.encode(stack)
            areas, boxes = mask_utils.area(rles), mask_utils.toBbox(rles)
            for i, rle, area, box in zip(part, rles, areas, boxes):
                rle["counts"] = rle["counts"].decode("ascii")
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": 1, "segmentation": rle,
                             "area": int(area), "bbox": [float(b) for b in box], "iscrowd": 0,
                             "score": scores.get(int(i), 1.0), "label": int(i)})
    if not images:
        raise CksDataError(f"{path}: nothing to write (no images)")
    atomic_write_text(json.dumps({"images": images, "annotations": anns,
                                  "categories": [{"id": 1, "name": "cell"}]}), path)
    return len(anns)


__all__ = ["cell_outlines", "shape_path", "write_imagej_rois", "read_imagej_rois", "write_geojson", "read_geojson",
           "write_coco"]

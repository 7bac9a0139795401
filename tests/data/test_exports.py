"""Exports round-trip: label image -> ImageJ ROI zip / QuPath GeoJSON / COCO RLE -> the same cells."""
import json

import numpy as np
from pycocotools import mask as mask_utils

from cks.data.exports import read_geojson, read_imagej_rois, write_coco, write_geojson, write_imagej_rois
from cks.data.synthetic import synthetic_sample
from cks.metrics import intersections, iou_from_intersections


def _label():
    lab = synthetic_sample((160, 176), n_cells=14, radius=(6, 14), seed=3)["label"].copy()
    lab[150:156, 160:170] = 1  # cell 1 also has a second, separate piece (as predicted masks can)
    return lab


def _min_matched_iou(back, lab):
    _, _, pa, ga, inter = intersections(back, lab)
    return iou_from_intersections(pa, ga, inter).toarray().max(0).min()


def test_imagej_roi_zip_roundtrip(tmp_path):
    lab = _label()
    n = write_imagej_rois(lab, tmp_path / "cells.rois.zip")
    back = read_imagej_rois(tmp_path / "cells.rois.zip", lab.shape)
    assert n == len(np.unique(lab)) - 1 == len(np.unique(back)) - 1
    assert _min_matched_iou(back, lab) >= 0.99


def test_a_cell_in_pieces_is_one_composite_roi_in_imagejs_layout(tmp_path):
    """Read with ImageJ's RoiDecoder layout (not roifile): 'Iout', type byte 6 = rect (1) for a ShapeRoi, bounds as
    big-endian shorts top/left/bottom/right at 8-15, the path's float count at 36, the path's floats from 64."""
    import struct
    import zipfile

    lab = _label()
    write_imagej_rois(lab, tmp_path / "cells.rois.zip")
    with zipfile.ZipFile(tmp_path / "cells.rois.zip") as zf:
        names = zf.namelist()
        data = zf.read("cell_0001.roi")
        one_piece = zf.read("cell_0002.roi")
    assert len(names) == len(np.unique(lab)) - 1 and len(set(names)) == len(names)  # one ROI per cell
    assert data[:4] == b"Iout" and data[6] == 1 and one_piece[6] == 0  # composite vs polygon
    top, left, bottom, right = struct.unpack(">4h", data[8:16])
    ys, xs = np.nonzero(lab == 1)  # pixel corners: the outline runs half a pixel outside the pixel centres
    assert (top, left) == (ys.min(), xs.min()) and (bottom, right) == (ys.max() + 1, xs.max() + 1)
    n = struct.unpack(">i", data[36:40])[0]
    path = np.frombuffer(data[64:64 + 4 * n], ">f4")
    ops, k, pieces = [], 0, 0
    while k < n:  # MOVETO/LINETO carry (x, y); CLOSE ends a piece
        ops.append(int(path[k]))
        k += 3 if path[k] in (0, 1) else 1
    assert ops.count(0) == ops.count(4) == 2 and set(ops) == {0, 1, 4}  # two closed pieces
    pieces_xy, k = [], 0
    while k < n:  # the vertices of each piece, in image coordinates (pixel corners)
        if path[k] == 0:
            pieces_xy.append([])
        if path[k] in (0, 1):
            pieces_xy[-1].append(path[k + 1:k + 3])
        k += 3 if path[k] in (0, 1) else 1
    small = np.asarray(pieces_xy[1])  # the extra piece painted at rows 150-155, columns 160-169
    assert small.min(0).tolist() == [160, 150] and small.max(0).tolist() == [170, 156]  # its pixels' outer corners
    assert all(not np.array_equal(p[0], p[-1]) for p in map(np.asarray, pieces_xy))  # CLOSE, no repeated vertex


def test_a_piece_inside_a_hole_of_its_cell_is_covered_not_cut_out(tmp_path):
    """Fiji fills a composite ROI by the even-odd rule: a piece written inside another's outline would be a hole."""
    lab = np.zeros((40, 40), np.int32)
    lab[5:30, 5:30] = 1
    lab[10:25, 10:25] = 0  # a ring ...
    lab[15:20, 15:20] = 1  # ... with a separate piece of the same cell in its hole
    assert write_imagej_rois(lab, tmp_path / "ring.zip") == 1
    back = read_imagej_rois(tmp_path / "ring.zip", lab.shape)
    assert back[17, 17] == 1 and back[12, 12] == 1  # the inner piece kept (holes are not exported, as before)
    assert (back == 1).sum() == 25 * 25


def test_a_composite_roi_with_a_piece_inside_another_reads_as_a_hole(tmp_path):
    """A composite ROI from Fiji (e.g. Create Selection on a cell with a hole) paints by the even-odd rule."""
    import io
    import zipfile

    from cks.data.exports import _composite_roi

    outer = np.array([[2, 2], [22, 2], [22, 22], [2, 22]], float)  # (x, y) pixel corners
    inner = np.array([[8, 8], [16, 8], [16, 16], [8, 16]], float)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cell_0001.roi", _composite_roi([outer, inner], "cell_0001").tobytes())
    (tmp_path / "hole.zip").write_bytes(buf.getvalue())
    back = read_imagej_rois(tmp_path / "hole.zip", (32, 32))
    assert back[4, 4] == 1 and back[12, 12] == 0 and back[30, 30] == 0  # ring: inside the inner square is a hole
    assert (back == 1).sum() == 20 * 20 - 8 * 8


def test_imagej_zip_of_pieces_with_one_name_still_reads_as_one_cell(tmp_path):
    """Zips written before composite ROIs (one polygon ROI per piece, the same name) read back as one cell."""
    import io
    import zipfile

    from roifile import ROI_TYPE, ImagejRoi

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for k, (x0, y0) in enumerate([(2, 2), (20, 20)]):
            roi = ImagejRoi.frompoints([[x0, y0], [x0 + 6, y0], [x0 + 6, y0 + 6], [x0, y0 + 6]], name="cell_0001")
            roi.roitype = ROI_TYPE.POLYGON
            zf.writestr("cell_0001" + (f"-{k + 1}" if k else "") + ".roi", roi.tobytes())
    (tmp_path / "old.zip").write_bytes(buf.getvalue())
    back = read_imagej_rois(tmp_path / "old.zip", (32, 32))
    assert set(np.unique(back)) == {0, 1} and back[4, 4] == 1 and back[22, 22] == 1 and back[14, 14] == 0


def test_geojson_roundtrip_and_qupath_fields(tmp_path):
    lab = _label()
    ids = np.unique(lab[lab > 0])
    table = {"label": ids, "score": np.linspace(0.5, 0.9, len(ids))}
    write_geojson(lab, table, tmp_path / "cells.geojson")
    data = json.loads((tmp_path / "cells.geojson").read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == len(ids)
    f0 = data["features"][0]
    assert f0["properties"]["objectType"] == "detection" and f0["geometry"]["type"] == "MultiPolygon"  # 2 pieces
    assert data["features"][1]["geometry"]["type"] == "Polygon"
    assert f0["properties"]["measurements"]["score"] == 0.5
    assert _min_matched_iou(read_geojson(tmp_path / "cells.geojson", lab.shape), lab) >= 0.99


def test_coco_rle_is_exact(tmp_path):
    labs = [_label(), np.zeros((20, 30), np.int32)]
    n = write_coco([("a.tif", labs[0], None), ("empty.tif", labs[1], None)], tmp_path / "p.json", chunk=5)
    data = json.loads((tmp_path / "p.json").read_text())
    assert n == len(data["annotations"]) == len(np.unique(labs[0])) - 1
    assert [im["file_name"] for im in data["images"]] == ["a.tif", "empty.tif"]
    for a in data["annotations"]:
        m = mask_utils.decode({"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()})
        assert np.array_equal(m.astype(bool), labs[0] == a["label"])

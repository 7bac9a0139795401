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

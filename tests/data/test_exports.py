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

"""Point files from napari, Fiji/ImageJ (CSV and ROI zip), QuPath GeoJSON and plain CSV; folder pairing."""
import json
import zipfile

import numpy as np
import pytest
import tifffile

from cks.data.point_files import partner_point_file, read_point_file
from cks.data.spec import load_dataset
from cks.errors import CksDataError

# ours: pixel centres at integers; these points are (y, x)
PTS = np.array([[10.0, 20.0], [30.5, 5.25], [0.0, 0.0]], np.float32)


def test_napari_csv(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("index,axis-0,axis-1\n" + "".join(f"{i},{y},{x}\n" for i, (y, x) in enumerate(PTS)))
    np.testing.assert_allclose(read_point_file(f), PTS)
    f3 = tmp_path / "p3.csv"  # a 3-D layer: the last two axes are y, x
    f3.write_text("index,axis-0,axis-1,axis-2\n" + "".join(f"{i},2,{y},{x}\n" for i, (y, x) in enumerate(PTS)))
    np.testing.assert_allclose(read_point_file(f3), PTS)


def test_imagej_results_csv_half_pixel(tmp_path):
    """ImageJ puts pixel (0, 0)'s centre at (0.5, 0.5): X, Y = ours + 0.5."""
    f = tmp_path / "Results.csv"
    f.write_text(" ,X,Y\n" + "".join(f"{i + 1},{x + 0.5},{y + 0.5}\n" for i, (y, x) in enumerate(PTS)))
    np.testing.assert_allclose(read_point_file(f), PTS)


def test_imagej_point_rois(tmp_path):
    from roifile import ROI_TYPE, ImagejRoi

    f = tmp_path / "RoiSet.zip"
    with zipfile.ZipFile(f, "w") as zf:
        for i, (y, x) in enumerate(PTS[:2]):  # integer point ROIs: the pixel itself
            roi = ImagejRoi.frompoints([[int(x), int(y)]], name=f"p{i}")
            roi.roitype = ROI_TYPE.POINT
            zf.writestr(f"p{i}.roi", roi.tobytes())
    np.testing.assert_allclose(read_point_file(f), np.floor(PTS[:2]))
    poly = ImagejRoi.frompoints([[1, 1], [9, 1], [9, 9]])
    poly.roitype = ROI_TYPE.POLYGON
    poly.tofile(tmp_path / "poly.roi")
    with pytest.raises(CksDataError, match="not a point ROI"):
        read_point_file(tmp_path / "poly.roi")


def test_qupath_geojson_half_pixel(tmp_path):
    f = tmp_path / "p.geojson"
    feats = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [float(x) + 0.5, float(y) + 0.5]},
              "properties": {"objectType": "annotation"}} for y, x in PTS[:2]]
    feats.append({"type": "Feature", "geometry": {"type": "MultiPoint", "coordinates": [[0.5, 0.5]]}})
    f.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    np.testing.assert_allclose(read_point_file(f), PTS)


def test_plain_yx_csv(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("y,x\n" + "".join(f"{y},{x}\n" for y, x in PTS))
    np.testing.assert_allclose(read_point_file(f), PTS)


@pytest.mark.parametrize("content,needle", [
    ("", "empty"), ("index,axis-0,axis-1\n", "no points"), ("a,b\n1,2\n", "unknown CSV columns"),
    ("y,x\nnan,3\n", "NaN"), ("y,x\n5,500\n", "outside the 64x64 image"), ("y,x\n5,abc\n", "not a pair of numbers")])
def test_bad_files_name_the_file(tmp_path, content, needle):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    with pytest.raises(CksDataError, match=needle) as e:
        read_point_file(f, shape=(64, 64))
    assert "bad.csv" in str(e.value) and "\n" not in str(e.value)


def test_duplicates_dropped_with_a_warning(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("y,x\n5,5\n5.2,4.9\n9,9\n")
    with pytest.warns(UserWarning, match="1 duplicated"):
        assert len(read_point_file(f)) == 2


def test_folder_of_images_with_point_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for name, suffix in (("a", ".csv"), ("b", ".geojson")):
        tifffile.imwrite(tmp_path / f"{name}.tif", rng.integers(0, 999, (64, 80)).astype(np.uint16))
    (tmp_path / "a.csv").write_text("index,axis-0,axis-1\n0,10,20\n1,30,40\n")
    (tmp_path / "b.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [5.5, 6.5]}}]}))
    tifffile.imwrite(tmp_path / "lonely.tif", np.zeros((8, 8), np.uint16))  # no point file: not a sample
    assert partner_point_file(tmp_path / "a.tif") == tmp_path / "a.csv"
    samples = load_dataset(str(tmp_path))
    assert [s["name"] for s in samples] == ["a", "b"]
    monkeypatch.chdir(tmp_path.parent)  # a relative folder spec names the samples the same way
    assert [s["name"] for s in load_dataset(tmp_path.name)] == ["a", "b"]
    np.testing.assert_allclose(samples[0]["points"], [[10, 20], [30, 40]])
    np.testing.assert_allclose(samples[1]["points"], [[6, 5]])
    assert samples[0]["label"] is None

"""cks.points: centroids, jitter, nuclear-stain points, coverage, validation, files."""

import os
from pathlib import Path

import numpy as np
import pytest

from cks.errors import CksDataError
from cks.points import (centroids, clip_points, jitter, label_at_points, point_coverage, points_from_nuclei,
                        read_points, validate_points, write_points)


def test_centroid_of_rectangles_closed_form():
    lab = np.zeros((40, 50), np.int32)
    lab[3:10, 5:20] = 7  # rows 3..9, cols 5..19
    lab[20:31, 30:32] = 2
    ids, pts = centroids(lab)
    np.testing.assert_array_equal(ids, [2, 7])
    np.testing.assert_allclose(pts, [[25.0, 30.5], [6.0, 12.0]])
    assert pts.dtype == np.float32
    ids, pts = centroids(np.zeros((4, 4), np.int32))
    assert ids.shape == (0,) and pts.shape == (0, 2)


def test_jitter_repeatable_and_clipped():
    p = np.tile([[50.0, 60.0]], (4000, 1))
    a, b = jitter(p, 2.0, np.random.default_rng(5)), jitter(p, 2.0, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert abs((a - p).std() - 2.0) < 0.1
    c = jitter(p, 30.0, np.random.default_rng(1), shape=(64, 64))
    assert c.min() >= 0 and c.max() <= 63


def test_points_from_nuclei_recovers_blobs():
    rng = np.random.default_rng(0)
    shape = (160, 200)
    true = np.array([[30.3, 40.7], [35.0, 150.2], [90.6, 100.1], [130.0, 30.0], [120.4, 170.8]])
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = 500 + 2 * xx  # illumination gradient
    for (cy, cx), amp in zip(true, [4000, 2500, 3000, 5000, 2000]):
        img = img + amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 4.0**2))
    img = img + rng.normal(0, 20, shape)
    found = points_from_nuclei(img.astype(np.float32))
    assert len(found) == len(true)
    d = np.linalg.norm(true[:, None] - found[None], axis=2)
    assert d.min(axis=1).max() < 1.5
    assert points_from_nuclei(np.zeros(shape)).shape == (0, 2)  # blank image: no points, no error


def test_coverage_hand_case():
    lab = np.zeros((20, 20), np.int32)
    lab[0:5, 0:5] = 1
    lab[0:5, 10:15] = 2
    lab[10:15, 0:5] = 3
    lab[10:15, 10:15] = 4
    pts = [[2, 2], [1, 11], [3, 13], [18, 18], [-5, 3]]  # cell 1: one, cell 2: two, 3/4: none, 2 outside cells
    cov = point_coverage(pts, lab)
    assert cov == {"n_cells": 4, "n_points": 5, "exactly_one": 0.25, "none": 0.5, "multiple": 0.25,
                   "in_background": 0.4}
    np.testing.assert_array_equal(label_at_points(pts, lab), [1, 2, 2, 0, 0])
    assert point_coverage(np.zeros((0, 2)), lab)["none"] == 1.0


def test_validate_and_clip():
    shape = (10, 20)
    validate_points([[0, 0], [9.4, 19.4], [-0.5, -0.5]], shape)
    with pytest.raises(CksDataError, match="outside the 10x20 image"):
        validate_points([[5, 5], [12, 3]], shape, name="cellA.json")
    for edge in ([9.5, 3], [3, 19.5]):  # the far edge belongs to no pixel (half-open, as the CLI checks)
        with pytest.raises(CksDataError, match="outside"):
            validate_points([edge], shape)
    with pytest.raises(CksDataError, match="no points"):
        validate_points(np.zeros((0, 2)), shape, allow_empty=False)
    with pytest.raises(CksDataError, match="NaN"):
        validate_points([[np.nan, 1]], shape)
    with pytest.raises(CksDataError, match=r"\[N, 2\]"):
        validate_points([[1, 2, 3]], shape)
    np.testing.assert_array_equal(clip_points([[-3, 25], [4, 5]], shape), [[0, 19], [4, 5]])


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_points_file_roundtrip(tmp_path, suffix):
    p = np.array([[1.25, 2.5], [100.125, 3.0]], np.float32)
    write_points(tmp_path / f"p{suffix}", p)
    np.testing.assert_array_equal(read_points(tmp_path / f"p{suffix}"), p)
    write_points(tmp_path / f"e{suffix}", np.zeros((0, 2)))
    assert read_points(tmp_path / f"e{suffix}").shape == (0, 2)


def test_points_file_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CksDataError, match="bad.json"):
        read_points(tmp_path / "bad.json")
    (tmp_path / "cols.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CksDataError, match="cols.csv.*need y and x"):
        read_points(tmp_path / "cols.csv")
    (tmp_path / "bare.json").write_text("[[1, 2], [3, 4]]")
    assert read_points(tmp_path / "bare.json").shape == (2, 2)
    with pytest.raises(CksDataError, match="missing.csv.*not found"):
        read_points(tmp_path / "missing.csv")
    with pytest.raises(CksDataError, match=r"\.txt"):
        write_points(tmp_path / "p.txt", [[1, 2]])


# Test fields proposed in deepcell2016_covertlab/SOURCE.md.
DEEPCELL_TEST_FIELDS = ["training_data/MCF10A", "validation_data/HeLa", "validation_data/MCF10A"]


@pytest.mark.realdata
@pytest.mark.parametrize("field", DEEPCELL_TEST_FIELDS)
def test_nuclear_points_cover_real_deepcell_cells(field):
    value = os.environ.get("CKS_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("CKS_DATA_DIR not set: real-data test skipped")
    from cks.data.readers import read_deepcell

    sample = read_deepcell(Path(value) / "deepcell2016_covertlab" / field)
    pts = points_from_nuclei(sample["nuclear"])
    cov = point_coverage(pts, sample["label"])
    print(f"{field}: {cov}")
    assert cov["exactly_one"] > 0.5

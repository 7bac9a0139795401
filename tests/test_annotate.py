"""The click annotator's logic (add, remove, ignore off-image clicks, save, headless fallback), no browser."""
import numpy as np
import pytest

from cks.annotate import REMOVE_RADIUS, PointAnnotator
from cks.data.point_files import read_point_file
from cks.errors import CksDataError


def test_click_adds_and_a_second_click_removes(tmp_path):
    ann = PointAnnotator(np.random.default_rng(0).normal(size=(60, 80)))
    assert ann.shape == (60, 80) and ann.png  # the image travels to the browser as a PNG
    assert ann.click(10, 20) == "added" and ann.click(40, 70) == "added"
    assert ann.click(10 + REMOVE_RADIUS / 2, 20) == "removed"  # near the first point: remove it
    assert ann.click(70, 5) == "outside" and ann.click(5, -3) == "outside"
    np.testing.assert_allclose(ann.as_array(), [[40, 70]])
    ann.click(12.25, 33.5)
    path = ann.save(tmp_path / "field.csv")
    np.testing.assert_allclose(read_point_file(path, shape=(60, 80)), [[40, 70], [12.25, 33.5]])


def test_browser_messages_go_through_the_same_logic():
    ann = PointAnnotator(np.zeros((3, 32, 32)))
    ann._on_msg(ann, {"click": [5.0, 6.0]}, [])
    ann._on_msg(ann, {"other": 1}, [])
    assert ann.points == [[5.0, 6.0]]


def test_headless_fallback_and_empty_save(tmp_path):
    ann = PointAnnotator(np.zeros((32, 32)))
    (tmp_path / "p.csv").write_text("y,x\n3,4\n")
    np.testing.assert_allclose(ann.points_or(tmp_path / "p.csv"), [[3, 4]])  # nobody clicked: the file's points
    np.testing.assert_allclose(ann.points_or([[1, 2]]), [[1, 2]])
    with pytest.raises(CksDataError, match="no points to save"):
        ann.save(tmp_path / "none.csv")
    ann.click(7, 8)
    np.testing.assert_allclose(ann.points_or(tmp_path / "p.csv"), [[7, 8]])  # clicks win

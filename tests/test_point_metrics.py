"""Tests of cks.point_metrics (point-detection AP, the author's LoiAP): expectations worked out by hand."""
import numpy as np
import pytest

from cks import metrics as M
from cks import point_metrics as P


def test_point_ap_by_hand():
    gt = np.array([[10.0, 10.0], [30.0, 30.0]])
    pred = np.array([[10.0, 11.0], [10.0, 13.0], [30.0, 34.0], [50.0, 50.0]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    res = P.point_ap([pred], [scores], [gt])
    # 5 px: T by score = [0, 1, 0, 1] -> (1/2 + 2/4) / 2; 2 px: [0, 1, 0, 0] -> (1/2) / 2;
    # 1 px: the closest is exactly 1 px away, not < 1 -> 0
    assert res == {5.0: 0.5, 2.0: 0.25, 1.0: 0.0}


def test_point_greedy_nearest_unmatched():
    gt = np.array([[0.0, 0.0], [0.0, 3.0]])
    pred = np.array([[0.0, 1.4], [0.0, 0.2]])
    # pred 0 (first) takes its nearest GT (0,0); pred 1's only GT in range is taken: T = [1, 0], C = 2
    assert P.point_ap(pred, np.array([0.9, 0.8]), gt, thresholds=(2.0,)) == {2.0: 0.5}
    # reverse ranking: pred 1 takes (0,0), pred 0 then takes (0,3) at 1.6 px: AP 1
    assert P.point_ap(pred, np.array([0.8, 0.9]), gt, thresholds=(2.0,)) == {2.0: 1.0}
    # a prediction exactly on a GT point (distance 0) matches at every threshold
    assert P.point_ap(gt[:1], np.array([0.3]), gt[:1]) == {5.0: 1.0, 2.0: 1.0, 1.0: 1.0}
    # two images, one without predictions and one without GT
    res = P.point_ap([np.zeros((0, 2)), pred], [np.zeros(0), np.array([0.9, 0.8])],
                     [gt, np.zeros((0, 2))], thresholds=(5.0,))
    assert res == {5.0: 0.0}


def test_metrics_module_still_exports_point_functions():
    assert M.point_ap is P.point_ap and M.match_points is P.match_points
    from cks.metrics import point_ap  # the import chapter 03 used before the split
    assert point_ap is P.point_ap
    with pytest.raises(AttributeError, match="no_such_name"):
        M.no_such_name


def test_point_input_validation():
    gt = np.array([[0.0, 0.0]])
    with pytest.raises(ValueError, match=r"\[N, 2\].*\(3,\)"):
        P.match_points(np.zeros(3), np.zeros(1), gt, 2.0)
    with pytest.raises(ValueError, match="2 entries.*1 points"):
        P.match_points(gt, np.zeros(2), gt, 2.0)
    with pytest.raises(ValueError, match="one of each per image"):
        P.point_ap([gt, gt], [np.ones(1)], [gt, gt])
    # distances are strict: a point exactly at the threshold does not match
    assert not P.match_points(np.array([[0.0, 2.0]]), np.ones(1), gt, 2.0).any()
    assert P.match_points(np.array([[0.0, 1.999]]), np.ones(1), gt, 2.0).all()


def test_star_import_of_metrics_still_gives_the_point_functions():
    ns = {}
    exec("from cks.metrics import *", ns)
    assert ns["point_ap"] is P.point_ap and ns["match_points"] is P.match_points and "evaluate" in ns

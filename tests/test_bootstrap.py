"""Tests of cks.bootstrap: the no-resample case equals cks.metrics.evaluate, degenerate sets give
degenerate intervals, and a resample equals evaluate() on the resampled list of images."""
import numpy as np
import pytest

from cks import metrics as M
from cks.bootstrap import bootstrap_intervals
from cks.metrics import image_terms, metrics_from_terms
from cks.errors import CksDataError
from tests.test_metrics import random_labels


def _noisy_prediction(rng, gt):
    """Drop some GT cells, shift the rest by one pixel, add a false positive; random scores."""
    pred = np.roll(gt, 1, axis=1).copy()
    ids = np.unique(pred[pred > 0])
    for k in rng.choice(ids, size=len(ids) // 5, replace=False):
        pred[pred == k] = 0
    pred[:6, :6] = pred.max() + 1
    ids = np.unique(pred[pred > 0])
    return pred, {int(k): float(s) for k, s in zip(ids, rng.uniform(size=ids.size))}


@pytest.fixture
def image_set():
    rng = np.random.default_rng(3)
    out = []
    for n in (12, 25, 40, 8):
        gt, _ = random_labels(rng, n=n)
        pred, sc = _noisy_prediction(rng, gt)
        out.append((pred, sc, gt))
    return out


def test_all_images_equals_evaluate(image_set):
    preds, scores, gts = zip(*image_set)
    ref = M.evaluate(list(preds), list(scores), list(gts))
    got = metrics_from_terms([image_terms(p, s, g) for p, s, g in image_set])
    for k in ("ap50", "ap75", "map", "dice"):
        assert got[k] == pytest.approx(ref[k], abs=1e-12)


def test_a_resample_equals_evaluate_on_the_resampled_images(image_set):
    terms = [image_terms(p, s, g) for p, s, g in image_set]
    idx = [2, 2, 0, 3]  # with a repeat: pooled AP must count image 2 twice
    preds, scores, gts = zip(*[image_set[i] for i in idx])
    ref = M.evaluate(list(preds), list(scores), list(gts))
    got = metrics_from_terms(terms, idx)
    for k in ("ap50", "ap75", "map", "dice"):
        assert got[k] == pytest.approx(ref[k], abs=1e-12)


def test_identical_images_give_a_zero_width_interval(image_set):
    one = image_set[1]
    terms = [image_terms(*one)] * 5
    ci = bootstrap_intervals(terms, n_boot=50)
    point = metrics_from_terms(terms)
    for k in ("ap50", "ap75", "map", "dice"):
        assert ci[k][0] == pytest.approx(point[k]) and ci[k][1] == pytest.approx(point[k])


def test_interval_brackets_the_estimate_and_is_reproducible(image_set):
    terms = [image_terms(p, s, g) for p, s, g in image_set]
    a = bootstrap_intervals(terms, n_boot=300, seed=1)
    b = bootstrap_intervals(terms, n_boot=300, seed=1)
    assert a == b
    point = metrics_from_terms(terms)
    for k in ("ap50", "dice"):
        lo, hi = a[k]
        assert lo < hi  # the images differ, so resampling moves the metric
        assert lo <= point[k] <= hi
    assert a["unit"] == "image" and a["n_boot"] == 300


def test_bad_input():
    with pytest.raises(CksDataError, match="no images"):
        bootstrap_intervals([])


def test_evaluate_with_intervals_equals_evaluate(image_set):
    from cks.bootstrap import evaluate_with_intervals

    preds, scores, gts = (list(x) for x in zip(*image_set))
    ref = M.evaluate(preds, scores, gts)
    got = evaluate_with_intervals(preds, scores, gts, n_boot=100)
    for k in ("ap50", "ap75", "map", "dice"):
        assert got[k] == pytest.approx(ref[k], abs=1e-12)
    assert (got["n_gt"], got["n_pred"], got["n_images"]) == (ref["n_gt"], ref["n_pred"], ref["n_images"])
    assert got["ci95"] == bootstrap_intervals([image_terms(*t) for t in image_set], n_boot=100)
    with pytest.raises(CksDataError, match="one of each per image"):
        evaluate_with_intervals(preds, scores[:2], gts)

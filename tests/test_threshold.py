"""cks.threshold: cutting a low-threshold prediction equals predicting at the higher threshold."""
import numpy as np
import pytest
import torch

from cks.config import get_preset
from cks.data.synthetic import synthetic_sample
from cks.predict import predict, scores_by_label
from cks.threshold import apply_threshold, f1_at_iou, tune_score_threshold
from cks.train import train


def test_apply_threshold_drops_cells():
    lab = np.array([[1, 1, 2], [3, 3, 2]], np.int32)
    cut, sc = apply_threshold(lab, {1: 0.9, 2: 0.3, 3: 0.6}, 0.5)
    np.testing.assert_array_equal(cut, [[1, 1, 0], [3, 3, 0]])
    assert sc == {1: 0.9, 3: 0.6}


def test_f1_closed_form():
    gt = np.zeros((10, 10), np.int32)
    gt[0:4, 0:4], gt[6:10, 6:10] = 1, 2
    pred = np.zeros_like(gt)
    pred[0:4, 0:4], pred[6:8, 0:2] = 1, 2  # one exact match, one false positive; one GT missed
    r = f1_at_iou([pred], [{1: 0.9, 2: 0.8}], [gt])
    assert (r["precision"], r["recall"], r["f1"]) == (0.5, 0.5, 0.5)
    t = tune_score_threshold([pred], [{1: 0.9, 2: 0.3}], [gt], grid=(0.2, 0.5))
    assert t["threshold"] == 0.5 and t["f1"] == pytest.approx(2 / 3) and t["count_ratio"] == 0.5


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = get_preset("supervised", size="test", overrides={
        "segmentor.window": 48, "train.crop_size": 128, "train.steps": 60, "train.lr": 3e-3,
        "train.finetune_lr": 3e-3, "train.checkpoint_every": 10_000, "size.normalize": False})
    return train(cfg, [synthetic_sample((128, 128), n_cells=16, radius=(7, 11), seed=1)], progress=False)["model"]


def test_cut_equals_prediction_at_the_threshold(model):
    img = synthetic_sample((128, 128), n_cells=16, radius=(7, 11), seed=3)["image"]
    low, low_t = predict(model, img, score_threshold=0.2)
    scores = scores_by_label(low_t)
    vals = sorted(scores.values())
    assert len(vals) >= 3, "the fixture model should detect cells"
    t = float(np.median(vals))
    high, _ = predict(model, img, score_threshold=t)
    cut, _ = apply_threshold(low, scores, t)
    # same partition of the image (label ids differ: predict renumbers 1..n)
    ids = cut[cut > 0]
    assert np.array_equal(cut > 0, high > 0)
    pairs = np.unique(np.stack([ids, high[high > 0]]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))

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


def test_tune_mask_threshold_matches_a_direct_pass(model):
    from cks.errors import CksConfigError
    from cks.metrics import evaluate
    from cks.threshold import tune_mask_threshold

    samples = [synthetic_sample((128, 128), n_cells=16, radius=(7, 11), seed=s) for s in (3, 4)]
    r = tune_mask_threshold(model, samples, grid=(0.3, 0.5, 0.7))
    rows = {row["mask_threshold"]: row for row in r["table"]}
    assert sorted(rows) == [0.3, 0.5, 0.7]
    # the 0.5 row, recomputed from predict's defaults: one pass at the lowest score, cut at the tuned score
    labels, scores = zip(*[(lab, scores_by_label(t)) for lab, t in (predict(model, s["image"], score_threshold=0.2)
                                                                    for s in samples)])
    gts = [s["label"] for s in samples]
    tuned = tune_score_threshold(list(labels), list(scores), gts)
    cut = [apply_threshold(lab, sc, tuned["threshold"]) for lab, sc in zip(labels, scores)]
    ref = evaluate([c[0] for c in cut], [c[1] for c in cut], gts)
    assert rows[0.5]["score_threshold"] == tuned["threshold"] and rows[0.5]["f1"] == pytest.approx(tuned["f1"])
    assert rows[0.5]["dice"] == pytest.approx(ref["dice"]) and rows[0.5]["ap50"] == pytest.approx(ref["ap50"])
    assert rows[0.5]["ap75"] == pytest.approx(ref["ap75"]) and rows[0.5]["n_pred"] == ref["n_pred"]
    assert rows[0.5]["foreground_px"] == sum(int((lab > 0).sum()) for lab in labels)
    # a higher mask threshold keeps a subset of every mask's pixels: the foreground cannot grow
    fg = [rows[m]["foreground_px"] for m in (0.3, 0.5, 0.7)]
    assert fg[0] >= fg[1] >= fg[2] and fg[0] > fg[2]
    assert r["mask_threshold"] in rows and rows[r["mask_threshold"]]["f1"] == max(x["f1"] for x in r["table"])
    assert r["score_threshold"] == rows[r["mask_threshold"]]["score_threshold"]
    by_dice = tune_mask_threshold(model, samples, grid=(0.3, 0.5, 0.7), objective="dice")
    assert by_dice["table"] == r["table"]
    assert by_dice["mask_threshold"] == max(r["table"], key=lambda x: (x["dice"], -abs(x["mask_threshold"] - 0.5)))["mask_threshold"]
    with pytest.raises(CksConfigError, match=r"\(0, 1\)"):
        tune_mask_threshold(model, samples, grid=(0.0, 0.5))
    with pytest.raises(CksConfigError, match="objective"):
        tune_mask_threshold(model, samples, objective="ap")
    with pytest.raises(CksConfigError, match="masks"):
        tune_mask_threshold(model, [{"image": samples[0]["image"]}])
    with pytest.raises(CksConfigError, match="scale"):
        tune_mask_threshold(model, samples, scale=1.0)


def test_best_row_breaks_ties_towards_the_default():
    from cks.threshold import best_row

    rows = [{"mask_threshold": m, "f1": f, "dice": d} for m, f, d in
            [(0.3, 0.6, 0.5), (0.4, 0.5, 0.9), (0.5, 0.5, 0.7), (0.7, 0.6, 0.8)]]
    assert best_row(rows)["mask_threshold"] == 0.3  # 0.3 and 0.7 tie on F1, equally far from 0.5: the lower
    rows[0]["f1"] = 0.55
    assert best_row(rows)["mask_threshold"] == 0.7
    assert best_row(rows, "dice")["mask_threshold"] == 0.4
    rows[1]["dice"] = rows[3]["dice"] = 0.95  # 0.4 and 0.7 tie on Dice: the one nearer 0.5
    assert best_row(rows, "dice")["mask_threshold"] == 0.4

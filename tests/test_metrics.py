"""Tests of cks.metrics: expectations are computed by hand / by direct pixel counting / by pycocotools."""
from fractions import Fraction

import numpy as np
import pytest

from cks import metrics as M


# ----------------------------------------------------------------------------- helpers
def disk(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def random_labels(rng, shape=(96, 96), n=30, seeds=None, rmin=4.0, rmax=9.0):
    """Non-overlapping blobs: Voronoi cells of random seeds cut to a random radius; random sparse ids."""
    if seeds is None:
        seeds = rng.uniform(0, shape[0], size=(n, 2))
    radius = rng.uniform(rmin, rmax, size=len(seeds))
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    d2 = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2  # [H, W, n]
    near = d2.argmin(-1)
    inside = np.take_along_axis(d2, near[..., None], -1)[..., 0] <= radius[near] ** 2
    ids = rng.choice(np.arange(1, 10_000), size=len(seeds), replace=False)  # arbitrary, non-contiguous
    lab = np.where(inside, ids[near], 0).astype(np.int32)
    return lab, seeds


def greedy_reference(iou, scores, thr):
    """Literal per-prediction loop over a dense IoU matrix (the paper's / author's description)."""
    iou = np.asarray(iou)
    taken = np.zeros(iou.shape[1], bool)
    tp = np.zeros(iou.shape[0], bool)
    for p in np.argsort(-np.asarray(scores), kind="stable"):
        best, best_g = thr, -1
        for g in range(iou.shape[1]):
            if not taken[g] and iou[p, g] > best:
                best, best_g = iou[p, g], g
        if best_g >= 0:
            taken[best_g] = True
            tp[p] = True
    return tp


# ----------------------------------------------------------------------------- overlaps
def test_intersections_count_pixels_directly():
    rng = np.random.default_rng(0)
    gt, seeds = random_labels(rng)
    pred, _ = random_labels(rng, seeds=seeds + rng.normal(0, 2.0, seeds.shape))
    pred_ids, gt_ids, pa, ga, inter = M.intersections(pred, gt)
    assert np.array_equal(pred_ids, np.unique(pred[pred > 0]))
    assert np.array_equal(gt_ids, np.unique(gt[gt > 0]))
    dense = inter.toarray()
    for i, p in enumerate(pred_ids):
        assert pa[i] == (pred == p).sum()
        for j, g in enumerate(gt_ids):
            assert dense[i, j] == ((pred == p) & (gt == g)).sum()
    for j, g in enumerate(gt_ids):
        assert ga[j] == (gt == g).sum()
    # huge ids take the np.unique path and give the same matrix
    pred_big = np.where(pred > 0, pred.astype(np.int64) + 10**12, 0)
    _, _, pa2, _, inter2 = M.intersections(pred_big, gt)
    assert np.array_equal(pa2, pa) and np.array_equal(inter2.toarray(), dense)


def test_disks_closed_form_threshold():
    shape, r = (64, 64), 10
    a, b = disk(shape, 32, 28, r), disk(shape, 32, 35, r)  # shifted by 7 px
    inter, union = (a & b).sum(), (a | b).sum()
    iou_expected = inter / union
    assert 0.3 < iou_expected < 0.9
    pred, gt = a.astype(np.int32) * 3, b.astype(np.int32) * 5
    _, _, iou = M.iou_matrix(pred, gt)
    assert iou.toarray()[0, 0] == pytest.approx(iou_expected, abs=1e-15)
    scores = {3: 0.9}
    below = M.evaluate(pred, scores, gt, iou_thresholds=[iou_expected - 1e-6])
    above = M.evaluate(pred, scores, gt, iou_thresholds=[iou_expected + 1e-6])
    assert below["map"] == 1.0 and above["map"] == 0.0
    # strictly greater: a threshold equal to the IoU does not match
    assert not M.match_at_iou(iou, [0.9], iou.toarray()[0, 0])[0]


# ----------------------------------------------------------------------------- AP
def test_average_precision_by_hand():
    assert M.average_precision([np.array([1, 0])], [np.array([0.9, 0.1])], 1) == 1.0
    assert M.average_precision([np.array([0, 1])], [np.array([0.9, 0.1])], 1) == 0.5
    # unsorted input: T by score = [0, 1, 0, 1], P = [0, 1/2, 1/3, 2/4], C = 3
    t, s = np.array([1, 0, 1, 0]), np.array([0.7, 0.95, 0.9, 0.8])
    assert M.average_precision([t], [s], 3) == pytest.approx((0.5 + 0.5) / 3)
    assert M.average_precision([], [], 4) == 0.0
    assert np.isnan(M.average_precision([np.array([1])], [np.array([1.0])], 0))


def test_duplicate_prediction_is_false_positive():
    gt = np.zeros((32, 32), np.int32)
    gt[10:20, 10:20] = 1
    pred = np.zeros_like(gt)
    pred[10:19, 10:20] = 4  # 90 px of the GT: IoU 0.9
    pred[19:20, 10:20] = 7  # remaining 10 px: IoU 0.1
    # big piece ranked first: T = [1, 0] at every threshold -> AP 1
    res = M.evaluate(pred, {4: 0.9, 7: 0.5}, gt, iou_thresholds=[0.05, 0.5])
    assert res["ap"][0.05] == 1.0 and res["ap"][0.5] == 1.0
    # small piece ranked first: at 0.5 T = [0, 1] -> AP 1/2; at 0.05 (greedy loop path) the small
    # piece takes the GT first and the big one becomes the duplicate: T = [1, 0] -> AP 1
    res = M.evaluate(pred, {4: 0.5, 7: 0.9}, gt, iou_thresholds=[0.05, 0.5])
    assert res["ap"][0.5] == 0.5 and res["ap"][0.05] == 1.0
    assert res["n_pred"] == 2 and res["n_gt"] == 1


def test_ap_pooled_over_images():
    gt = np.zeros((2, 32, 32), np.int32)
    gt[:, 5:15, 5:15] = 1
    pred = gt.copy()
    pred[1, 20:25, 20:25] = 2  # false positive in image 2 with the top score
    scores = [{1: 0.6}, np.array([0.8, 0.9])]  # dict and array (scores[k] <-> label k+1) forms
    res = M.evaluate(pred, scores, gt)
    # T by score = [0, 1, 1], P = [0, 1/2, 2/3], C = 2
    assert res["ap50"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert res["map"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert sorted(res["ap"]) == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert res["n_images"] == 2 and res["n_gt"] == 2 and res["n_pred"] == 3


def test_empty_prediction_and_empty_gt():
    gt = np.zeros((16, 16), np.int32)
    gt[2:6, 2:6] = 1
    empty = np.zeros_like(gt)
    res = M.evaluate(empty, {}, gt)
    assert res["ap50"] == 0.0 and res["map"] == 0.0 and res["dice"] == 0.0 and res["n_pred"] == 0
    res = M.evaluate(gt, {1: 0.9}, empty)  # predictions without GT: AP undefined, Dice 0
    assert np.isnan(res["ap50"]) and np.isnan(res["map"]) and res["dice"] == 0.0
    assert np.isnan(M.instance_dice(empty, empty))


# ----------------------------------------------------------------------------- Dice
def test_dice_by_hand_partner_is_largest_intersection():
    gt = np.zeros((40, 40), np.int32)
    gt[0:4, 0:4] = 1  # g1: 16 px
    gt[10:12, 10:12] = 2  # g2: 4 px, missed
    pred = np.zeros_like(gt)
    pred[0:4, 0:1] = 1  # m1: 4 px, |m1∩g1| = 4 (IoU 0.25)
    pred[0:4, 1:30] = 2  # m2: 116 px, |m2∩g1| = 12 (IoU 0.1): g1's partner by intersection
    pred[20:22, 20:22] = 3  # m3: 4 px, no overlap
    F = Fraction
    d_m1, d_m2 = F(2 * 4, 4 + 16), F(2 * 12, 116 + 16)
    pred_part = (4 * d_m1 + 116 * d_m2 + 4 * 0) / F(4 + 116 + 4)
    gt_part = (16 * d_m2 + 4 * 0) / F(16 + 4)  # g1 -> m2 (not m1, which has the larger IoU)
    expected = float((pred_part + gt_part) / 2)
    assert M.instance_dice(pred, gt) == pytest.approx(expected, abs=1e-12)
    assert M.evaluate(pred, {1: 0.9, 2: 0.8, 3: 0.7}, gt)["dice"] == pytest.approx(expected, abs=1e-12)
    # min score drops m3 (author: Dice on predictions with score >= 0.5)
    pred_part2 = (4 * d_m1 + 116 * d_m2) / F(120)
    exp2 = float((pred_part2 + gt_part) / 2)
    got = M.instance_dice(pred, gt, {1: 0.9, 2: 0.8, 3: 0.1}, min_score=0.5)
    assert got == pytest.approx(exp2, abs=1e-12)
    res = M.evaluate(pred, {1: 0.9, 2: 0.8, 3: 0.1}, gt, dice_min_score=0.5)
    assert res["dice"] == pytest.approx(exp2, abs=1e-12) and res["n_pred"] == 3


def test_dice_weights_pooled_over_the_set():
    gt = np.zeros((2, 20, 20), np.int32)
    gt[0, 0:10, 0:10] = 1  # 100 px, predicted perfectly
    gt[1, 0:2, 0:2] = 1  # 4 px, missed
    pred = np.zeros_like(gt)
    pred[0] = gt[0]
    pred[1, 10:12, 10:12] = 1  # 4 px false positive
    # pooled weights: (100*1 + 4*0)/104 on both sides; a per-image mean would give 0.5
    assert M.instance_dice(pred, gt) == pytest.approx(100 / 104)
    assert M.instance_dice(list(pred), list(gt)) == pytest.approx(100 / 104)


# ----------------------------------------------------------------------------- matching
def test_greedy_loop_matches_literal_reference():
    rng = np.random.default_rng(1)
    for trial in range(30):
        p, g = rng.integers(0, 8), rng.integers(0, 8)
        iou = rng.uniform(0, 1, (p, g)) * (rng.uniform(size=(p, g)) < 0.5)
        scores = rng.uniform(size=p)
        for thr in (0.1, 0.3, 0.5, 0.7):
            assert np.array_equal(M.match_at_iou(iou, scores, thr), greedy_reference(iou, scores, thr))


def _coco(gt, pred, scores, thrs):
    from pycocotools import mask as mu
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def rle(m):
        return mu.encode(np.asfortranarray(m.astype(np.uint8)))

    gt_ids, pred_ids = np.unique(gt[gt > 0]), np.unique(pred[pred > 0])
    g_rles = [rle(gt == i) for i in gt_ids]
    d_rles = [rle(pred == i) for i in pred_ids]
    ious = mu.iou(d_rles, g_rles, [0] * len(g_rles))
    coco_gt = COCO()
    coco_gt.dataset = {
        "images": [{"id": 1, "height": gt.shape[0], "width": gt.shape[1]}],
        "categories": [{"id": 1, "name": "cell"}],
        "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": r, "iscrowd": 0,
                         "area": float(mu.area(r)), "bbox": mu.toBbox(r).tolist()}
                        for k, r in enumerate(g_rles)],
    }
    coco_gt.createIndex()
    coco_dt = coco_gt.loadRes([{"image_id": 1, "category_id": 1, "segmentation": r, "score": float(s)}
                               for r, s in zip(d_rles, scores)])  # dt ann id k+1 <-> pred_ids[k]
    ev = COCOeval(coco_gt, coco_dt, iouType="segm")
    ev.params.iouThrs = np.array(thrs)
    ev.params.maxDets = [10_000]
    ev.params.areaRng, ev.params.areaRngLbl = [[0, 1e10]], ["all"]
    ev.evaluate()
    e = ev.evalImgs[0]
    tp = np.zeros((len(thrs), len(pred_ids)), bool)
    tp[:, np.asarray(e["dtIds"]) - 1] = e["dtMatches"] > 0
    return np.asarray(ious).reshape(len(pred_ids), len(gt_ids)), tp


@pytest.mark.parametrize("seed", [3, 4])
def test_matching_agrees_with_pycocotools(seed, capsys):
    """IoU matrix equals maskUtils.iou; TP flags equal COCOeval's dtMatches.

    COCO matches IoU >= thr, we match IoU > thr. Pixel-count IoUs of small blobs do hit 0.5 or
    0.75 exactly (e.g. 12/24), so COCO is run at thr + 1e-9: IoUs are ratios of integers < 1e4,
    hence "IoU >= thr + 1e-9" is exactly "IoU > thr". Below 0.5 a prediction can have several
    candidates and COCO breaks exact IoU ties towards the last GT, we towards the first; the test
    asserts that no prediction has tied candidates for these seeds.
    """
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(seed)
    gt, seeds = random_labels(rng)
    keep = rng.uniform(size=len(seeds)) < 0.85  # misses
    pseeds = np.concatenate([seeds[keep] + rng.normal(0, 2.5, (keep.sum(), 2)),
                             rng.uniform(0, 96, (5, 2))])  # false positives
    pred, _ = random_labels(rng, seeds=pseeds, rmin=3.0, rmax=11.0)
    pred_ids, gt_ids, iou = M.iou_matrix(pred, gt)
    scores = rng.uniform(size=pred_ids.size)
    thrs = [0.3, 0.5, 0.75]
    coco_iou, coco_all = _coco(gt, pred, scores, [t + 1e-9 for t in thrs] + [t - 1e-9 for t in thrs])
    coco_tp, coco_ge = coco_all[: len(thrs)], coco_all[len(thrs):]
    ours = iou.toarray()
    np.testing.assert_allclose(ours, coco_iou, rtol=0, atol=1e-12)
    for row in ours:
        cand = row[row > min(thrs)]
        assert np.unique(cand).size == cand.size  # no tied candidates
    if seed == 3:  # this seed has an IoU of exactly 0.5 or 0.75: strict ">" is really tested
        assert np.any(np.isin(ours, thrs))
    for k, t in enumerate(thrs):
        tp = M.match_at_iou(iou, scores, t)
        assert np.array_equal(tp, coco_tp[k]), t
        assert np.array_equal(M.match_at_iou(iou, scores, t - 1e-9), coco_ge[k]), t  # ">=" variant
        assert np.array_equal(tp, greedy_reference(ours, scores, t))
        assert 0 < tp.sum() < tp.size  # non-trivial: both TPs and FPs
    capsys.readouterr()  # pycocotools prints progress


# ----------------------------------------------------------------------------- validation
def test_input_validation():
    gt = np.zeros((8, 8), np.int32)
    gt[1:3, 1:3] = 1
    with pytest.raises(ValueError, match=r"\(8, 9\).*\(8, 8\)"):
        M.evaluate(np.zeros((8, 9), np.int32), {}, gt)
    with pytest.raises(ValueError, match="integer"):
        M.evaluate(gt.astype(np.float32), {1: 1.0}, gt)
    with pytest.raises(ValueError, match=r"\[1\]"):
        M.evaluate(gt * 1, {2: 1.0}, gt)
    with pytest.raises(ValueError, match="label id"):
        M.evaluate(gt * 3, np.array([1.0, 0.5]), gt)  # label 3 needs scores[2]
    with pytest.raises(ValueError):
        M.evaluate([gt, gt], [{1: 1.0}], [gt, gt])


def test_many_cells_runs():
    """2025 grid cells on 1024x1024 vs a shifted, relabelled copy; only sanity, no timing assert."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:1024, :1024]
    cell = (yy // 22) * 47 + xx // 22 + 1
    border = (yy % 22 == 0) | (xx % 22 == 0) | (yy >= 45 * 22) | (xx >= 45 * 22)
    gt = np.where(border, 0, cell).astype(np.int32)
    perm = rng.permutation(gt.max() + 1) + 1
    perm[0] = 0
    pred = perm[np.roll(gt, (2, 3), axis=(0, 1))]
    n = int(pred.max())
    res = M.evaluate(pred, rng.uniform(size=n), gt)
    assert res["n_gt"] == 2025 and res["n_pred"] == 2025
    for k in ("ap50", "ap75", "map", "dice"):
        assert 0.0 <= res[k] <= 1.0
    assert res["ap50"] == 1.0  # IoU of a 21x21 square shifted by (2, 3) is 342/540 > 0.5

"""cks.matched_shape: closed-form disk and straight-edge offsets, the sign convention, bins and counts, the
disk baseline against a hand count, and the size slope of masks that do or do not follow cell size."""
import json
import math

import numpy as np
import pytest

from cks.matched_shape import shape_diagnostics, size_slope, summarise

H = W = 96
YY, XX = np.mgrid[0:H, 0:W]


def disk(r, cy=48.0, cx=48.0, value=1):
    return np.where((YY - cy) ** 2 + (XX - cx) ** 2 <= r * r, value, 0).astype(np.int32)


def one(pred, gt, **kw):
    res = shape_diagnostics([pred], [gt], **kw)
    return res, {k: v[0] for k, v in res["cells"].items()}


# ----------------------------------------------------------------------------- closed-form cases
@pytest.mark.parametrize("r_pred, offset", [(13, 3.0), (8, -2.0), (10, 0.0)])
def test_concentric_disks(r_pred, offset):
    gt = disk(10)
    res, c = one(disk(r_pred, value=7), gt)
    # the edges of a digital circle read up to ~0.3 px short of the radial difference
    assert c["offset"] == pytest.approx(offset, abs=0.35)
    if r_pred == 10:
        assert c["offset"] == 0.0 and c["iou"] == 1.0
    assert math.copysign(1, c["offset"]) == math.copysign(1, offset) or offset == 0
    assert c["area_ratio"] == pytest.approx(r_pred ** 2 / 100, rel=0.03)
    assert c["iou"] == pytest.approx(min(r_pred, 10) ** 2 / max(r_pred, 10) ** 2, rel=0.03)
    assert c["area_ratio"] == disk(r_pred).sum() / gt.sum()  # exact pixel counts
    diam = math.sqrt(4 * gt.sum() / math.pi)
    assert c["diameter"] == pytest.approx(diam) and c["offset_rel"] == pytest.approx(c["offset"] / diam)
    assert c["pred_id"] == 7 and c["gt_id"] == 1 and c["matched"]
    assert 0.85 < c["solidity_pred"] <= 1 and 0.85 < c["solidity_true"] <= 1


@pytest.mark.parametrize("rows_pred, offset", [(24, 4.0), (17, -3.0), (20, 0.0)])
def test_straight_edge_exact_and_border_not_counted(rows_pred, offset):
    """A band along the top of the image: only its bottom edge is boundary; moving it by k px -> offset k."""
    gt = np.zeros((H, W), np.int32)
    gt[:20] = 1
    pred = np.zeros((H, W), np.int32)
    pred[:rows_pred] = 1
    _, c = one(pred, gt)
    assert c["offset"] == pytest.approx(offset, abs=1e-9)
    assert c["solidity_pred"] == pytest.approx(1.0) and c["area_ratio"] == pytest.approx(rows_pred / 20)


def test_sign_convention_shifted_disk():
    """Larger masks are outside (+), smaller inside (-), whatever their position."""
    gt = disk(12, 40.3, 50.6)
    big = one(disk(15, 40.3, 50.6), gt)[1]["offset"]
    small = one(disk(9, 40.3, 50.6), gt)[1]["offset"]
    assert big > 2.3 and small < -2.3


# ----------------------------------------------------------------------------- bins, counts, scale
def test_bins_counts_and_scale():
    centres = [(25, 25, 5), (25, 80, 10), (80, 25, 14), (90, 95, 20)]  # diameters ~10, 20, 28, 40
    yy, xx = np.mgrid[0:240, 0:240]
    gt, pred = np.zeros((240, 240), np.int32), np.zeros((240, 240), np.int32)
    for k, (cy, cx, r) in enumerate(centres + [(180, 180, 30)]):  # + diameter ~60
        gt[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k + 1
    for k, (cy, cx, r) in enumerate(centres):  # the 48+ cell gets no prediction, plus two false positives
        pred[(yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 2) ** 2] = k + 10
    pred[230:236, 5:11] = 50
    pred[5:11, 230:236] = 51
    res = shape_diagnostics([pred], [gt], bins=(0, 16, 24, 32, 48, math.inf))
    assert [b["bin"] for b in res["bins"]] == ["0-16", "16-24", "24-32", "32-48", "48+"]
    assert [b["n_gt"] for b in res["bins"]] == [1, 1, 1, 1, 1]
    assert [b["n_matched"] for b in res["bins"]] == [1, 1, 1, 1, 0]
    assert res["count_ratio"] == pytest.approx(6 / 5) and res["n_pred"] == 6 and res["n_gt"] == 5
    o = res["overall"]
    assert o["n_matched"] == 4 and o["n_matched_50"] == 4
    assert 1.5 < o["offset_median"] < 2.3 and o["area_ratio_median"] > 1
    assert res["cells"]["iou"][4] == 0 and np.isnan(res["cells"]["offset"][4]) and res["cells"]["pred_id"][4] == 0
    assert res["bins"][4]["offset_median"] is not None and math.isnan(res["bins"][4]["offset_median"])
    s = summarise(res)
    text = json.dumps(s, allow_nan=False)  # strict JSON: NaN became null
    assert "cells" not in s and json.loads(text)["bins"][4]["offset_median"] is None
    # at half scale the diameters (and offsets in px) halve: ~5, 10, 14, 20, 30
    half = shape_diagnostics([pred], [gt], scale=0.5)
    assert [b["n_gt"] for b in half["bins"]] == [3, 1, 1, 0, 0]
    np.testing.assert_allclose(half["cells"]["offset"], res["cells"]["offset"] * 0.5)
    np.testing.assert_allclose(half["cells"]["offset_rel"], res["cells"]["offset_rel"])


def test_match_threshold_and_iou50_counts():
    gt = disk(10)
    res = shape_diagnostics([disk(20), disk(13), np.zeros((H, W), np.int32)], [gt, gt, gt])
    iou = res["cells"]["iou"]
    assert 0.1 < iou[0] < 0.5 and iou[1] > 0.5 and iou[2] == 0
    assert res["overall"]["n_matched"] == 2 and res["overall"]["n_matched_50"] == 1
    assert res["count_ratio"] == pytest.approx(2 / 3)


def test_disk_baseline_iou_by_hand():
    """A 10 x 10 square and a point at its centre: the disk (distance < r of the rounded point) counted by hand."""
    gt = np.zeros((H, W), np.int32)
    gt[20:30, 20:30] = 4
    for r in (4.0, 6.0):
        disk_px = {(y, x) for y in range(H) for x in range(W) if (y - 25) ** 2 + (x - 25) ** 2 < r * r}
        sq = {(y, x) for y in range(20, 30) for x in range(20, 30)}
        expect = len(disk_px & sq) / len(disk_px | sq)
        _, c = one(gt, gt, points=[np.array([[24.6, 24.7]])], disk_radius=r)
        assert c["disk_iou"] == pytest.approx(expect) and c["iou"] == 1.0
    # default radius: half the median equivalent diameter, points: GT centroids
    res = shape_diagnostics([gt], [gt])
    assert res["disk_radius"][0] == pytest.approx(math.sqrt(4 * 100 / math.pi) / 2)



@pytest.mark.parametrize("power, expect", [(1.0, 1.0), (0.0, 0.0), (0.5, 0.5)])
def test_size_slope_of_masks_that_follow_cell_size_or_not(power, expect):
    """Predicted radius r_p = 6 (r / 6)^power for true disks of radius r: area slope = power, by construction."""
    yy, xx = np.mgrid[:200, :200]
    gt, pred = np.zeros((200, 200), np.int32), np.zeros((200, 200), np.int32)
    for i, (cy, cx, r) in enumerate([(30, 30, 6), (30, 100, 9), (100, 40, 12), (110, 130, 15), (165, 60, 18)], 1):
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        gt[d2 <= r ** 2] = i
        pred[d2 <= (6 * (r / 6) ** power) ** 2] = i
    s = shape_diagnostics([pred], [gt])
    assert s["cells"]["matched"].all()
    assert s["overall"]["size_slope"] == pytest.approx(expect, abs=0.05)  # pixelated disks: areas within ~2 %


def test_size_slope_edge_cases():
    assert math.isnan(size_slope([1, 2], [1, 2])) and math.isnan(size_slope([5, 6, 7], [4, 4, 4]))
    assert size_slope([2, 8, 32], [1, 2, 4]) == pytest.approx(2.0)  # pred = 2 true^2 exactly
    assert size_slope([2, 0, 8, 32], [1, 3, 2, 4]) == pytest.approx(2.0)  # a zero area is left out


def _brute_neighbours(lab, gap):
    """Reference by hand: for each pair of cells, the smallest centre distance between their pixels."""
    ids = [int(i) for i in np.unique(lab) if i > 0]
    pix = {i: np.argwhere(lab == i).astype(float) for i in ids}
    out = []
    for i in ids:
        n = 0
        for j in ids:
            if j != i:
                d = np.sqrt(((pix[i][:, None, :] - pix[j][None, :, :]) ** 2).sum(-1)).min()
                n += d <= gap
        out.append(n)
    return np.array(ids), np.array(out)


def test_touching_neighbours_by_gap():
    from cks.matched_shape import touching_neighbours
    lab = np.zeros((20, 30), np.int32)
    lab[2:6, 2:6] = 1     # 2 touches 1 edge to edge (distance 1)
    lab[2:6, 6:10] = 2
    lab[2:6, 12:16] = 3   # two background columns between 2 and 3: distance 3
    lab[7:10, 7:10] = 4   # one background row under 2: distance 2 from 2; diagonal to 1 at sqrt(8) = 2.83
    lab[15:18, 25:28] = 7  # alone; ids need not be consecutive
    ids, n = touching_neighbours(lab, gap=2)
    assert ids.tolist() == [1, 2, 3, 4, 7] and n.tolist() == [1, 2, 0, 1, 0]
    _, n1 = touching_neighbours(lab, gap=1)
    assert n1.tolist() == [1, 1, 0, 0, 0]
    _, n3 = touching_neighbours(lab, gap=3)
    assert n3.tolist() == [2, 3, 1, 2, 0]  # 1-4 at sqrt(8) <= 3; 2-3 at 3
    for gap in (1, 1.5, 2, 3, 4.5):  # the shifted comparison equals the pairwise distances by hand
        assert np.array_equal(touching_neighbours(lab, gap)[1], _brute_neighbours(lab, gap)[1])


def test_touching_neighbours_random_and_refusals():
    from cks.errors import CksDataError
    from cks.matched_shape import touching_neighbours
    rng = np.random.default_rng(3)
    lab = np.zeros((40, 40), np.int32)
    for k in range(1, 12):
        y, x = rng.integers(0, 36, 2)
        lab[y:y + rng.integers(2, 6), x:x + rng.integers(2, 6)] = k  # later cells may cut earlier ones
    for gap in (1, 2, 2.5):
        ids, n = touching_neighbours(lab, gap)
        ref_ids, ref = _brute_neighbours(lab, gap)
        assert np.array_equal(ids, ref_ids) and np.array_equal(n, ref)
    assert touching_neighbours(np.zeros((5, 5), int))[0].size == 0
    with pytest.raises(CksDataError, match="gap"):
        touching_neighbours(lab, 0.5)
    with pytest.raises(CksDataError, match="2-D"):
        touching_neighbours(lab[None])


def test_crowding_groups_split_the_cells():
    gt = np.zeros((60, 90), np.int32)
    gt[5:25, 5:25] = 1
    gt[5:25, 25:45] = 2   # touches 1
    gt[35:55, 60:80] = 3  # alone
    pred = np.zeros_like(gt)
    pred[5:25, 5:25] = 1   # perfect on the touching pair ...
    pred[5:25, 25:45] = 2
    pred[35:55, 60:70] = 3  # ... half of the lone cell
    r = shape_diagnostics([pred], [gt])
    g = {row["group"]: row for row in r["crowding"]}
    assert list(g) == ["0", "1", "2+"]
    assert (g["0"]["n_gt"], g["1"]["n_gt"], g["2+"]["n_gt"]) == (1, 2, 0)
    assert g["1"]["iou_median"] == 1.0 and g["0"]["iou_median"] == pytest.approx(0.5)
    assert g["1"]["n_matched_50"] == 2 and g["0"]["n_matched_50"] == 1
    assert r["cells"]["neighbours"].tolist() == [1, 1, 0]
    assert sum(row["n_gt"] for row in r["crowding"]) == r["n_gt"]
    json.dumps(summarise(r))  # serialisable, NaN of the empty group -> null
    assert summarise(r)["crowding"][2]["iou_median"] is None


def test_touching_neighbours_large_ids_and_gap_limits():
    from cks.errors import CksDataError
    from cks.matched_shape import touching_neighbours
    lab = np.zeros((4, 6), np.uint64)
    lab[:, :2], lab[:, 2:4] = 3_100_000_000, 3_100_000_001  # side by side, ids beyond int32 (a key a*base+b overflowed)
    lab[:, 5] = 2 ** 63 + 5
    ids, n = touching_neighbours(lab, 1)
    assert ids.tolist() == [3_100_000_000, 3_100_000_001, 2 ** 63 + 5] and n.tolist() == [1, 1, 0]
    assert touching_neighbours(lab, 2)[1].tolist() == [1, 2, 1]
    assert touching_neighbours(lab, 1e6)[1].tolist() == [2, 2, 2]  # every cell within reach of every other
    with pytest.raises(CksDataError, match="finite"):
        touching_neighbours(lab, math.inf)

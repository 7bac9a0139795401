"""benchmarks/mask_resolution.py: the true masks sent through predict's mask chain (closed-form cases)."""
import json

import numpy as np
import pytest

from benchmarks import mask_resolution as bench


def _disks(shape=(90, 110), cells=((30.4, 35.2, 12.0), (60.7, 75.1, 15.0))):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    lab = np.zeros(shape, np.int32)
    for k, (cy, cx, r) in enumerate(cells, start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return lab


@pytest.mark.parametrize("back", ["nearest", "nearest-exact", "bilinear"])
def test_scale_one_stride_one_is_the_identity(back):
    lab = _disks()
    out, ids = bench.ceiling_label(lab, 1.0, 1, back)
    np.testing.assert_array_equal(out, lab)
    assert ids.tolist() == [1, 2]


def test_coarser_grids_lose_iou_and_bilinear_keeps_at_least_as_much():
    lab = _disks()
    iou = {}
    for stride in (1, 2, 4):
        for back in ("nearest", "bilinear"):
            out, ids = bench.ceiling_label(lab, 0.6, stride, back)
            assert ids.tolist() == [1, 2]  # both cells survive
            iou[stride, back] = bench.matched_iou(out, lab)
    for back in ("nearest", "bilinear"):
        assert (iou[1, back] > 0.85).all() and iou[4, back].mean() < iou[1, back].mean()
    assert iou[2, "bilinear"].mean() >= iou[2, "nearest"].mean()


def test_matched_iou_closed_form():
    gt = np.zeros((10, 10), np.int32)
    gt[0:4, 0:4], gt[6:10, 6:10] = 1, 2
    pred = np.zeros_like(gt)
    pred[0:4, 0:2] = 1  # half of cell 1; cell 2 vanished
    np.testing.assert_allclose(bench.matched_iou(pred, gt), [0.5, 0.0])


def test_main_writes_rows_per_split_stride_and_way_back(monkeypatch, tmp_path):
    import cks.data.spec

    lab = _disks()
    monkeypatch.setattr(cks.data.spec, "load_dataset", lambda spec, **kw: [{"label": lab, "image": lab[None]}])
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    rec = bench.main(["--protocol", "usiigaci_points_v2", "--splits", "tune", "--strides", "1", "2",
                      "--back", "nearest", "bilinear"])
    rows = rec["splits"]["tune"]["rows"]
    assert sorted(rows) == ["stride1_bilinear", "stride1_nearest", "stride2_bilinear", "stride2_nearest"]
    assert all(r["n_cells"] == 2 and r["ap50"] == 1.0 for r in rows.values())
    saved = json.loads((tmp_path / "results" / "usiigaci_points_v2" / "mask_resolution.json").read_text())
    assert saved["splits"]["tune"]["rows"] == json.loads(json.dumps(rows))

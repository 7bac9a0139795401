"""Detection head: decoding (round trip with the targets of cks.grid), point-distance NMS, capacity, matching."""
import pytest
import torch

from cks.config import get_preset
from cks.grid import detection_targets
from cks.models.detector import decode, match_predictions, nms_points


def greedy_nms(p, s, r):
    order = torch.argsort(s, descending=True, stable=True)
    keep = []
    for i in order.tolist():
        if all(float(((p[i] - p[k]) ** 2).sum()) >= r * r for k in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


@pytest.mark.parametrize("seed", range(5))
def test_nms_equals_greedy_reference(seed):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(400, 2, generator=g) * 120
    s = torch.rand(400, generator=g)
    assert torch.equal(nms_points(p, s, 8.0), greedy_nms(p, s, 8.0))


def test_nms_removes_duplicates_keeps_best():
    p = torch.tensor([[10.0, 10.0], [12.0, 11.0], [30.0, 30.0], [10.0, 17.9], [10.0, 18.1]])
    s = torch.tensor([0.5, 0.9, 0.7, 0.3, 0.2])
    keep = nms_points(p, s, 8.0)
    # 1 (best) suppresses 0; 2 is far; 3 is 6.9 px from 1 -> suppressed; 4 is 7.1 px from 1 -> suppressed
    assert keep.tolist() == [1, 2]
    assert nms_points(torch.zeros(0, 2), torch.zeros(0), 8.0).numel() == 0


@pytest.mark.parametrize("stride", [4, 8, 16, 32])
def test_targets_decode_back_to_points(stride):
    pts = torch.tensor([[[10.0, 20.0], [100.3, 37.7], [127.0, 0.0], [63.9, 127.0]]])  # distinct cells at every stride
    valid = torch.ones(1, 4, dtype=torch.bool)
    hw = (128 // stride, 128 // stride)
    tgt, off = detection_targets(pts, valid, stride, hw, radius=8.0)
    logits = {stride: tgt * 20 - 10}
    dets = decode(logits, {stride: off}, (128, 128), min_score=0.5, nms_radius=1e-3, max_output=10_000)[0]
    # every positive cell decodes to exactly its nearest point (within 0.5 px)
    d = torch.cdist(dets[0], pts[0])
    assert float(d.min(1).values.max()) < 0.5
    # own cell always positive, so every point is recovered at every stride
    assert float(d.min(0).values.max()) < 0.5


def test_decode_capacity_at_least_4096():
    cfg = get_preset("base")
    assert cfg.detector.max_output >= 4096
    g = torch.Generator().manual_seed(0)
    # 4500 well-separated points on a grid
    yy, xx = torch.meshgrid(torch.arange(60) * 12.0 + 6, torch.arange(75) * 12.0 + 6, indexing="ij")
    pts = torch.stack([yy.flatten(), xx.flatten()], 1)[None]
    valid = torch.ones(1, pts.shape[1], dtype=torch.bool)
    logits, offsets = {}, {}
    for s in (4, 8):
        t, o = detection_targets(pts, valid, s, (736 // s, 928 // s), 8.0)
        logits[s] = t * 8 - 4 + torch.rand(t.shape, generator=g)
        offsets[s] = o
    dets = decode(logits, offsets, (720, 900), 0.2, 8.0, cfg.detector.max_output)[0]
    assert len(dets[0]) == 4096


def test_match_predictions_replaces_within_radius():
    gt = torch.tensor([[10.0, 10.0], [50.0, 50.0]])
    pred = torch.tensor([[12.0, 11.0], [11.0, 10.0], [80.0, 80.0]])
    sc = torch.tensor([0.9, 0.5, 0.8])
    out = match_predictions(gt, pred, sc, 12.0)
    assert out[0].tolist() == [12.0, 11.0]  # highest-scoring match
    assert out[1].tolist() == [50.0, 50.0]  # nothing within 12 px

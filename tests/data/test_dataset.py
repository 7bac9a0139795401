"""cks.data.dataset: training crops, seeding per (epoch, index), collate."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cks.data.dataset import TrainingDataset, collate
from cks.data.readers import make_sample
from cks.errors import CksDataError


def samples(n=3):
    out = []
    for k in range(n):
        lab = np.zeros((80, 90), np.int32)
        for j in range(k + 1):
            lab[10 + 20 * j:20 + 20 * j, 10:30] = j + 1
        img = np.random.default_rng(k).normal(1000, 50, (1, 80, 90)).astype(np.float32)
        out.append(make_sample(img, lab, name=f"s{k}", cell_type=k))
    return out


def test_items_and_types():
    ds = TrainingDataset(samples(), size=64)
    item = ds[1]
    assert item["image"].shape == (1, 64, 64) and item["image"].dtype == torch.float32
    assert item["points"].dtype == torch.float32 and item["points"].shape[1] == 2
    assert item["label"].dtype == torch.int64 and item["label"].shape == (64, 64)
    assert item["cell_type"] == 1 and item["name"] == "s1"
    assert abs(float(item["image"].mean())) < 2  # normalised, not raw (~1000)
    with pytest.raises(IndexError):
        ds[3]


def test_seeded_per_epoch_and_index():
    ds = TrainingDataset(samples(), size=48, seed=7)
    a, b = ds[2], ds[2]
    assert torch.equal(a["image"], b["image"]) and torch.equal(a["points"], b["points"])
    ds.set_epoch(1)
    assert not torch.equal(ds[2]["image"], a["image"])
    ds.set_epoch(0)
    assert torch.equal(ds[2]["image"], a["image"])


def test_eval_mode_and_no_label():
    ds = TrainingDataset(samples(), size=96, augment=False, with_label=False)
    item = ds[2]
    assert item["image"].shape == (1, 96, 96) and "label" not in item and len(item["points"]) == 3
    full = TrainingDataset(samples(), size=None, augment=False)[0]
    assert full["image"].shape == (1, 80, 90)


def test_collate_pads_points():
    ds = TrainingDataset(samples(), size=96, augment=False)
    batch = collate([ds[0], ds[2], ds[1]], pad_multiple=4)
    assert batch["image"].shape == (3, 1, 96, 96) and batch["label"].shape == (3, 96, 96)
    assert batch["points"].shape == (3, 4, 2) and batch["points_valid"].dtype == torch.bool
    assert batch["points_valid"].sum(1).tolist() == [1, 3, 2]
    assert (batch["points"][~batch["points_valid"]] == 0).all()
    assert batch["cell_type"].tolist() == [0, 2, 1] and batch["name"] == ["s0", "s2", "s1"]
    loader = DataLoader(TrainingDataset(samples(), size=32), batch_size=2, collate_fn=collate)
    assert [b["image"].shape[0] for b in loader] == [2, 1]


def test_errors():
    with pytest.raises(CksDataError, match="no samples"):
        TrainingDataset([])
    with pytest.raises(CksDataError, match="s0.*min_points"):
        TrainingDataset(samples(), min_points=2)
    a = TrainingDataset(samples(), size=32)[0]
    b = TrainingDataset(samples(), size=40)[0]
    with pytest.raises(CksDataError, match="different shapes"):
        collate([a, b])


@pytest.mark.realdata
def test_real_usiigaci_crops(real_data):
    from cks.data.spec import load_dataset

    ds = TrainingDataset(load_dataset("usiigaci_nih3t3_phase/train:set1@0.5"), size=256)
    for epoch in range(3):
        ds.set_epoch(epoch)
        item = ds[0]
        lab, pts = item["label"].numpy(), item["points"].numpy()
        ij = np.floor(pts + 0.5).astype(int)
        assert len(pts) > 5 and (lab[ij[:, 0], ij[:, 1]] > 0).mean() > 0.9

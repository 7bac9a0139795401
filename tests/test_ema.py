"""cks.ema: the moving average of the principal's weights (``train.ema``), in training, checkpoints and resume."""
import pytest
import torch
from torch import nn

from cks.checkpoint import load_checkpoint, load_model
from cks.config import get_preset
from cks.data.synthetic import synthetic_dataset
from cks.ema import WeightAverage, ema_decay
from cks.errors import CksConfigError
from cks.run_folder import read_history
from cks.train import train

SMALL = {"segmentor.window": 48, "train.crop_size": 96, "train.val_every": 3}


def test_decay_ramps_up_to_the_setting():
    assert ema_decay(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay(0.999, 90) == pytest.approx(91 / 100)
    assert ema_decay(0.999, 10 ** 6) == 0.999


def test_update_is_the_closed_form_average():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    avg = WeightAverage(net, 0.9)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    seen = []
    for t in (1, 2, 3):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
            net[1].num_batches_tracked += 1
        seen.append({k: v.clone() for k, v in net.state_dict().items()})
        avg.update(net, t)
    # by hand: e_t = b_t e_{t-1} + (1 - b_t) w_t, from the initial weights
    want = start["0.weight"]
    for t, w in zip((1, 2, 3), seen):
        b = min(0.9, (1 + t) / (10 + t))
        want = b * want + (1 - b) * w["0.weight"]
    assert torch.allclose(avg.state_dict()["0.weight"], want, atol=1e-6)
    assert int(avg.state_dict()["1.num_batches_tracked"]) == 3  # integer buffers are copied, not averaged
    assert not any(p.requires_grad for p in avg.model.parameters())
    with pytest.raises(ValueError, match="train.ema"):
        WeightAverage(net, 1.0)


def test_config_range():
    assert get_preset("base", overrides=["train.ema=0.999"]).train.ema == 0.999
    for bad in ("1", "-0.1"):
        with pytest.raises(CksConfigError, match="train.ema"):
            get_preset("base", overrides=[f"train.ema={bad}"])


@pytest.mark.parametrize("mode", ["base", "supervised"])
def test_training_saves_validates_and_resumes_the_average(tmp_path, mode):
    torch.set_num_threads(1)
    data = synthetic_dataset(2, size=(96, 96), n_cells=6, radius=(6, 9), seed=3)
    cfg = get_preset(mode, size="test", overrides={**SMALL, "train.steps": 6, "train.checkpoint_every": 2,
                                                    "train.ema": 0.5})
    full = train(cfg, data, val_samples=data[:1], out_dir=tmp_path / "a", progress=False)
    ck = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    avg, raw = ck["principal"], ck["principal_raw"]
    assert any(not torch.equal(avg[k], raw[k]) for k in avg if avg[k].is_floating_point())
    for k, v in full["model"].state_dict().items():  # the run's model is the average, and load_model gives it
        assert torch.equal(v, avg[k]), k
    for k, v in load_model(tmp_path / "a").state_dict().items():
        assert torch.equal(v, avg[k]), k
    for k, v in load_model(tmp_path / "a", weights="training").state_dict().items():  # what training reached
        assert torch.equal(v, raw[k]), k
    rows = [r for r in read_history(tmp_path / "a") if "val_ap50" in r]
    assert [r["step"] for r in rows] == [3, 6] and all("val_raw_ap50" in r and "val_raw_dice" in r for r in rows)
    # an interrupted run resumes both the training weights and the average exactly
    train(cfg, data, val_samples=data[:1], out_dir=tmp_path / "b", progress=False, stop_at=3)
    train(cfg, data, val_samples=data[:1], out_dir=tmp_path / "b", progress=False, resume=True)
    again = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for key in ("principal", "principal_raw"):
        for k in ck[key]:
            assert torch.equal(ck[key][k], again[key][k]), (key, k)


def test_without_ema_the_run_folder_has_no_average(tmp_path):
    data = synthetic_dataset(1, size=(96, 96), n_cells=4, radius=(6, 9), seed=3)
    cfg = get_preset("base", size="test", overrides={**SMALL, "train.steps": 3})
    train(cfg, data, val_samples=data, out_dir=tmp_path, progress=False)
    assert "principal_raw" not in load_checkpoint(tmp_path / "checkpoint.pt")
    one, other = (load_model(tmp_path, weights=w).state_dict() for w in ("model", "training"))
    assert all(torch.equal(one[k], other[k]) for k in one)  # without the average both are the last weights
    with pytest.raises(CksConfigError, match="weights"):
        load_model(tmp_path, weights="raw")
    assert all("val_raw_ap50" not in r for r in read_history(tmp_path))

"""cks.run_maps: the collaborator's foreground fraction and its profile across the true boundary, foreground IoU,
training maps over the snapshots of a tiny run, even snapshot selection, and shape over training."""
import math
import shutil

import numpy as np
import pytest
import torch

from cks.data.synthetic import synthetic_sample
from cks.errors import CksDataError
from cks.run_maps import collaborator_foreground_fraction, collaborator_maps, foreground_iou, training_maps


def disk(r, cy=48.0, cx=48.0, value=1, h=96, w=96):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.where((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r, value, 0).astype(np.int32)

class _HalfForeground(torch.nn.Module):
    """Stand-in collaborator: foreground on the left half of every image."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, image, cell_type=None):
        z = torch.full(image.shape[:1] + image.shape[-2:], -3.0)
        z[..., : image.shape[-1] // 2] = 3.0
        return {"fg_logits": z + self.w, "border_logits": z}


def test_collaborator_foreground_fraction():
    s = synthetic_sample((64, 80), n_cells=6, radius=(6, 9), seed=3)
    t = dict(s, name="field b", cell_type_name="HeLa")
    out = collaborator_foreground_fraction(_HalfForeground(), [s, t], scale=0.5)
    assert out["collaborator"] == [0.5, 0.5]
    assert out["names"] == ["synthetic_3", "field b"] and out["cell_types"] == ["", "HeLa"]  # s has no line name
    assert out["heads"] == [0, 0]
    u = dict(t, cell_type=10, cell_type_name=None)
    del u["name"]
    one = collaborator_foreground_fraction(_HalfForeground(), [u], scale=0.5)  # no name, a head index, no line name
    assert one["names"] == [""] and one["cell_types"] == [""] and one["heads"] == [10]
    assert out["true"][0] == pytest.approx((s["label"] > 0).mean())
    assert out["ratio"][0] == pytest.approx(0.5 / out["true"][0])
    # IoU at native resolution, against the GT counted independently
    lab = s["label"] > 0
    left = np.zeros_like(lab)
    left[:, :40] = True
    want = (left & lab).sum() / (left | lab).sum()
    assert out["iou"] == pytest.approx([want, want])
    # one scale per image; a wrong number of scales is an error
    assert collaborator_foreground_fraction(_HalfForeground(), [s, s], scale=[0.5, 1.0])["iou"] == pytest.approx([want] * 2)
    with pytest.raises(CksDataError):
        collaborator_foreground_fraction(_HalfForeground(), [s, s], scale=[0.5])


class _KnowsTheMask(torch.nn.Module):
    """Stand-in collaborator: logit +1 inside the given foreground, -4 outside (at the input's size)."""

    def __init__(self, fg):
        super().__init__()
        self.fg = torch.as_tensor(fg)
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, image, cell_type=None):
        z = torch.where(self.fg, torch.tensor(1.0), torch.tensor(-4.0))[None].expand(image.shape[0], -1, -1)
        return {"fg_logits": z + self.w, "border_logits": z}


def test_collaborator_profile_across_the_true_boundary():
    from scipy import ndimage

    s = synthetic_sample((64, 80), n_cells=6, radius=(6, 9), seed=5)
    lab = s["label"] > 0
    prof = collaborator_foreground_fraction(_KnowsTheMask(lab), [s], scale=1.0)["profile"]
    dist = np.asarray(prof["distance"])
    mc, az = np.asarray(prof["m_c"]), np.asarray(prof["abs_logit"])
    ok = np.isfinite(mc)
    assert ok[dist == -1].all() and ok[dist == 1].all()
    np.testing.assert_allclose(mc[ok & (dist < 0)], 1 / (1 + math.exp(-1.0)), rtol=1e-6)
    np.testing.assert_allclose(mc[ok & (dist > 0)], 1 / (1 + math.exp(4.0)), rtol=1e-5)
    np.testing.assert_allclose(az[ok & (dist < 0)], 1.0)
    np.testing.assert_allclose(az[ok & (dist > 0)], 4.0)
    # saturated (|logit| >= 3) within 3 px of the true boundary: exactly the outside part of that band
    inside, outside = ndimage.distance_transform_edt(lab), ndimage.distance_transform_edt(~lab)
    band_in, band_out = lab & (inside <= 3), ~lab & (outside <= 3)
    assert prof["saturated"] == pytest.approx(band_out.sum() / (band_in.sum() + band_out.sum()))


def test_training_maps_over_snapshots(tiny_run, tmp_path):
    _, samples, run = tiny_run
    maps = training_maps(run, samples[0], crop=64)
    assert [r["step"] for r in maps["rows"]] == [1, 2]
    assert maps["image"].shape[-2:] == (64, 64) and maps["label"].shape == (64, 64)
    for r in maps["rows"]:
        for key in ("M_p", "M_c", "B_p"):
            assert r[key].shape == (64, 64) and np.isfinite(r[key]).all()
            assert r[key].min() >= 0 and r[key].max() <= 1
        assert r["fg_fraction"] == pytest.approx((r["M_c"] >= 0.5).mean())
        assert r["M_p"].max() > 0  # windows around the crop's points
    assert not np.allclose(maps["rows"][0]["M_c"], maps["rows"][1]["M_c"])  # two different snapshots
    # no snapshots: the checkpoint alone
    solo = tmp_path / "SOLO"
    solo.mkdir()
    shutil.copy(run / "checkpoint.pt", solo / "checkpoint.pt")
    rows = training_maps(solo, dict(samples[0], points=None))["rows"]  # points from the label's centroids
    assert [r["step"] for r in rows] == [2]
    assert rows[0]["B_p"].shape == (128, 128)  # default crop: min(H, W, 4 x window)


def test_training_maps_show_the_geodesic_target_while_it_is_on(tiny_run, tmp_path):
    # the same snapshots, as if trained with loss.collaborator_target=geodesic over 4 steps: the target is on
    # before the prior's end (step 2 of 4), and the map then shows it (0/1 regions), not the principal's M_p
    from cks.config import Config, with_overrides
    from cks.schedule import prior_end

    _, samples, run = tiny_run
    geo = tmp_path / "GEO"
    (geo / "snapshots").mkdir(parents=True)
    for f in sorted((run / "snapshots").glob("*.pt")):
        ck = torch.load(f, weights_only=False)
        cfg = with_overrides(Config.from_dict(ck["config"]), ["loss.collaborator_target=geodesic", "train.steps=4"])
        ck["config"] = cfg.to_dict()
        torch.save(ck, geo / "snapshots" / f.name)
    assert prior_end(cfg) == 2
    rows = training_maps(geo, samples[0], crop=64)["rows"]
    assert [(r["step"], r["target"]) for r in rows] == [(1, "geodesic"), (2, "M_p")]
    assert set(np.unique(rows[0]["M_p"])) <= {0.0, 1.0} and 0 < rows[0]["M_p"].mean() < 1
    plain = training_maps(run, samples[0], crop=64)["rows"]
    assert [r["target"] for r in plain] == ["M_p", "M_p"]
    np.testing.assert_allclose(rows[1]["M_p"], plain[1]["M_p"])  # after the prior's end: the paper's M_p again


def test_snapshot_files_keeps_the_last_and_spaces_the_rest(tiny_run, tmp_path):
    from cks.run_maps import snapshot_files

    _, _, run = tiny_run
    both = snapshot_files(run)
    assert [p.name for p in both] == ["step_000001.pt", "step_000002.pt"]
    assert snapshot_files(run, keep=1) == both[-1:] and snapshot_files(run, keep=5) == both
    many = tmp_path / "MANY"
    (many / "snapshots").mkdir(parents=True)
    for k in range(1, 8):
        (many / "snapshots" / f"step_{k:06d}.pt").write_bytes(b"")
    assert [p.name[-6:-3] for p in snapshot_files(many, keep=3)] == ["001", "004", "007"]


def test_shape_over_training_matches_each_snapshot(tiny_run):
    """One row per snapshot; each row's AP50 equals evaluating that snapshot's own prediction."""
    from cks.checkpoint import load_model
    from cks.run_maps import shape_over_training, snapshot_files
    from cks.metrics import evaluate
    from cks.predict import predict, scores_by_label
    from cks.size import median_diameter

    _, samples, run = tiny_run
    rows = shape_over_training(run, samples[:1], score_threshold=0.0)
    assert [r["step"] for r in rows] == [1, 2]
    for f, r in zip(snapshot_files(run), rows):
        m = load_model(f)
        d = median_diameter(samples[0]["label"]) if m.cfg.size.normalize else None
        lab, tab = predict(m, samples[0]["image"], score_threshold=0.0, diameter=d)
        assert r["ap50"] == evaluate(lab, scores_by_label(tab), samples[0]["label"])["ap50"]
        assert r["overall"]["n_gt"] == len(np.unique(samples[0]["label"][samples[0]["label"] > 0]))


def test_foreground_iou_closed_form_and_empty():
    a = np.zeros((4, 4), int)
    b = np.zeros((4, 4), int)
    a[:2] = 3  # 8 px
    b[1:3] = 1  # 8 px, 4 shared
    assert foreground_iou(a, b) == pytest.approx(4 / 12)
    assert math.isnan(foreground_iou(np.zeros((2, 2)), np.zeros((2, 2))))


def test_collaborator_maps_shapes_and_range():
    import torch

    from cks.config import CollaboratorConfig
    from cks.models.collaborator import Collaborator

    torch.manual_seed(0)
    col = Collaborator(CollaboratorConfig(n_cell_types=2))
    img = np.random.default_rng(0).normal(size=(1, 32, 40)).astype(np.float32)
    m = collaborator_maps(col, img, cell_type=1)
    assert set(m) == {"M_c", "B_c"}
    for v in m.values():
        assert v.shape == (32, 40) and v.min() >= 0 and v.max() <= 1
    assert col.training  # mode restored

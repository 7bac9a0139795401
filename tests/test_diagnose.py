"""Shape diagnostics: closed-form disk and straight-edge cases, sign convention, bins, counts, the disk
baseline against a hand count, collaborator foreground fraction, training maps over snapshots of a tiny
run, and ``cks diagnose`` end to end on a generated data set on disk."""
import json
import math
import shutil

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from cks.cli import main
from cks.data.synthetic import synthetic_sample
from cks.errors import CksDataError
from cks.diagnose import collaborator_foreground_fraction, shape_diagnostics, summarise, training_maps

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


# ----------------------------------------------------------------------------- models of a tiny run
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
    out = collaborator_foreground_fraction(_HalfForeground(), [s, s], scale=0.5)
    assert out["collaborator"] == [0.5, 0.5]
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


def write_set(folder, seed, size=(128, 128)):
    """One Usiigaci-layout set folder: raw.tif + instances_ids.png (as tests/test_cli.py)."""
    s = synthetic_sample(size, n_cells=10, radius=(7, 11), seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "raw.tif", (s["image"][0] * 10000 + 20000).clip(0, 65535).astype(np.uint16))
    Image.fromarray(s["label"].astype(np.uint8)).save(folder / "instances_ids.png")
    return s


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """Data on disk and a CKS run trained from points for 2 steps, with a snapshot after each step."""
    from cks.config import get_preset
    from cks.train import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("data")
    samples = [write_set(root / f"set{i}", seed=i) for i in (1, 2)]
    run = tmp_path_factory.mktemp("runs") / "RUN"
    cfg = get_preset("base", size="test", overrides={"segmentor.window": 48, "train.crop_size": 96, "train.steps": 2,
                                                      "train.checkpoint_every": 1000})
    for k in (1, 2):
        train(cfg, [dict(s, label=None) for s in samples], out_dir=run, resume=True, stop_at=k, progress=False)
        (run / "snapshots").mkdir(exist_ok=True)
        ck = torch.load(run / "checkpoint.pt", weights_only=False)
        ck.pop("optimizer")
        torch.save(ck, run / "snapshots" / f"step_{k:06d}.pt")
    return root, samples, run


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


def test_cli_diagnose_end_to_end(tiny_run, tmp_path, capsys):
    root, _, run = tiny_run
    out = tmp_path / "DIAG"
    capsys.readouterr()
    rc = main(["diagnose", str(run), "--data", str(root), "--out", str(out), "--max-images", "1",
               "--score-threshold", "0.0"])
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    text = (out / "diagnostics.json").read_text()
    d = json.loads(text)
    assert str(tmp_path) not in text and str(root) not in text  # no absolute paths of this machine
    assert d["run"] == "RUN" and d["n_images"] == 1 and d["training_maps"]["steps"] == [1, 2]
    assert d["shape"]["n_gt"] == sum(b["n_gt"] for b in d["shape"]["bins"]) > 0
    assert len(d["collaborator_foreground"]["true"]) == 1
    assert (out / "shape.png").stat().st_size > 1000 and (out / "training_maps.png").stat().st_size > 1000
    assert (out / "boundary_profile.png").stat().st_size > 1000
    prof = d["boundary_profile"]
    assert prof["distance"][:2] == [-8, -7] and 0 not in prof["distance"]
    assert len(prof["true"]) == len(prof["predicted"]) == 16 and not math.isnan(prof["true"][7])
    assert "count ratio" in stdout and "from the true boundary" in stdout
    cp = d["collaborator_foreground"]["profile"]
    assert cp["distance"] == prof["distance"] and len(cp["m_c"]) == len(cp["abs_logit"]) == 16
    assert all(0 <= v <= 1 for v in cp["m_c"] if v is not None) and 0 <= cp["saturated"] <= 1
    assert "collaborator M_c across the true boundary" in stdout and "size tracking" in stdout
    assert "size_slope" in d["shape"]["overall"]
    assert [r["step"] for r in d["consistency_trace"]] == [1, 2] and (out / "consistency_trace.png").stat().st_size > 1000
    assert "consistency trace" in stdout and "mask on own cell" in stdout
    rc = main(["diagnose", str(run), "--data", str(tmp_path / "missing")])
    assert rc == 2


def test_snapshot_files_keeps_the_last_and_spaces_the_rest(tiny_run, tmp_path):
    from cks.diagnose import snapshot_files

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
    from cks.diagnose import shape_over_training, snapshot_files
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
    from cks.diagnose import size_slope

    assert math.isnan(size_slope([1, 2], [1, 2])) and math.isnan(size_slope([5, 6, 7], [4, 4, 4]))
    assert size_slope([2, 8, 32], [1, 2, 4]) == pytest.approx(2.0)  # pred = 2 true^2 exactly
    assert size_slope([2, 0, 8, 32], [1, 3, 2, 4]) == pytest.approx(2.0)  # a zero area is left out


def test_diagnostics_markdown_reads_summarised_rows():
    """One table row per run from summarise() output: the offset of concentric disks and the collaborator range."""
    from cks.viz_diagnose import diagnostics_markdown

    yy, xx = np.mgrid[:64, :64]
    gt = ((yy - 32) ** 2 + (xx - 32) ** 2 <= 10 ** 2).astype(np.int32)
    pred = ((yy - 32) ** 2 + (xx - 32) ** 2 <= 13 ** 2).astype(np.int32)
    s = summarise(shape_diagnostics([pred], [gt]))
    row = {"run": "wide", "config": "pi 2", "step": 7, **s, "collaborator_foreground": {"ratio": [0.5, 1.25]},
           "tuning_ap50_by_step": {"3": 0.1, "7": 0.4321}}
    md = diagnostics_markdown([row, {"run": "bare", "overall": s["overall"]}])
    lines = md.splitlines()
    assert len(lines) == 4 and lines[2].startswith("| wide | pi 2 | 7 |")
    off = float(lines[2].split("|")[4])
    assert off == pytest.approx(s["overall"]["offset_median"], abs=0.006) and 2.0 < off < 4.0  # 3 px outward
    assert "0.50-1.25" in lines[2] and lines[3].rstrip().endswith("| - | - |")
    assert lines[2].rstrip().endswith("| 0.43 |")  # the AP50 at the row's own step, not another's
    assert s["overall"]["size_slope"] is None  # one cell: no slope -> "-"
    sloped = diagnostics_markdown([{"run": "s", "overall": dict(s["overall"], size_slope=0.25)}]).splitlines()[2]
    assert "| 0.25 |" in sloped


def test_size_estimate_markdown_rows_and_values():
    from cks.viz_diagnose import size_estimate_markdown

    s = {"learned_1": {"fields": 4, "within_20pct": 0.75, "median_abs_error": 0.05, "max_abs_error": 0.31},
         "score_search": {"fields": 4, "within_20pct": 0.5, "median_abs_error": 0.2, "max_abs_error": 0.4}}
    md = size_estimate_markdown({"summary": s, "per_run": {"runA": {"summary": s}}})
    lines = md.splitlines()
    assert len(lines) == 2 + 4  # header, rule, 2 estimators x (all runs, runA); learned_2 absent -> no row
    assert "| all runs: learned, 1 pass | 4 | 75% | 5.0% | 31.0% |" in lines
    assert any(line.startswith("| runA: scale search | 4 | 50% |") for line in lines)
    half = {"learned_2": {"fields": 2, "within_20pct": 0.0, "median_abs_error": 0.3, "max_abs_error": 0.35}}
    md = size_estimate_markdown({"summary": s, "per_run": {"runA": {"summary": s}}, "by_factor": {"0.5": half}})
    lines = md.splitlines()
    assert len(lines) == 2 + 2 + 1 and not any("runA" in line for line in lines)  # per factor, not per run
    assert "| all runs, fields resized x0.5: learned, 2 passes | 2 | 0% | 30.0% | 35.0% |" in lines
    refined = {"refined": {"fields": 5, "within_20pct": 0.8, "median_abs_error": 0.1, "max_abs_error": 0.25}}
    assert "| all runs: learned, refined at the detections | 5 | 80% | 10.0% | 25.0% |" in \
        size_estimate_markdown({"summary": refined}).splitlines()


def test_collaborator_ceiling_markdown_rows():
    from cks.viz_diagnose import collaborator_ceiling_markdown

    alone = {"command": "python benchmarks/collaborator_ceiling.py --name a1_true --target true",
             "collaborator_foreground": [16, 32, 64], "target": "true", "steps": 400, "fg_iou": 0.6512,
             "disk_fg_iou": 0.4342}
    runs = {"runs": {"r1": {"step": 700, "fg_iou": 0.4677, "principal_fg_iou": 0.5, "collaborator.foreground": [16]},
                     "sup": {"step": 9, "fg_iou": None, "principal_fg_iou": 0.7, "collaborator.foreground": None}},
            "disk_fg_iou": 0.4342}
    ce = {**alone, "command": "x --name a1_ce", "target": "disks", "consistency": "entropy", "fg_iou": 0.4}
    ring = {**alone, "command": "x --name a1_ring", "target": "disks", "consistency": "linear", "radius_rel": 0.3,
            "ring_rel": 0.8, "fg_iou": 0.45}
    lines = collaborator_ceiling_markdown([alone, runs, ce, ring]).splitlines()
    assert len(lines) == 7  # header, rule, five rows
    assert lines[6].startswith("| a1_ring | 16-32-64 | disks of 0.3 cell diameters, no vote out to 0.8 (L_M, Eq. 6) |")
    assert lines[5].startswith("| a1_ce | 16-32-64 | disks around the points (L_CE, Eq. 5) | 400 | 0.400 |")
    assert lines[2].startswith("| a1_true | 16-32-64 | the true foreground (BCE) | 400 | 0.651 | - | 0.434 |")
    assert lines[3].startswith("| run r1 | 16 | CKS (M_p) | 700 | 0.468 | 0.500 | 0.434 |")
    assert lines[4].startswith("| run sup | none (supervised) | - | 9 | - | 0.700 | 0.434 |")


def test_ceiling_ring_target_votes_inside_abstains_in_the_ring():
    """``--ring``: target 1 within radius of a cell's centroid, 0.5 (no L_M vote) out to the ring, 0 beyond."""
    from benchmarks.collaborator_ceiling import crops_at_scale
    from cks.points import centroids

    s = synthetic_sample((96, 96), n_cells=1, radius=(10, 10), seed=0)
    (x, fg, t), = crops_at_scale([s], [1.0], 0.25, 32.0, ring_rel=0.75)
    cy, cx = centroids(s["label"])[1][0]
    yy, xx = np.mgrid[:96, :96]
    r = np.hypot(yy - cy, xx - cx)
    assert set(np.unique(t)) <= {0.0, 0.5, 1.0}
    assert (t[r < 6.5] == 1).all() and (t[(r > 9.5) & (r < 22.5)] == 0.5).all() and (t[r > 25.5] == 0).all()
    (_, _, plain), = crops_at_scale([s], [1.0], 0.25, 32.0)
    assert set(np.unique(plain)) == {0.0, 1.0}


def test_foreground_iou_closed_form_and_empty():
    from cks.diagnose import foreground_iou

    a = np.zeros((4, 4), int)
    b = np.zeros((4, 4), int)
    a[:2] = 3  # 8 px
    b[1:3] = 1  # 8 px, 4 shared
    assert foreground_iou(a, b) == pytest.approx(4 / 12)
    assert math.isnan(foreground_iou(np.zeros((2, 2)), np.zeros((2, 2))))


def test_foreground_partition_recovers_separate_cells_and_scores_them():
    """``benchmarks/foreground_partition.py``: the flood fill of a foreground whose cells do not touch gives back
    the cells (as skimage's watershed flooding the same mask from the same markers does), and scores AP50 = 1."""
    from skimage.segmentation import watershed

    from benchmarks.foreground_partition import partition, score
    from cks.points import centroids

    s = synthetic_sample((96, 96), n_cells=6, radius=(6, 9), seed=3)
    gt = np.asarray(s["label"]).astype(np.int32)
    _, pts = centroids(gt)
    lab = partition(gt > 0, pts, 40)
    markers = np.zeros_like(gt)
    markers[np.round(pts[:, 0]).astype(int), np.round(pts[:, 1]).astype(int)] = np.arange(1, len(pts) + 1)
    ref = watershed(np.zeros(gt.shape), markers=markers, mask=gt > 0)
    from scipy import ndimage
    assert ndimage.label(gt > 0)[1] == len(pts) == 6  # the precondition: six cells, none touching
    assert (lab == ref).all()
    got = score([lab], [gt])
    assert got["ap50"] == 1.0 and got["ap75"] == 1.0
    assert got["n_pred"] == got["n_gt"] == len(pts)
    half = np.where(lab > 0, lab, 0)
    half[:, 48:] = 0  # cells cut in half on the right are lost at IoU 0.5 if less than half remains
    assert score([half], [gt])["ap50"] <= got["ap50"]


def test_foreground_partition_markdown_rows():
    from cks.viz_diagnose import foreground_partition_markdown

    rec = {"runs": {"cks_a": {"step": 7200, "principal": {"ap50": 0.309, "ap75": 0.001},
                              "collaborator_pixels": {"precision": 0.663, "recall": 0.6622, "eroded": {
                                  "1": {"ap50": 0.33}, "3": {"ap50": 0.315}, "2": {"ap50": 0.322}}},
                              "collaborator": {"ap50": 0.268, "ap75": 0.0}, "true_fg": {"ap50": 0.969, "ap75": 0.904},
                              "disks": {"ap50": 0.134, "ap75": 0.0}},
                    "sup": {"step": 8000, "principal": {"ap50": 0.7, "ap75": 0.3}, "collaborator": None,
                            "true_fg": {"ap50": 0.969, "ap75": 0.904}, "disks": {"ap50": 0.134, "ap75": 0.0}}}}
    lines = foreground_partition_markdown(rec).splitlines()
    assert lines[0] == ("| | steps | principal's cells | M_c cut at the points | M_c precision / recall "
                        "| M_c shrunk 1 / 2 / 3 px, cut (AP50) | true foreground cut at the points | disks |")
    assert lines[2] == ("| cks_a | 7200 | 0.309 / 0.001 | 0.268 / 0.000 | 0.66 / 0.66 | 0.330 / 0.322 / 0.315 "
                        "| 0.969 / 0.904 | 0.134 / 0.000 |")
    assert lines[3].startswith("| sup | 8000 | 0.700 / 0.300 | - | - | - |")


def test_resized_tuning_markdown_rows_and_mean():
    from cks.viz_diagnose import resized_tuning_markdown

    rows = [{"resized": 0.5, "size": "auto", "ap50": 0.1}, {"resized": 1.0, "size": "auto", "ap50": 0.3},
            {"resized": 0.5, "size": "true", "ap50": 0.25}]
    lines = resized_tuning_markdown({"runs": {"runA": rows}}).splitlines()
    assert lines[0] == "| | x0.5, own size | x1, own size | x0.5, true size | mean, own size |"
    assert lines[2] == "| runA | 0.100 | 0.300 | 0.250 | 0.200 |"

"""``cks diagnose`` end to end on a generated data set on disk, and the tables :mod:`cks.viz_diagnose` writes
from diagnostics rows (closed-form and hand-computed cases of the measurements themselves:
tests/test_matched_shape.py and tests/test_run_maps.py)."""
import json
import math

import numpy as np
import pytest

from cks.cli import main
from cks.data.synthetic import synthetic_sample
from cks.matched_shape import shape_diagnostics, summarise
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
    assert sum(g["n_gt"] for g in d["shape"]["crowding"]) == d["shape"]["n_gt"]  # every GT cell in one group
    assert "by touching neighbours" in stdout and "| 2+ |" in stdout
    rc = main(["diagnose", str(run), "--data", str(tmp_path / "missing")])
    assert rc == 2
    assert d["weights"] == "model"
    rc = main(["diagnose", str(run), "--data", str(root), "--out", str(tmp_path / "RAW"), "--max-images", "1",
               "--score-threshold", "0.0", "--no-history", "--training-weights"])
    raw = json.loads((tmp_path / "RAW" / "diagnostics.json").read_text())
    assert rc == 0 and raw["weights"] == "training"
    assert raw["shape"]["overall"] == d["shape"]["overall"]  # a run without the average: the same weights



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
    # M_c's IoU with the true foreground: its range over images in its own column, next to the area ratio's
    header = [c.strip() for c in lines[0].split("|")]
    ioued = diagnostics_markdown([dict(row, collaborator_foreground={"ratio": [0.5, 1.25], "iou": [0.61, 0.4]})])
    cells = [c.strip() for c in ioued.splitlines()[2].split("|")]
    assert cells[header.index("M_c IoU")] == "0.40-0.61" and cells[header.index("M_c / true fg")] == "0.50-1.25"
    assert [c.strip() for c in lines[2].split("|")][header.index("M_c IoU")] == "-"  # a row without IoUs


def test_crowding_markdown_rows():
    """One table row per run and neighbour group, with the share at IoU >= 0.5 computed from the counts."""
    from cks.viz_diagnose import crowding_markdown

    gt = np.zeros((60, 90), np.int32)
    gt[5:25, 5:25], gt[5:25, 25:45], gt[35:55, 60:80] = 1, 2, 3  # a touching pair and a lone cell
    pred = gt.copy()
    pred[35:55, 70:80] = 0  # half of the lone cell: IoU 0.5
    pred[5:25, 25:45] = 0  # the second of the pair missed: IoU 0
    s = summarise(shape_diagnostics([pred], [gt]))
    md = crowding_markdown([{"run": "r", **s}, {"run": "old", "overall": s["overall"]}]).splitlines()
    assert len(md) == 2 + 3  # header, rule, one row per group of the run that has them
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in md[2:]}
    assert cells["r, alone"][:2] == ["1", "1.00"] and cells["r, 1 neighbour"][:2] == ["2", "0.50"]
    assert cells["r, 1 neighbour"][2].startswith("0.500 / ")  # median of IoU 1 and 0
    assert cells["r, 2+ neighbours"] == ["0", "-", "-", "-"]
    assert crowding_markdown([{"run": "old"}]).startswith("*No grouped")
    assert "| r (training weights), alone |" in crowding_markdown([{"run": "r", "weights": "training", **s}])


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
    geo = {**alone, "command": "x --name a1_geodesic", "target": "geodesic", "consistency": "linear", "beta": 3.0,
           "radius_rel": 0.5, "geodesic_fg_iou": 0.5127, "fg_iou": 0.52}
    runs["runs"]["r2"] = {**runs["runs"]["r1"], "collaborator_target": "geodesic"}
    lines = collaborator_ceiling_markdown([alone, runs, ce, ring, geo]).splitlines()
    assert len(lines) == 9  # header, rule, seven rows
    assert lines[5].startswith("| run r2 | 16 | CKS (geodesic regions, then M_p) | 700 |")
    del lines[5]
    assert lines[7].startswith("| a1_geodesic | 16-32-64 | geodesic regions around the points (L_M, Eq. 6), beta 3 "
                               "(the regions' own fg IoU 0.513) | 400 | 0.520 |")
    assert lines[6].startswith("| a1_ring | 16-32-64 | disks of 0.3 cell diameters, no vote out to 0.8 (L_M, Eq. 6) |")
    assert lines[5].startswith("| a1_ce | 16-32-64 | disks around the points (L_CE, Eq. 5) | 400 | 0.400 |")
    assert lines[2].startswith("| a1_true | 16-32-64 | the true foreground (BCE) | 400 | 0.651 | - | 0.434 |")
    assert lines[3].startswith("| run r1 | 16 | CKS (M_p) | 700 | 0.468 | 0.500 | 0.434 |")
    assert lines[4].startswith("| run sup | none (supervised) | - | 9 | - | 0.700 | 0.434 |")


def test_ceiling_geodesic_target_is_the_union_of_the_baselines_regions():
    """``--target geodesic``: the collaborator's target is the union of cks.baselines.geodesic_disks's regions."""
    from benchmarks.collaborator_ceiling import crops_at_scale
    from cks.baselines import geodesic_disks
    from cks.points import centroids

    s = synthetic_sample((96, 96), n_cells=3, radius=(8, 10), seed=2)
    (x, fg, t), = crops_at_scale([s], [1.0], 0.5, 20.0, beta=3.0)
    want = geodesic_disks(x, centroids(s["label"])[1], 10.0, 3.0) > 0
    np.testing.assert_array_equal(t > 0, want)
    assert set(np.unique(t)) <= {0.0, 1.0} and 0 < t.mean() < 1
    (_, _, d), = crops_at_scale([s], [1.0], 0.5, 20.0)  # without beta: the Voronoi disks, another target
    assert not np.array_equal(d, t)


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


def test_diagnose_true_size_follows_how_the_run_was_trained(tiny_run, tmp_path, monkeypatch):
    """--true-size: a size-normalised run sees each image at its true cell size (predictions and collaborator);
    a fixed-scale run always at its one training scale, as training and cks.evaluation's size="true" do."""
    import importlib
    from dataclasses import replace

    from cks.diagnose import diagnose_run
    from cks.size import median_diameter

    root, _, run = tiny_run
    predict_module, checkpoint = importlib.import_module("cks.predict"), importlib.import_module("cks.checkpoint")
    calls, real_predict = [], predict_module.predict

    def spy(model, image, **kw):
        calls.append(kw)
        return real_predict(model, image, **kw)

    monkeypatch.setattr(predict_module, "predict", spy)
    d = diagnose_run(run, str(root), out_dir=tmp_path / "norm", max_images=2, score_threshold=0.0, progress=False,
                     true_size=True, history=False)
    model = checkpoint.load_model(run)
    from cks.data.spec import load_dataset

    labels = [s["label"] for s in load_dataset(str(root), scale=1.0, points="none")[:2]]
    assert [c["diameter"] for c in calls] == pytest.approx([median_diameter(lab) for lab in labels])
    assert d["collaborator_scales"] == pytest.approx(
        [model.cfg.size.diameter / median_diameter(lab) for lab in labels], abs=1e-4)
    assert d["shape_over_training"] == [] and d["consistency_trace"] == []  # history=False: final weights only
    assert d["true_size"] is True and d["history"] is False  # recorded, so a rows file can give the exact call

    real_load = checkpoint.load_model

    def fixed(run_dir, *a, **kw):  # the same weights, as a fixed-scale run
        m = real_load(run_dir, *a, **kw)
        m.cfg = replace(m.cfg, size=replace(m.cfg.size, normalize=False))
        return m

    monkeypatch.setattr(checkpoint, "load_model", fixed)
    calls.clear()
    d = diagnose_run(run, str(root), out_dir=tmp_path / "fixed", max_images=2, score_threshold=0.0, progress=False,
                     true_size=True, history=False)
    assert all("diameter" not in c and c["scale"] == pytest.approx(model.scale) for c in calls) and len(calls) == 2
    assert d["collaborator_scales"] == pytest.approx([model.scale] * 2, abs=1e-4)
    assert d["size"].startswith("its one training scale")

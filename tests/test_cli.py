"""The ``cks`` command line end to end on tiny generated data sets, bad inputs, and kill -9 + --resume.

Commands run in-process through ``cks.cli.main`` (exit status checked), except ``python -m cks``
smoke runs and the killed training run, which are subprocesses. Models are tiny (``--size test``,
window 48, 96 px crops, a few steps).
"""
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from cks.cli import main
from cks.errors import CksError
from cks.data.synthetic import synthetic_sample

REPO = Path(__file__).resolve().parents[1]
TINY = ["--size", "test", "--set", "segmentor.window=48", "train.crop_size=96"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def write_set(folder: Path, seed: int, size=(128, 128)) -> dict:
    """One Usiigaci set folder: raw.tif (uint16) + instances_ids.png (uint8)."""
    s = synthetic_sample(size, n_cells=10, radius=(7, 11), seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "raw.tif", (s["image"][0] * 10000 + 20000).clip(0, 65535).astype(np.uint16))
    Image.fromarray(s["label"].astype(np.uint8)).save(folder / "instances_ids.png")
    return s


def run_cli(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``cks argv``."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc, err, *needles):
    """Exit 2, exactly one stderr line ``error: ...`` that contains every needle, no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])


def no_tmp_files(folder: Path) -> bool:
    return not [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("usiigaci")
    samples = {f"set{i}": write_set(root / f"set{i}", seed=i) for i in (1, 2, 3)}
    return root, samples


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A CKS run trained from points for 3 steps through the CLI."""
    out = tmp_path_factory.mktemp("run") / "RUN"
    assert main(["train", "--data", str(data[0]), "--labels", "points", "--out", str(out), "--steps", "3", *TINY]) == 0
    return out


def test_train_predict_evaluate(data, run, tmp_path, capsys):
    root, samples = data
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["loss"]["mode"] == "cks" and cfg["train"]["steps"] == 3 and cfg["segmentor"]["window"] == 48
    from cks.checkpoint import load_checkpoint
    assert load_checkpoint(run)["step"] == 3
    pred = tmp_path / "PRED"
    rc, out, err = run_cli(capsys, "predict", "--model", run, root / "set1/raw.tif", root / "set2/raw.tif",
                           "--out", pred, "--score-threshold", "0.0")
    assert rc == 0, err
    for name in ("set1", "set2"):  # names follow the inputs' paths below their common folder
        lab = tifffile.imread(pred / name / "raw.labels.tif")
        assert lab.dtype == np.uint16 and lab.shape == (128, 128)
        with open(pred / name / "raw.csv") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["label", "score", "y", "x", "area"]
        ids = np.unique(lab)
        assert [int(r[0]) for r in rows[1:]] == ids[ids > 0].tolist()
        assert [int(r[4]) for r in rows[1:]] == np.bincount(lab.ravel())[ids[ids > 0]].tolist()
    assert no_tmp_files(pred)
    sizes = json.loads((pred / "sizes.json").read_text())  # per image: the scale used and the cell size
    assert set(sizes) == {"set1/raw", "set2/raw"} and all(v["scale"] > 0 for v in sizes.values())
    rc, out, err = run_cli(capsys, "evaluate", "--pred", pred, "--gt", f"{root}:set1,set2", "--json", tmp_path / "M.json")
    assert rc == 0, err
    metrics = json.loads((tmp_path / "M.json").read_text())
    assert {"ap50", "ap75", "map", "dice"} <= set(metrics) and metrics["n_images"] == 2 and metrics["n_gt"] > 0
    assert "AP50" in out
    # ground truth without a prediction is an error, not a silent match with another image's prediction
    rc, out, err = run_cli(capsys, "evaluate", "--pred", pred, "--gt", str(root))
    assert_user_error(rc, err, "set3", "no prediction")


def test_train_fits_the_size_regressor_and_predict_uses_it(data, run, tmp_path, capsys):
    """`cks train` leaves size_model.json in the run; `cks predict` uses it unless --size-from says otherwise."""
    root, _ = data
    saved = json.loads((run / "size_model.json").read_text())
    assert saved["step"] == 3 and saved["n_images"] == 3
    for how, sources in (("auto", ("estimated (learned)",)),  # a 3-step model may find no confident cell:
                         ("score", ("estimated (score)", "training scale (the scale search"))):  # then it says so
        rc, out, err = run_cli(capsys, "predict", "--model", run, root / "set1/raw.tif", "--out", tmp_path / how,
                               "--size-from", how)
        assert rc == 0, err
        (info,) = json.loads((tmp_path / how / "sizes.json").read_text()).values()
        assert info["diameter_source"].startswith(sources) and info["diameter"] > 0
        assert (info["diameter_source"] == "estimated (learned)") == (how == "auto")


def test_size_model_refits_a_run(data, run, tmp_path, capsys):
    """`cks size-model` re-fits a run's regressor (e.g. a run trained before it existed)."""
    import shutil

    root, _ = data
    copy = tmp_path / "RUN"
    shutil.copytree(run, copy)
    (copy / "size_model.json").unlink()
    rc, out, err = run_cli(capsys, "size-model", copy, "--data", root, "--labels", "masks", "--crops", "2")
    assert rc == 0, err
    saved = json.loads((copy / "size_model.json").read_text())
    assert saved["n_samples"] == 3 * 2 and saved["step"] == 3 and "size_model.json" in out
    assert saved["pooling"] == "detections"  # the default
    rc, out, err = run_cli(capsys, "size-model", copy, "--data", root, "--labels", "masks", "--crops", "2",
                           "--pooling", "image")
    assert rc == 0, err
    assert json.loads((copy / "size_model.json").read_text())["pooling"] == "image" and "image pooling" in out
    rc, out, err = run_cli(capsys, "size-model", copy / "checkpoint.pt", "--data", root)
    assert_user_error(rc, err, "not a run folder")


def test_evaluate_pairs_each_image_with_its_own_prediction(data, tmp_path, capsys):
    """Perfect predictions (the ground truth itself) must score 1.0: set2 must not be paired with set1."""
    root, samples = data
    pred = tmp_path / "P"
    for name in ("set1", "set2", "set3"):
        (pred / name).mkdir(parents=True)
        lab = samples[name]["label"]
        tifffile.imwrite(pred / name / "raw.labels.tif", lab.astype(np.uint16))
        rows = ["label,score,y,x,area"] + [f"{k},1.0,0,0,{(lab == k).sum()}" for k in range(1, lab.max() + 1)]
        (pred / name / "raw.csv").write_text("\n".join(rows) + "\n")
    rc, out, err = run_cli(capsys, "evaluate", "--pred", pred, "--gt", root, "--json", tmp_path / "m.json",
                           "--bootstrap", "50")
    assert rc == 0, err
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["ap50"] == 1.0 and m["dice"] == 1.0 and m["n_images"] == 3
    assert m["ci95"]["ap50"] == [1.0, 1.0] and m["ci95"]["n_boot"] == 50  # perfect on every image
    assert "paired 3 prediction(s)" in out and "set1/raw <-> set1" in out  # says what it compared
    (pred / "set3" / "raw.csv").unlink()  # a label image without its table
    rc, out, err = run_cli(capsys, "evaluate", "--pred", pred, "--gt", root)
    assert_user_error(rc, err, "raw.csv")


def test_masks_train_supervised(data, tmp_path, capsys):
    rc, out, err = run_cli(capsys, "train", "--data", f"{data[0]}:set1-2", "--labels", "masks", "--out",
                           tmp_path / "SUP", "--steps", "2", *TINY)
    assert rc == 0, err
    assert json.loads((tmp_path / "SUP" / "config.json").read_text())["loss"]["mode"] == "supervised"
    assert "mode supervised" in out


def test_points_training_drops_masks_unless_the_true_foreground_is_asked_for(data, tmp_path, capsys, monkeypatch):
    """Point training never hands masks to the trainer, except for the diagnostic ``loss.foreground_from=masks``."""
    import importlib

    train_mod = importlib.import_module("cks.train")  # the module (cks.train is also the function's name)
    seen = []
    real = train_mod.train

    def spy(cfg, samples, *args, **kw):
        seen.append([s.get("label") is not None for s in samples])
        return real(cfg, samples, *args, **kw)

    monkeypatch.setattr(train_mod, "train", spy)
    for i, extra in enumerate([[], ["loss.foreground_from=masks"]]):
        rc, out, err = run_cli(capsys, "train", "--data", f"{data[0]}:set1-2", "--labels", "points", "--out",
                               tmp_path / f"P{i}", "--steps", "2", *TINY, *extra)
        assert rc == 0, err
    assert seen == [[False, False], [True, True]]


def test_nuclear_points_hint_only_where_the_prior_switches_off():
    from cks.cli_train import nuclear_prior_note
    from cks.config import get_preset
    from cks.losses.cks import effective_loss_config

    assert "--preset nuclear_points" in nuclear_prior_note("nuclei", get_preset("base"))
    for labels, preset in (("points", "base"), ("nuclei", "nuclear_points"), ("nuclei", "prior_throughout"),
                           ("nuclei", "table6_no_prior"), ("masks", "supervised")):
        assert nuclear_prior_note(labels, get_preset(preset)) is None, (labels, preset)
    # what the preset changes: pi after loss.prior_until (Eq. 4), 1 instead of 0; before it, both have the paper's 2
    for preset, after in (("base", 0.0), ("nuclear_points", 1.0)):
        cfg = get_preset(preset)
        assert effective_loss_config(cfg, prior=False).prior_scale == after
        assert effective_loss_config(cfg).prior_scale == 2.0


def test_per_type_d_brings_per_type_heads_and_says_so():
    """Table VI's per-type row: one d per cell type gives the collaborator one head per type found in the data,
    announced (a comparison with a one-d run differs in both); one d, or enough heads already, changes nothing."""
    from cks.cli_train import per_type_heads
    from cks.config import get_preset, with_overrides

    samples = [{"cell_type": t} for t in (0, 3, 1)]
    cfg, note = per_type_heads(get_preset("table6_per_type_d"), samples)
    assert cfg.collaborator.n_cell_types == 4 and "4" in note and "collaborator.n_cell_types" in note
    for preset, extra in (("table6_constant_d", {}), ("table6_per_type_d", {"collaborator.n_cell_types": 4})):
        before = with_overrides(get_preset(preset), extra)
        after, note = per_type_heads(before, samples)
        assert note is None and after == before
    one = get_preset("table6_per_type_d")  # per-type d with one head, asked for explicitly: kept
    assert per_type_heads(one, samples, explicit=True) == (one, None)


def test_python_m_cks_presets_and_help():
    r = subprocess.run([sys.executable, "-m", "cks", "presets"], cwd=REPO, env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "base" in r.stdout and "supervised" in r.stdout and "sizes:" in r.stdout
    r = subprocess.run([sys.executable, "-m", "cks", "train", "--help"], cwd=REPO, env=ENV, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "example:" in r.stdout and "cks train --data" in r.stdout


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"cks {version('cks')}"


def test_demo_writes_figure(tmp_path, capsys):
    rc, out, err = run_cli(capsys, "demo", "--out", tmp_path / "D", "--steps", "5")
    assert rc == 0, err
    assert (tmp_path / "D" / "demo.png").stat().st_size > 1000
    assert "demo: 5 of 5 steps" in out and "STOPPED" not in out


def test_demo_says_when_a_time_cap_cut_it_short(tmp_path, capsys):
    rc, out, err = run_cli(capsys, "demo", "--out", tmp_path / "D", "--steps", "400", "--minutes", "0.0001")
    assert rc == 0, err
    assert "stopped training at step" in out and "without --minutes" in out


def test_cpu_defaults_fit_a_laptop(monkeypatch):
    import argparse

    import torch

    from cks.cli_train import CPU_CROP, CPU_STEPS, _cpu_defaults

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ns = dict(steps=None, crop_size=None, minutes=None, cpu_minutes=None, set=None)
    assert _cpu_defaults(argparse.Namespace(**ns)) == {"train.steps": CPU_STEPS, "train.crop_size": CPU_CROP}
    assert _cpu_defaults(argparse.Namespace(**{**ns, "steps": 7, "crop_size": 96})) == {
        "train.steps": 7, "train.crop_size": 96}
    assert _cpu_defaults(argparse.Namespace(**{**ns, "set": ["train.steps=9", "train.crop_size=64"]})) == {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _cpu_defaults(argparse.Namespace(**ns)) == {}  # a GPU keeps the preset's (paper's) values


def test_budget_text():
    from cks.train import _budget_text

    t = _budget_text(20.0, 10, 1000, max_minutes=10, max_cpu_minutes=None)
    assert "2.00 s per step" in t and "~33 min" in t and "after ~300 more steps" in t


# ---------------------------------------------------------------- bad input
def _bad_image(kind: str, path: Path) -> None:
    rng = np.random.default_rng(0)
    if kind == "4d":
        tifffile.imwrite(path, rng.integers(0, 9, (2, 3, 40, 40)).astype(np.uint16), photometric="minisblack")
    elif kind == "4channels":
        tifffile.imwrite(path, rng.integers(0, 9, (4, 40, 40)).astype(np.uint16), photometric="minisblack")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "nan":
        img = rng.random((40, 40)).astype(np.float32)
        img[3, 4], img[5, 6] = np.nan, np.inf
        tifffile.imwrite(path, img)
    elif kind == "truncated":
        tifffile.imwrite(path, rng.integers(0, 60000, (96, 96)).astype(np.uint16))
        path.write_bytes(path.read_bytes()[:9000])
    elif kind == "stub":  # only the TIFF header survived
        tifffile.imwrite(path, rng.integers(0, 60000, (96, 96)).astype(np.uint16))
        path.write_bytes(path.read_bytes()[:8])
    elif kind == "text":
        path.write_text("this is not an image\n")


@pytest.mark.parametrize("kind,needle", [("4d", "dimensions"), ("4channels", "channels"), ("empty", "empty"),
                                         ("nan", "NaN"), ("truncated", "truncated"), ("stub", "truncated"),
                                         ("text", "TIFF")])
def test_predict_bad_image(run, tmp_path, capsys, kind, needle):
    bad = tmp_path / "in" / f"bad_{kind}.tif"
    bad.parent.mkdir()
    _bad_image(kind, bad)
    rc, out, err = run_cli(capsys, "predict", "--model", run, bad, "--out", tmp_path / "PRED")
    assert_user_error(rc, err, bad.name, needle)
    assert not list((tmp_path / "PRED").rglob("*")) if (tmp_path / "PRED").exists() else True


def test_failure_on_second_input_leaves_first_complete(data, run, tmp_path, capsys):
    bad = tmp_path / "in" / "b.tif"
    bad.parent.mkdir()
    _bad_image("truncated", bad)
    good = data[0] / "set1" / "raw.tif"
    pred = tmp_path / "PRED"
    rc, out, err = run_cli(capsys, "predict", "--model", run, good, bad, "--out", pred, "--score-threshold", "0")
    assert_user_error(rc, err, "b.tif")
    files = sorted(p.relative_to(pred).as_posix() for p in pred.rglob("*") if p.is_file())
    first = [f for f in files if "raw" in f]
    assert len(first) == 2 and not [f for f in files if "/b." in f or f.startswith("b.")], files
    assert no_tmp_files(pred)
    lab_file = next(pred.rglob("raw.labels.tif"))
    lab = tifffile.imread(lab_file)
    assert lab.shape == (128, 128)
    rows = list(csv.DictReader(open(lab_file.with_name("raw.csv"))))
    assert len(rows) == len(np.unique(lab)) - (1 if (lab == 0).any() else 0)


def test_a_bad_image_in_a_batch_is_skipped_and_reported(data, run, tmp_path, capsys):
    """A bad first image does not stop the others; the run still ends in an error that names it."""
    bad = tmp_path / "in" / "a.tif"
    bad.parent.mkdir()
    bad.write_text("not an image")
    good = data[0] / "set2" / "raw.tif"
    pred = tmp_path / "PRED"
    rc, out, err = run_cli(capsys, "predict", "--model", run, bad, good, "--out", pred, "--score-threshold", "0")
    assert_user_error(rc, err, "a.tif", "1 of 2 image(s)", "not a TIFF file")
    assert "a.tif: skipped" in out
    sizes = json.loads((pred / "sizes.json").read_text())
    assert len(sizes) == 1 and next(iter(sizes)).endswith("set2/raw")  # the good one, and only it
    assert tifffile.imread(next(pred.rglob("raw.labels.tif"))).shape == (128, 128)


def test_a_batch_where_every_image_fails_says_so(run, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.tif", "b.tif"):
        (folder / name).write_text("not an image")
    rc, out, err = run_cli(capsys, "predict", "--model", run, folder, "--out", tmp_path / "P")
    assert_user_error(rc, err, "none of the 2 image(s)", "a.tif", "b.tif")
    assert not (tmp_path / "P" / "sizes.json").exists()


@pytest.mark.parametrize("existing", [True, False])
def test_predict_refuses_to_write_over_point_files(data, run, tmp_path, capsys, existing):
    """--out at the images' own folder would replace (or create) NAME.csv beside NAME.tif, a point file."""
    folder = tmp_path / "in"
    folder.mkdir()
    img = folder / "raw.tif"
    img.write_bytes((data[0] / "set1" / "raw.tif").read_bytes())
    clicks = folder / "raw.csv"
    if existing:
        clicks.write_text("y,x\n10,12\n40,50\n")
    rc, out, err = run_cli(capsys, "predict", "--model", run, img, "--out", tmp_path)  # key in/raw -> tmp/in/raw.*
    assert_user_error(rc, err, "raw.csv", "point file", "--out")
    assert (clicks.read_text() == "y,x\n10,12\n40,50\n") if existing else not clicks.exists()
    assert not list(folder.glob("*.labels.tif"))  # nothing written
    rc, out, err = run_cli(capsys, "predict", "--model", run, img, "--out", tmp_path / "elsewhere")
    assert rc == 0, err


def test_blank_image_is_not_an_error(run, tmp_path, capsys):
    img = tmp_path / "in" / "blank.tif"
    img.parent.mkdir()
    tifffile.imwrite(img, np.full((64, 80), 1234, np.uint16))
    rc, out, err = run_cli(capsys, "predict", "--model", run, img, "--out", tmp_path / "P")
    assert rc == 0, err
    lab = tifffile.imread(tmp_path / "P" / "in" / "blank.labels.tif")  # one input keeps its folder's name
    assert lab.shape == (64, 80) and not lab.any()
    assert (tmp_path / "P" / "in" / "blank.csv").read_text().strip() == "label,score,y,x,area"


def test_predict_formats_for_fiji_qupath_coco(data, run, tmp_path, capsys):
    from cks.data.exports import read_imagej_rois

    img = data[0] / "set1" / "raw.tif"
    rc, out, err = run_cli(capsys, "predict", "--model", run, img, "--out", tmp_path / "P", "--score-threshold", "0.1",
                           "--format", "imagej", "geojson", "coco")
    assert rc == 0, err
    lab = tifffile.imread(next((tmp_path / "P").rglob("*.labels.tif")))
    rois = read_imagej_rois(next((tmp_path / "P").rglob("*.rois.zip")), lab.shape)
    assert len(np.unique(rois)) == len(np.unique(lab))  # every cell, background included
    assert json.loads(next((tmp_path / "P").rglob("*.geojson")).read_text())["type"] == "FeatureCollection"
    coco = json.loads((tmp_path / "P" / "predictions.coco.json").read_text())
    assert len(coco["annotations"]) == len(np.unique(lab)) - 1


def test_small_image_is_padded_not_a_traceback(run, tmp_path, capsys):
    img = tmp_path / "small.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(img, rng.integers(0, 4000, (40, 50)).astype(np.uint16))  # below the GroupNorm limit
    for extra in ([], ["--scale", "0.001"]):
        rc, out, err = run_cli(capsys, "predict", "--model", run, img, "--out", tmp_path / "S", *extra)
        assert rc == 0, err
        assert tifffile.imread(next((tmp_path / "S").rglob("small.labels.tif"))).shape == (40, 50)


def test_output_names_stay_unique(run, tmp_path, capsys):
    from cks.cli_predict import output_keys

    (tmp_path / "in").mkdir()
    a, b = tmp_path / "in" / "dup.tif", tmp_path / "in" / "dup.png"
    assert output_keys([tmp_path / "s46" / "raw.tif"]) == ["s46/raw"]
    assert output_keys([tmp_path / "s46" / "raw.tif", tmp_path / "s47" / "raw.tif"]) == ["s46/raw", "s47/raw"]
    tifffile.imwrite(a, np.zeros((64, 64), np.uint16))
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(b)
    rc, out, err = run_cli(capsys, "predict", "--model", run, a, b, "--out", tmp_path / "D")
    assert_user_error(rc, err, "dup.png")
    assert not (tmp_path / "D").exists() or not any((tmp_path / "D").rglob("*.tif"))


def _points_json(folder: Path, locations) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "img.tif", (synthetic_sample((64, 64), n_cells=4, seed=0)["image"][0] * 1000 + 5000)
                     .astype(np.uint16))
    path = folder / "points.json"
    path.write_text(json.dumps([{"image_file": "img.tif", "locations": locations}]))
    return path


@pytest.mark.parametrize("case", ["outside", "none", "masks_without_labels", "mismatch", "preset", "set_key",
                                  "no_data"])
def test_train_bad_input(tmp_path, capsys, case):
    argv = ["--out", tmp_path / "RUN", "--steps", "1", *TINY]
    if case == "outside":
        spec, needles = _points_json(tmp_path / "d", [[10, 10], [200.5, 20]]), ["img.tif", "outside", "64x64"]
    elif case == "none":
        spec, needles = _points_json(tmp_path / "d", []), ["img.tif", "no points"]
    elif case == "masks_without_labels":
        spec, needles = _points_json(tmp_path / "d", [[10, 10]]), ["img.tif", "--labels masks"]
        argv += ["--labels", "masks"]
    elif case == "mismatch":
        write_set(tmp_path / "d" / "set1", seed=1)
        write_set(tmp_path / "other", seed=2, size=(96, 128))
        os.replace(tmp_path / "other" / "instances_ids.png", tmp_path / "d" / "set1" / "instances_ids.png")
        spec, needles = tmp_path / "d", ["instances_ids.png", "does not match"]
    elif case == "preset":
        write_set(tmp_path / "d" / "set1", seed=1)
        spec, needles = tmp_path / "d", ["unknown preset", "'nope'"]
        argv += ["--preset", "nope"]
    elif case == "set_key":
        write_set(tmp_path / "d" / "set1", seed=1)
        spec, needles = tmp_path / "d", ["unknown config key", "segmentor.windoww"]
        argv += ["segmentor.windoww=3"]
    else:
        spec, needles = tmp_path / "nothing_here", ["nothing_here", "not found"]
    rc, out, err = run_cli(capsys, "train", "--data", spec, *argv)
    assert_user_error(rc, err, *needles)
    assert not (tmp_path / "RUN" / "checkpoint.pt").exists()


@pytest.mark.parametrize("case", ["weights", "unknown_key", "truncated", "not_torch", "missing"])
def test_predict_bad_checkpoint(data, run, tmp_path, capsys, case):
    ck_path = tmp_path / "ck" / "checkpoint.pt"
    ck_path.parent.mkdir()
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    if case == "weights":  # config edited so the weights no longer fit
        ck["config"]["backbone"]["fpn_channels"] = 16
        torch.save(ck, ck_path)
        needle = "weights do not fit"
    elif case == "unknown_key":
        ck["config"]["segmentor"]["shiny_new_option"] = 1
        torch.save(ck, ck_path)
        needle = "incompatible"
    elif case == "truncated":
        ck_path.write_bytes((run / "checkpoint.pt").read_bytes()[:5000])
        needle = "not a readable cks checkpoint"
    elif case == "not_torch":
        ck_path.write_text("hello")
        needle = "not a readable cks checkpoint"
    else:
        ck_path = tmp_path / "ck"
        needle = "no checkpoint found"
    rc, out, err = run_cli(capsys, "predict", "--model", ck_path, data[0] / "set1/raw.tif", "--out", tmp_path / "P")
    assert_user_error(rc, err, "checkpoint.pt" if case == "missing" else ck_path.name, needle)
    assert not (tmp_path / "P").exists()


def test_resume_with_another_config_is_refused(data, run, tmp_path, capsys):
    import shutil
    copy = tmp_path / "RUN"
    shutil.copytree(run, copy)
    before = (copy / "checkpoint.pt").read_bytes()
    rc, out, err = run_cli(capsys, "train", "--data", data[0], "--labels", "points", "--out", copy, "--steps", "3",
                           "--resume", *TINY, "loss.prior_scale=1.5")
    assert_user_error(rc, err, "checkpoint.pt", "another configuration")
    assert (copy / "checkpoint.pt").read_bytes() == before


def test_train_into_a_folder_that_holds_a_run(data, run, tmp_path, capsys):
    """A second `cks train --out` into a finished run is refused and leaves it untouched; --overwrite replaces it
    (no file of the old run is left: checkpoint, metrics, snapshots, size regressor are the new run's)."""
    import shutil
    copy = tmp_path / "RUN"
    shutil.copytree(run, copy)
    (copy / "snapshots").mkdir(exist_ok=True)
    (copy / "snapshots" / "step_999999.pt").write_bytes(b"old")
    before = (copy / "checkpoint.pt").read_bytes()
    args = ["train", "--data", data[0], "--labels", "points", "--out", copy, "--steps", "2", *TINY]
    rc, out, err = run_cli(capsys, *args)
    assert_user_error(rc, err, "already holds a run", "--resume", "--overwrite")
    assert (copy / "checkpoint.pt").read_bytes() == before
    rc, out, err = run_cli(capsys, *args, "--resume", "--overwrite")
    assert_user_error(rc, err, "give one of them")
    rc, out, err = run_cli(capsys, *args, "train.init_principal=" + str(copy / "checkpoint.pt"), "--overwrite")
    assert_user_error(rc, err, "is the checkpoint --overwrite replaces")
    files = sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*"))
    rc, out, err = run_cli(capsys, *args, "train.init_principal=" + str(tmp_path / "missing.pt"), "--overwrite")
    assert rc != 0  # fails after the old run was set aside: it is given back whole
    assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*")) == files
    assert (copy / "checkpoint.pt").read_bytes() == before
    rc, out, err = run_cli(capsys, *args, "--overwrite")
    assert rc == 0, err
    assert not (copy / "snapshots" / "step_999999.pt").exists() and not (copy / ".overwritten").exists()
    steps = [json.loads(line)["step"] for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert steps and max(steps) <= 2  # the new run's rows only


def test_bad_channel_and_tile(data, run, tmp_path, capsys):
    img = data[0] / "set1" / "raw.tif"
    rc, out, err = run_cli(capsys, "predict", "--model", run, img, "--out", tmp_path / "P", "--channel", "2")
    assert_user_error(rc, err, "raw.tif", "channel")
    rc, out, err = run_cli(capsys, "predict", "--model", run, img, "--out", tmp_path / "P", "--tile", "100")
    assert_user_error(rc, err, "tile")


def test_channel_picks_one_of_four(data, run, tmp_path, capsys):
    """A 4-channel image (RGBA with a real alpha) is refused as such, and --channel K picks one of its channels."""
    from PIL import Image

    gray = tifffile.imread(data[0] / "set1" / "raw.tif")
    g8 = (255 * (gray - gray.min()) / max(1, np.ptp(gray))).astype(np.uint8)
    rgba = np.stack([g8, g8 // 2, g8 // 3, 255 - g8], -1)  # the alpha varies: it is not dropped
    Image.fromarray(rgba, "RGBA").save(tmp_path / "four.png")
    rc, out, err = run_cli(capsys, "predict", "--model", run, tmp_path / "four.png", "--out", tmp_path / "P")
    assert_user_error(rc, err, "4 channels", "--channel")
    for k in (0, 3):
        rc, out, err = run_cli(capsys, "predict", "--model", run, tmp_path / "four.png", "--out", tmp_path / f"C{k}",
                               "--channel", str(k))
        assert rc == 0, err
        assert tifffile.imread(next((tmp_path / f"C{k}").rglob("four.labels.tif"))).shape == gray.shape


def test_channel_picks_one_of_five(data, run, tmp_path, capsys):
    """A 5-channel TIFF (more than a model takes, CYX in its metadata) is refused without --channel and gives
    the same labels with --channel K as the single-channel image of that plane."""
    gray = tifffile.imread(data[0] / "set1" / "raw.tif").astype(np.float32)
    planes = np.stack([np.zeros_like(gray), gray, 2 * gray, gray[::-1], np.ones_like(gray)])
    tifffile.imwrite(tmp_path / "five.tif", planes, imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "plane1.tif", planes[1])
    rc, out, err = run_cli(capsys, "predict", "--model", run, tmp_path / "five.tif", "--out", tmp_path / "P")
    assert_user_error(rc, err, "five.tif", "--channel")
    rc, out, err = run_cli(capsys, "predict", "--model", run, tmp_path / "five.tif", "--out", tmp_path / "P",
                           "--channel", "5")
    assert_user_error(rc, err, "five.tif", "no channel 5", "--channel 0..4")
    rc, out, err = run_cli(capsys, "predict", "--model", run, tmp_path / "five.tif", "--out", tmp_path / "C",
                           "--channel", "1")
    assert rc == 0, err
    rc, out, err = run_cli(capsys, "predict", "--model", run, tmp_path / "plane1.tif", "--out", tmp_path / "S")
    assert rc == 0, err
    np.testing.assert_array_equal(tifffile.imread(next((tmp_path / "C").rglob("five.labels.tif"))),
                                  tifffile.imread(next((tmp_path / "S").rglob("plane1.labels.tif"))))


def test_points_channel_of_a_multichannel_image(tmp_path, capsys):
    """`cks points --channel K` finds the nuclei of plane K of a 5-channel TIFF, the same points as that plane
    saved alone; without --channel the 5-channel file is refused, and a missing channel is named."""
    yy, xx = np.mgrid[:96, :96]
    centres = [(24, 30), (60, 70), (70, 20)]
    nuclei = sum(1000 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 5.0 ** 2)) for y, x in centres)
    planes = np.stack([np.zeros((96, 96)), np.full((96, 96), 7.0), nuclei, nuclei[::-1], np.ones((96, 96))])
    tifffile.imwrite(tmp_path / "five.tif", planes.astype(np.float32))
    tifffile.imwrite(tmp_path / "nuc.tif", nuclei.astype(np.float32))
    rc, out, err = run_cli(capsys, "points", tmp_path / "five.tif", "--out", tmp_path / "a.json")
    assert_user_error(rc, err, "five.tif", "--channel")
    rc, out, err = run_cli(capsys, "points", tmp_path / "five.tif", "--out", tmp_path / "a.json", "--channel", "9")
    assert_user_error(rc, err, "no channel 9")
    rc, out, err = run_cli(capsys, "points", tmp_path / "five.tif", "--out", tmp_path / "a.json", "--channel", "2")
    assert rc == 0 and "five.tif: 3 points" in out, (out, err)
    rc, out, err = run_cli(capsys, "points", tmp_path / "nuc.tif", "--out", tmp_path / "b.json")
    assert rc == 0 and "nuc.tif: 3 points" in out, (out, err)
    got = [json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json")]
    assert [r["locations"] for r in got[0]] == [r["locations"] for r in got[1]]
    assert sorted(map(tuple, np.round(got[1][0]["locations"]).astype(int).tolist())) == sorted(centres)


def test_points_for_the_images_to_train_on(tmp_path, capsys):
    """`cks points nuclei/*.tif --images phase/` lists the phase images (same names) with the nuclei's points, so
    `cks train --data points.json` reads the phase images; a missing or differently sized image is named."""
    from cks.data.spec import load_dataset

    yy, xx = np.mgrid[:64, :64]
    (tmp_path / "nuclei").mkdir()
    (tmp_path / "phase").mkdir()
    for k, (y, x) in enumerate([(20, 24), (40, 44)]):
        blob = 1000 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 4.0 ** 2))
        tifffile.imwrite(tmp_path / "nuclei" / f"f{k}.tif", blob.astype(np.float32))
        tifffile.imwrite(tmp_path / "phase" / f"f{k}.tif", np.full((64, 64), 100 + k, np.uint16))
    nuclei = [tmp_path / "nuclei" / f"f{k}.tif" for k in (0, 1)]
    rc, out, err = run_cli(capsys, "points", *nuclei, "--images", tmp_path / "phase", "--out", tmp_path / "p.json")
    assert rc == 0, err
    samples = load_dataset(str(tmp_path / "p.json"))
    assert [float(s["image"].mean()) for s in samples] == [100.0, 101.0]  # the phase images, not the stain
    np.testing.assert_allclose(samples[1]["points"], [[40, 44]], atol=1)
    (tmp_path / "nuclei" / "other").mkdir()
    shutil_copy = __import__("shutil").copy
    shutil_copy(nuclei[0], tmp_path / "nuclei" / "other" / "f0.tif")
    rc, out, err = run_cli(capsys, "points", nuclei[0], tmp_path / "nuclei" / "other" / "f0.tif", "--images",
                           tmp_path / "phase", "--out", tmp_path / "q.json")
    assert_user_error(rc, err, "both name", "f0.tif")  # two stains for one image
    (tmp_path / "phase" / "f1.tif").unlink()
    rc, out, err = run_cli(capsys, "points", *nuclei, "--images", tmp_path / "phase", "--out", tmp_path / "q.json")
    assert_user_error(rc, err, "f1.tif", "no image of the same name")
    from PIL import Image as PILImage
    PILImage.fromarray(np.zeros((32, 64), np.uint8)).save(tmp_path / "phase" / "f1.png")
    rc, out, err = run_cli(capsys, "points", *nuclei, "--images", tmp_path / "phase", "--out", tmp_path / "q.json")
    assert_user_error(rc, err, "f1.png", "differs from its nuclear image")
    assert not (tmp_path / "q.json").exists()


def test_prediction_keys_pair_with_ground_truth_in_another_folder(tmp_path):
    """cks evaluate pairs ground truth with `cks predict` outputs: by folder and file name where both match,
    else by a file name that only one prediction has; two predictions of that name are no match."""
    from cks.cli_predict import _match_predictions

    gt = [{"image_path": str(tmp_path / "my_set_with_masks" / f"{n}.tif"), "name": n} for n in ("a", "b")]
    assert _match_predictions(gt, ["images/a", "images/b", "images/c"], tmp_path) == ["images/a", "images/b"]
    sets = [{"image_path": str(tmp_path / "val" / f"set{i}" / "raw.tif"), "name": f"set{i}"} for i in (46, 47)]
    assert _match_predictions(sets, ["set47/raw", "set46/raw"], tmp_path) == ["set46/raw", "set47/raw"]
    with pytest.raises(CksError, match="no prediction for ground-truth image"):
        _match_predictions(gt[:1], ["x/a", "y/a"], tmp_path)  # a.tif: in two folders, neither is my_set_with_masks
    with pytest.raises(CksError, match="no prediction for ground-truth image"):
        _match_predictions(sets[:1], ["set47/raw"], tmp_path)  # set46/raw.tif: set47's is not its prediction


def test_evaluate_a_folder_of_images_with_masks(data, run, tmp_path, capsys):
    """README's workflow: predict a folder of images, evaluate against a folder of the same images with a
    Cellpose-style label image beside each (img_masks.tif); the scores are those of the Usiigaci reading."""
    import shutil

    from PIL import Image as PILImage

    (tmp_path / "images").mkdir()
    (tmp_path / "gt").mkdir()
    for k in (1, 2):
        shutil.copy(data[0] / f"set{k}" / "raw.tif", tmp_path / "images" / f"field{k}.tif")
        shutil.copy(data[0] / f"set{k}" / "raw.tif", tmp_path / "gt" / f"field{k}.tif")
        lab = np.asarray(PILImage.open(data[0] / f"set{k}" / "instances_ids.png"))
        tifffile.imwrite(tmp_path / "gt" / f"field{k}_masks.tif", lab.astype(np.uint16))
    rc, out, err = run_cli(capsys, "predict", "--model", run, tmp_path / "images", "--out", tmp_path / "P")
    assert rc == 0, err
    rc, out, err = run_cli(capsys, "evaluate", "--pred", tmp_path / "P", "--gt", tmp_path / "gt", "--json",
                           tmp_path / "a.json")
    assert rc == 0, err
    rc, out, err = run_cli(capsys, "predict", "--model", run, data[0] / "set1" / "raw.tif", data[0] / "set2" / "raw.tif",
                           "--out", tmp_path / "Q")  # the same images read as the Usiigaci layout
    assert rc == 0, err
    rc, out, err = run_cli(capsys, "evaluate", "--pred", tmp_path / "Q", "--gt", f"{data[0]}:set1-2", "--json",
                           tmp_path / "b.json")
    assert rc == 0, err
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["n_gt"] == b["n_gt"] > 0 and a["ap50"] == pytest.approx(b["ap50"]) and a["dice"] == pytest.approx(b["dice"])


@pytest.fixture(scope="module")
def segmenting_run(data, tmp_path_factory):
    """A supervised run trained long enough (60 steps) to draw masks, so mask thresholds change them."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("seg") / "RUN"
    assert main(["train", "--data", str(data[0]), "--labels", "masks", "--preset", "supervised", "--out", str(out),
                 "--steps", "60", *TINY, "train.lr=0.003", "train.finetune_lr=0.003", "train.checkpoint_every=1000"]) == 0
    return out


def test_thresholds_chooses_what_predict_takes(data, segmenting_run, tmp_path, capsys):
    root, run = data[0], segmenting_run
    rc, out, err = run_cli(capsys, "thresholds", "--model", run, "--data", f"{root}:set1,set2", "--mask-grid", "0.3",
                           "0.5", "--json", tmp_path / "T.json")
    assert rc == 0, err
    r = json.loads((tmp_path / "T.json").read_text())
    assert [row["mask_threshold"] for row in r["table"]] == [0.3, 0.5] and r["objective"] == "f1"
    best = max(r["table"], key=lambda row: (row["f1"], -abs(row["mask_threshold"] - 0.5)))
    assert (r["mask_threshold"], r["score_threshold"]) == (best["mask_threshold"], best["score_threshold"])
    assert f"--score-threshold {r['score_threshold']} --mask-threshold {r['mask_threshold']}" in out
    fg = {}
    for m in ("0.3", "0.5"):  # a lower mask threshold draws every cell at least as large
        rc, out, err = run_cli(capsys, "predict", "--model", run, root / "set1/raw.tif", "--out", tmp_path / m,
                               "--score-threshold", "0.0", "--mask-threshold", m)
        assert rc == 0, err
        fg[m] = int((tifffile.imread(tmp_path / m / "set1" / "raw.labels.tif") > 0).sum())
    assert fg["0.3"] > fg["0.5"]
    from cks.checkpoint import load_model
    from cks.predict import predict
    from cks.threshold import tune_mask_threshold

    model = load_model(run)
    img = tifffile.imread(root / "set1/raw.tif")
    direct, _ = predict(model, img, score_threshold=0.0, mask_threshold=0.3)  # what --mask-threshold 0.3 must give
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "0.3" / "set1" / "raw.labels.tif"), direct)
    # --mask-resampling reaches predict (at a scale other than 1, where it matters)
    rc, out, err = run_cli(capsys, "predict", "--model", run, root / "set1/raw.tif", "--out", tmp_path / "bl",
                           "--score-threshold", "0.0", "--scale", "0.8", "--mask-resampling", "bilinear")
    assert rc == 0, err
    bl, _ = predict(model, img, score_threshold=0.0, scale=0.8, mask_resampling="bilinear")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "bl" / "set1" / "raw.labels.tif"), bl)
    assert not np.array_equal(bl, predict(model, img, score_threshold=0.0, scale=0.8)[0])
    # --tta reaches predict
    rc, out, err = run_cli(capsys, "predict", "--model", run, root / "set1/raw.tif", "--out", tmp_path / "tta",
                           "--score-threshold", "0.0", "--scale", "0.8", "--tta", "flips")
    assert rc == 0, err
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "tta" / "set1" / "raw.labels.tif"),
                                  predict(model, img, score_threshold=0.0, scale=0.8, tta="flips")[0])
    # the scale search (no regressor) runs at mask threshold 0.5 whatever the candidate, so each row equals a direct pass
    samples = [{"image": tifffile.imread(root / f"set{i}/raw.tif"), "label": data[1][f"set{i}"]["label"]} for i in (1, 2)]
    t = tune_mask_threshold(model, samples, grid=(0.3, 0.5), size_from="score")
    for row in t["table"]:
        fg_direct = sum(int((predict(model, s["image"], score_threshold=0.2, mask_threshold=row["mask_threshold"],
                                     size_from="score")[0] > 0).sum()) for s in samples)
        assert row["foreground_px"] == fg_direct, row
    # cks thresholds tunes for the resampling it is given and says so in the suggested command
    rc, out, err = run_cli(capsys, "thresholds", "--model", run, "--data", f"{root}:set1,set2", "--mask-grid", "0.5",
                           "--diameter", "20", "--mask-resampling", "bilinear", "--json", tmp_path / "TB.json")
    assert rc == 0, err
    assert "--mask-resampling bilinear" in out
    rc, out, err = run_cli(capsys, "thresholds", "--model", run, "--data", f"{root}:set1,set2", "--mask-grid", "0.5",
                           "--diameter", "20", "--tta", "flips", "--json", tmp_path / "TT.json")
    assert rc == 0, err
    assert "--tta flips" in out
    tt = json.loads((tmp_path / "TT.json").read_text())
    ref = tune_mask_threshold(model, samples, grid=(0.5,), size=20.0, tta="flips")
    assert tt["tta"] == "flips" and tt["table"] == json.loads(json.dumps(ref["table"]))
    tb = json.loads((tmp_path / "TB.json").read_text())
    ref = tune_mask_threshold(model, samples, grid=(0.5,), size=20.0, mask_resampling="bilinear")
    assert tb["mask_resampling"] == "bilinear" and tb["table"] == json.loads(json.dumps(ref["table"]))
    rc, out, err = run_cli(capsys, "predict", "--model", run, root / "set1/raw.tif", "--out", tmp_path / "X",
                           "--mask-threshold", "1.5")
    assert_user_error(rc, err, "mask_threshold", "(0, 1)")
    rc, out, err = run_cli(capsys, "thresholds", "--model", run, "--data", f"{root}:set1", "--mask-grid", "0")
    assert_user_error(rc, err, "(0, 1)")
    bare = tmp_path / "bare"  # an image with points and no masks cannot choose thresholds
    bare.mkdir()
    (bare / "img.tif").write_bytes((root / "set1" / "raw.tif").read_bytes())
    (bare / "img.csv").write_text("y,x\n30,30\n60,90\n")
    rc, out, err = run_cli(capsys, "thresholds", "--model", run, "--data", str(bare))
    assert rc == 2 and "mask" in err and "Traceback" not in err, err


# ---------------------------------------------------------------- kill -9 and resume
@pytest.mark.slow
def test_kill_minus_9_then_resume(data, tmp_path, capsys):
    out = tmp_path / "RUN"
    args = ["train", "--data", str(data[0]), "--labels", "points", "--out", str(out), "--steps", "60", *TINY,
            "train.checkpoint_every=5"]
    proc = subprocess.Popen([sys.executable, "-m", "cks", *args], cwd=tmp_path, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while not (out / "checkpoint.pt").exists():
            assert proc.poll() is None, "training ended before its first checkpoint"
            assert time.time() < deadline
            time.sleep(0.02)
        time.sleep(0.4)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -9, "the run finished before it was killed"
    from cks.checkpoint import load_checkpoint
    (out / "checkpoint.pt.tmp").write_bytes(b"half a checkpoint")  # what a kill during a save leaves
    ck = load_checkpoint(out)
    saved = int(ck["step"])
    assert saved % 5 == 0 and 5 <= saved < 60
    rc, o, err = run_cli(capsys, *args, "--resume")
    assert rc == 0, err
    assert load_checkpoint(out)["step"] == 60
    assert no_tmp_files(out)
    from cks.run_folder import read_history
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    marks = [i for i, r in enumerate(rows) if r.get("event") == "resumed"]
    if marks:  # a kill after the first logged row: the marker is at the checkpoint's step
        assert rows[marks[-1]]["step"] == saved
    after = [r["step"] for r in rows[marks[-1] + 1 if marks else 0:] if "event" not in r]
    assert after and min(after) > saved and after[-1] == 60  # continued from the checkpoint, not restarted
    steps = [r["step"] for r in read_history(out)]  # rows logged after the checkpoint by the killed run are dropped
    assert steps == sorted(set(steps)) and steps[-1] == 60


# ---------------------------------------------------------------- real data
@pytest.mark.realdata
def test_real_usiigaci_two_steps(tmp_path, capsys):
    if not os.environ.get("CKS_DATA_DIR") or not Path(os.environ["CKS_DATA_DIR"]).is_dir():
        pytest.skip("CKS_DATA_DIR not set")
    from cks.data.spec import load_dataset
    spec = "usiigaci_nih3t3_phase/train:set1"
    s = load_dataset(spec, points="centroid")
    assert len(s) == 1 and len(s[0]["points"]) > 10
    assert s[0]["image"].shape[-2:] == s[0]["label"].shape
    tiny = ["--size", "test", "--set", "segmentor.window=48", "train.crop_size=128"]
    # default: cell-size normalisation, the size estimated from the points (masks never used)
    rc, out, err = run_cli(capsys, "train", "--data", spec, "--labels", "points", "--out", tmp_path / "R",
                           "--steps", "2", *tiny)
    assert rc == 0, err
    assert "cell size (points)" in out
    from cks.checkpoint import load_checkpoint
    from cks.size import estimate_diameter
    ck = load_checkpoint(tmp_path / "R")
    assert ck["step"] == 2
    assert ck["scale"] == pytest.approx(32.0 / estimate_diameter(s[0]["image"], s[0]["points"]), rel=0.01)
    # a fixed scale is refused with a normalising preset, and works when normalisation is switched off
    rc, out, err = run_cli(capsys, "train", "--data", spec + "@0.5", "--labels", "points", "--out", tmp_path / "F",
                           "--steps", "2", *tiny)
    assert_user_error(rc, err, "size.normalize=false")
    rc, out, err = run_cli(capsys, "train", "--data", spec + "@0.5", "--labels", "points", "--out", tmp_path / "F",
                           "--steps", "2", *tiny, "size.normalize=false")
    assert rc == 0, err
    assert "scale 0.5" in out and load_checkpoint(tmp_path / "F")["scale"] == 0.5


def test_predict_a_folder(run, tmp_path, capsys):
    """A folder stands for its images (recursive); earlier results (*.labels.tif) and other files are skipped."""
    root = tmp_path / "fields"
    for rel in ("a.tif", "sub/b.png", "notes.txt", "old.labels.tif"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".txt"):
            p.write_text("x")
        elif rel.endswith(".png"):
            Image.fromarray(np.random.default_rng(0).integers(0, 255, (72, 72)).astype(np.uint8)).save(p)
        else:
            tifffile.imwrite(p, np.random.default_rng(1).integers(0, 60000, (72, 72)).astype(np.uint16))
    rc, out, err = run_cli(capsys, "predict", "--model", run, root, "--out", tmp_path / "P")
    assert rc == 0, err
    got = sorted(p.relative_to(tmp_path / "P").as_posix() for p in (tmp_path / "P").rglob("*.labels.tif"))
    assert got == ["a.labels.tif", "sub/b.labels.tif"]  # below the inputs' common folder (output_keys)
    empty = tmp_path / "empty"
    empty.mkdir()
    rc, out, err = run_cli(capsys, "predict", "--model", run, empty, "--out", tmp_path / "Q")
    assert_user_error(rc, err, "empty", "without images")
    rc, out, err = run_cli(capsys, "predict", "--model", run, tmp_path / "nope.tif", "--out", tmp_path / "Q")
    assert_user_error(rc, err, "nope.tif", "no such file")


def test_every_option_has_help_text():
    import argparse

    from cks.cli import build_parser

    missing = []
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                missing += [f"{name} {x.option_strings or x.dest}" for x in sub._actions
                            if not x.help and x.dest != "help"]
    assert not missing, missing


def test_predict_size_at_points_beside_the_image(data, run, tmp_path, capsys):
    """--size-at-points: each image's cell size is measured at the point file beside it (same name)."""
    import shutil

    from cks.points import centroids
    from cks.size import estimate_diameter

    root, samples = data
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    shutil.copy(root / "set1" / "raw.tif", img_dir / "a.tif")
    _, pts = centroids(samples["set1"]["label"])
    with open(img_dir / "a.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["y", "x"])
        w.writerows(pts.tolist())
    rc, out, err = run_cli(capsys, "predict", "--model", run, img_dir / "a.tif", "--out", tmp_path / "P", "--size-at-points")
    assert rc == 0, err
    (info,) = json.loads((tmp_path / "P" / "sizes.json").read_text()).values()
    raw = tifffile.imread(img_dir / "a.tif")
    assert info["diameter_source"] == "measured at the given points"
    assert info["diameter"] == pytest.approx(estimate_diameter(raw, pts), rel=1e-4)
    (img_dir / "a.csv").unlink()
    rc, out, err = run_cli(capsys, "predict", "--model", run, img_dir / "a.tif", "--out", tmp_path / "Q", "--size-at-points")
    assert_user_error(rc, err, "a.tif", "point file beside")


def test_predict_size_from_choices_match_the_library():
    """`cks predict --size-from` lists its choices by hand (building the parser must not import torch); they must be
    exactly predict()'s ``SIZE_FROM``."""
    import importlib

    from cks.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    opt = next(a for a in sub.choices["predict"]._actions if "--size-from" in a.option_strings)
    assert tuple(opt.choices) == importlib.import_module("cks.predict").SIZE_FROM
    opt = next(a for a in sub.choices["predict"]._actions if "--tta" in a.option_strings)
    assert tuple(opt.choices) == tuple(importlib.import_module("cks.tta").TTA_CHOICES)

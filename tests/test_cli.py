"""The ``cks`` command line end to end on tiny generated data sets: training, its bad inputs, kill -9 + --resume,
``cks points``, presets, demo and help. Prediction and evaluation: ``tests/test_cli_predict.py``.

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

from cks.cli import main
from cks.data.synthetic import synthetic_sample
from tests.cli_helpers import REPO, TINY, ENV, assert_user_error, data, no_tmp_files, run, run_cli, write_set  # noqa: F401  (module fixtures)


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


def test_default_preset_follows_the_labels(data, tmp_path, capsys):
    """Without --preset, `cks train` takes what the tuning splits chose for the kind of labels; a given one wins."""
    from cks.cli_train import DEFAULT_PRESETS, default_preset
    from cks.errors import CksError

    assert [default_preset(k, None) for k in ("points", "nuclei", "masks")] == [
        "phase_points", "nuclear_pairwise", "supervised"]
    assert default_preset("points", "base") == "base" and set(DEFAULT_PRESETS) == {"points", "nuclei", "masks"}
    with pytest.raises(CksError, match="--labels"):
        default_preset("boxes", None)
    for extra, foreground, pairwise_on in (([], [16, 32, 64, 128], "both"), (["--preset", "base"], [16, 32, 64],
                                                                            "collaborator")):
        out = tmp_path / f"D{len(extra)}"
        rc, text, err = run_cli(capsys, "train", "--data", f"{data[0]}:set1-2", "--labels", "points", "--out", out,
                                "--steps", "1", *TINY, *extra)
        assert rc == 0, err
        cfg = json.loads((out / "config.json").read_text())
        assert cfg["collaborator"]["foreground"] == foreground and cfg["loss"]["pairwise_on"] == pairwise_on
        assert f"preset {'base' if extra else 'phase_points'}," in text


def test_resume_keeps_a_run_trained_under_the_old_default(data, tmp_path, capsys):
    """A run trained when `cks train` defaulted to `base` resumes with its own command (no --preset): it continues
    under `base` and says so; a run of the new default resumes under it without a note; a run of any other preset
    is refused with a message that asks for its preset (not misnamed `base`)."""
    from cks.checkpoint import load_checkpoint
    from cks.cli_train import resumed_preset
    from cks.config import get_preset
    from cks.errors import CksError

    assert resumed_preset(None, "points", "test") == ("phase_points", None)
    assert resumed_preset(get_preset("base", size="test").to_dict(), "nuclei", "test")[0] == "base"
    assert resumed_preset(get_preset("supervised", size="test").to_dict(), "masks", "test") == ("supervised", None)
    pw = ["loss.pairwise_on=both"]  # base with an override of a setting where base and phase_points differ
    assert resumed_preset(get_preset("base", size="test", overrides=pw).to_dict(), "points", "test", pw)[0] == "base"
    with pytest.raises(CksError, match="give the --preset"):  # an ablation preset is not taken for `base`
        resumed_preset(get_preset("table5_entropy_principal", size="test").to_dict(), "points", "test")
    for first, note in ((["--preset", "base"], True), ([], False)):
        out = tmp_path / f"R{len(first)}"
        args = ["train", "--data", f"{data[0]}:set1-2", "--labels", "points", "--out", out, *TINY]
        rc, _, err = run_cli(capsys, *args, "--steps", "1", *first)
        assert rc == 0, err
        rc, text, err = run_cli(capsys, *args, "--steps", "2", "--resume")
        assert rc == 0, err
        assert ("trained with preset 'base'" in text) == note, text
        assert json.loads((out / "config.json").read_text())["train"]["steps"] == 2
        assert load_checkpoint(out)["step"] == 2
    out = tmp_path / "R_other"
    args = ["train", "--data", f"{data[0]}:set1-2", "--labels", "points", "--out", out, *TINY]
    rc, _, err = run_cli(capsys, *args, "--steps", "1", "--preset", "table5_entropy_principal")
    assert rc == 0, err
    rc, text, err = run_cli(capsys, *args, "--steps", "2", "--resume")
    assert rc == 2 and "give the --preset" in err and "trained with preset 'base'" not in text, (text, err)
    assert load_checkpoint(out)["step"] == 1  # refused before anything was touched
    (out / "config.json").write_text("{not json")  # unreadable: the checkpoint's own config still refuses it
    rc, text, err = run_cli(capsys, *args, "--steps", "2", "--resume")
    assert rc == 2 and "another configuration" in err, (text, err)


def test_nuclear_points_hint_only_where_the_prior_switches_off():
    from cks.cli_train import nuclear_prior_note
    from cks.config import get_preset
    from cks.losses.cks import effective_loss_config

    assert "--preset nuclear_pairwise" in nuclear_prior_note("nuclei", get_preset("base"))
    for labels, preset in (("points", "base"), ("nuclei", "nuclear_points"), ("nuclei", "nuclear_pairwise"),
                           ("nuclei", "prior_throughout"),
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
    marked = {line.split()[0] for line in r.stdout.splitlines() if "[cks train --labels" in line}
    assert marked == {"phase_points", "nuclear_pairwise", "supervised"}  # the defaults of `cks train` say so
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


def test_resume_with_another_config_is_refused(data, run, tmp_path, capsys):
    import shutil
    copy = tmp_path / "RUN"
    shutil.copytree(run, copy)
    before = (copy / "checkpoint.pt").read_bytes()
    rc, out, err = run_cli(capsys, "train", "--data", data[0], "--labels", "points", "--out", copy, "--steps", "3",
                           "--resume", *TINY, "loss.prior_scale=1.5")
    assert_user_error(rc, err, "another configuration", "loss.prior_scale", "--set")
    rc, out, err = run_cli(capsys, "train", "--data", data[0], "--labels", "points", "--out", copy, "--steps", "3",
                           "--resume", "--preset", "phase_points", *TINY, "loss.prior_scale=1.5")  # the preset named
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

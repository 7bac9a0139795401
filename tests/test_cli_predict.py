"""``cks predict``, ``cks evaluate`` and ``cks thresholds`` end to end on tiny generated data sets, and their bad inputs.

Commands run in-process through ``cks.cli.main`` (exit status checked). Models are tiny (``--size test``, window 48,
96 px crops, a few steps); the data and runs are the module fixtures of ``tests/cli_helpers.py``.
"""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from cks.errors import CksError
from tests.cli_helpers import assert_user_error, data, no_tmp_files, run, run_cli, segmenting_run  # noqa: F401  (module fixtures)


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

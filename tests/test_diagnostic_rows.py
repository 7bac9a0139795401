"""benchmarks/diagnostic_rows.py: `cks diagnose` outputs + validation curves + protocol results -> one rows file."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import diagnostic_rows  # noqa: E402
from cks.viz_diagnose import diagnostics_markdown  # noqa: E402
from cks.errors import CksDataError  # noqa: E402
import pytest  # noqa: E402


def _fake_run(tmp_path, run, extra_set):
    runs = tmp_path / "runs"
    (runs / "usiigaci_ablation_v2" / run).mkdir(parents=True)
    (runs / "usiigaci_ablation_v2" / run / "metrics.jsonl").write_text(
        json.dumps({"step": 10, "L_S": 0.2}) + "\n" + json.dumps({"step": 250, "val_ap50": 0.123456}) + "\n"
        + json.dumps({"step": 800, "val_ap50": 0.2}) + "\n")
    diag = runs / "diagnose" / run
    diag.mkdir(parents=True)
    overall = {"offset_median": 1.3, "area_ratio_median": 0.9, "iou_median": 0.43, "disk_iou_median": 0.41,
               "size_slope": 0.46}
    (diag / "diagnostics.json").write_text(json.dumps({
        "step": 800, "score_threshold": 0.6,
        "shape": {"overall": overall, "bins": [{"bin": "0-16", "area_ratio_median": 2.2}], "count_ratio": 0.94},
        "collaborator_foreground": {"ratio": [0.8, 1.1]}}))
    res = tmp_path / "results" / "usiigaci_ablation_v2"
    res.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/protocol.py --protocol usiigaci_ablation_v2 --model " + run + (
        f" --preset texture_collaborator --set {extra_set} --steps 800" if extra_set else " --preset base")
    (res / f"{run}.json").write_text(json.dumps({"command": cmd, "seed": 1, "metrics": {"ap50": 0.07}}))
    return runs


def test_rows_from_diagnose_outputs(tmp_path, monkeypatch):
    runs = _fake_run(tmp_path, "base_x", "")
    _fake_run(tmp_path, "pw_x", "loss.pairwise_weight=1")
    monkeypatch.setenv("CKS_RUNS_DIR", str(runs))
    stopped = runs / "stopped" / "dead_x"
    stopped.mkdir(parents=True)
    (stopped / "command.txt").write_text(
        f"python -m cks train --preset base --out {stopped} --set train.seed=0 train.crop_size=256 "
        "loss.pairwise_weight=5 loss.pairwise_on=principal")
    (stopped / "metrics.jsonl").write_text(json.dumps({"step": 250, "val_ap50": 0.0, "val_dice": 0.2}) + "\n"
                                           + json.dumps({"step": 380, "L_S": 1.7}) + "\n")
    out = tmp_path / "rows.json"
    diagnostic_rows.main(["--protocol", "usiigaci_ablation_v2", "--out", str(out), "--results-dir",
                          str(tmp_path / "results"), "base_x", "pw_x", "--stopped", "dead_x"])
    rec = json.loads(out.read_text())
    base, pw = rec["rows"]
    assert base["tuning_ap50_by_step"] == {"250": 0.1235, "800": 0.2}
    assert base["config"] == "base, seed 1" and pw["config"] == "texture_collaborator + loss.pairwise_weight=1, seed 1"
    assert pw["report_ap50"] == 0.07 and pw["step"] == "800" and pw["overall"]["size_slope"] == 0.46
    assert "$CKS_RUNS_DIR/usiigaci_ablation_v2/pw_x" in pw["command"]
    # the exact call: the fake files record neither flag, so the pre-session-25 reading (--true-size; no
    # snapshots and no trace in the file -> --no-history) applies, and --out names the folder the file was read from
    assert pw["command"].endswith("--true-size --score-threshold 0.6 --no-history --out $CKS_RUNS_DIR/diagnose/pw_x")
    assert str(tmp_path) not in json.dumps(rec)  # no path of this machine
    assert rec["stopped"] == [{"run": "dead_x", "config": "base + loss.pairwise_weight=5 loss.pairwise_on=principal",
                               "stopped_at_step": 380, "tuning_ap50_by_step": {"250": 0.0},
                               "tuning_dice_by_step": {"250": 0.2}}]
    table = diagnostics_markdown(rec["rows"])
    assert "pw_x" in table and "0.2" in table  # the tuning AP50 at the diagnosed step


def test_preset_and_overrides_reads_both_command_kinds():
    from benchmarks.diagnostic_rows import preset_and_overrides

    protocol_cmd = "python benchmarks/protocol.py --model m --preset texture --set loss.a=1 train.x=2 --note n"
    assert preset_and_overrides(protocol_cmd) == ("texture", ["loss.a=1", "train.x=2"])
    train_cmd = "python -m cks train --steps 800 --set train.seed=0 train.crop_size=256 loss.pairwise_weight=1"
    assert preset_and_overrides(train_cmd, train_keys=False) == ("base", ["loss.pairwise_weight=1"])
    assert preset_and_overrides("python -m cks train --preset") == ("base", [])
    # protocol.py without --preset trains the preset named like the model (`preset = a.preset or a.model`)
    assert preset_and_overrides("python benchmarks/protocol.py --protocol p --model table7_a2_b1 --seed 0") == (
        "table7_a2_b1", [])


def test_diagnose_command_follows_the_recorded_flags(tmp_path):
    runs = tmp_path / "runs"
    out = runs / "diag_a" / "r"
    base = {"score_threshold": 0.5, "shape_over_training": [], "consistency_trace": []}
    cmd = diagnostic_rows.diagnose_command({**base, "true_size": False, "history": True}, "r", "p", "d", out, runs)
    assert cmd == "cks diagnose $CKS_RUNS_DIR/p/r --data d --score-threshold 0.5 --out $CKS_RUNS_DIR/diag_a/r"
    cmd = diagnostic_rows.diagnose_command({**base, "true_size": True, "history": False}, "r", "p", "d", out, runs)
    assert cmd == ("cks diagnose $CKS_RUNS_DIR/p/r --data d --true-size --score-threshold 0.5 --no-history "
                   "--out $CKS_RUNS_DIR/diag_a/r")
    # an old file with a trace was made with the history (no flag written)
    old = {"score_threshold": 0.5, "shape_over_training": [{"step": 1}], "consistency_trace": []}
    assert "--no-history" not in diagnostic_rows.diagnose_command(old, "r", "p", "d", out, runs)
    cmd = diagnostic_rows.diagnose_command({**base, "true_size": True, "history": False, "weights": "training"},
                                           "r", "p", "d", out, runs)
    assert cmd.endswith("--no-history --training-weights --out $CKS_RUNS_DIR/diag_a/r")


def test_nested_diagnostic_record_is_read(tmp_path, monkeypatch):
    """A diagnostic run keeps its protocol record under "run" (so the result tables skip it); its row still
    carries the setting, the training command and the report AP50 from that nested record."""
    runs = _fake_run(tmp_path, "oracle_x", "loss.foreground_from=masks")
    res = tmp_path / "results" / "usiigaci_ablation_v2" / "oracle_x.json"
    res.write_text(json.dumps({"what": "diagnostic, not a result", "run": json.loads(res.read_text())}))
    monkeypatch.setenv("CKS_RUNS_DIR", str(runs))
    out = tmp_path / "rows.json"
    diagnostic_rows.main(["--protocol", "usiigaci_ablation_v2", "--out", str(out), "--results-dir",
                          str(tmp_path / "results"), "oracle_x"])
    (r,) = json.loads(out.read_text())["rows"]
    assert r["config"] == "texture_collaborator + loss.foreground_from=masks, seed 1"
    assert r["report_ap50"] == 0.07 and "--model oracle_x" in r["trained_with"]


def test_stopped_runs_alone(tmp_path, monkeypatch):
    """A file of stopped runs only (a setting that collapsed early): no diagnosed run needed; neither is refused."""
    import pytest

    runs = tmp_path / "runs"
    stopped = runs / "stopped" / "floor_x"
    stopped.mkdir(parents=True)
    (stopped / "command.txt").write_text("python -m cks train --preset base --set train.seed=0 loss.collapse_min_area=0.3")
    (stopped / "metrics.jsonl").write_text(json.dumps({"step": 2000, "val_ap50": 0.0, "val_dice": 0.0004}) + "\n"
                                           + json.dumps({"step": 2090, "L_S": 0.02}) + "\n")
    monkeypatch.setenv("CKS_RUNS_DIR", str(runs))
    out = tmp_path / "stopped.json"
    diagnostic_rows.main(["--protocol", "p", "--out", str(out), "--stopped", "floor_x"])
    rec = json.loads(out.read_text())
    assert rec["rows"] == [] and rec["stopped"][0]["stopped_at_step"] == 2090
    assert rec["stopped"][0]["config"] == "base + loss.collapse_min_area=0.3"
    with pytest.raises(SystemExit):
        diagnostic_rows.main(["--protocol", "p", "--out", str(tmp_path / "none.json")])


def test_foreground_values_pool_fields_over_rows():
    from cks.viz_diagnose import foreground_values

    rows = [{"collaborator_foreground": {"iou": [0.5, 0.25], "ratio": [1.0, 2.0]}},
            {"collaborator_foreground": {"iou": [0.75]}},  # no ratio recorded
            {"collaborator_foreground": None}, {}]  # run without a collaborator / diagnosed before it existed
    assert foreground_values(rows, "iou") == [0.5, 0.25, 0.75]
    assert foreground_values(rows, "ratio") == [1.0, 2.0]
    assert foreground_values(rows[2:], "iou") == [] and foreground_values([], "iou") == []


def test_foreground_by_line_reads_each_cell_line_apart():
    from cks.viz_diagnose import foreground_by_line

    row = {"collaborator_foreground": {"iou": [0.0, 0.75, 0.5, float("nan"), 0.25],
                                       "cell_types": ["NIH3T3", "HeLa", "RAW264.7", "RAW264.7", "NIH3T3"]}}
    out = foreground_by_line(row, "iou")
    assert list(out) == ["NIH3T3", "HeLa", "RAW264.7"]  # order of first appearance
    assert out == {"NIH3T3": 0.125, "HeLa": 0.75, "RAW264.7": 0.5}  # the NaN field is skipped
    assert foreground_by_line(row, "iou", how="max") == {"NIH3T3": 0.25, "HeLa": 0.75, "RAW264.7": 0.5}
    nan_line = foreground_by_line({"collaborator_foreground": {"iou": [float("nan"), 0.5], "cell_types": ["A", ""]}}, "iou")
    assert list(nan_line) == ["A"] and nan_line["A"] != nan_line["A"]  # all-NaN line reads NaN; unnamed field left out
    assert foreground_by_line({"collaborator_foreground": {"iou": [0.5]}}, "iou") == {}  # lines not recorded
    with pytest.raises(CksDataError):
        foreground_by_line({"collaborator_foreground": {"iou": [0.5], "cell_types": ["A", "B"]}}, "iou")
    with pytest.raises(ValueError):
        foreground_by_line(row, "iou", how="median")
    assert foreground_by_line({}, "iou") == {} and foreground_by_line({"collaborator_foreground": None}, "iou") == {}

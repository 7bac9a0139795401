"""Collect ``cks diagnose`` results of several runs into one rows file (what the results chapter tabulates).

    cks diagnose $CKS_RUNS_DIR/usiigaci_ablation_v2/base_s15 --data usiigaci_nih3t3_phase/train:set17-20 \\
        --true-size --score-threshold 0.6 --out $CKS_RUNS_DIR/diagnose/base_s15
    python benchmarks/diagnostic_rows.py --protocol usiigaci_ablation_v2 \\
        --out results/usiigaci_ablation_v2/pairwise_diagnostics.json base_s15 pairwise_w1

For each run name: ``<diagnose-dir>/<run>/diagnostics.json`` (default ``$CKS_RUNS_DIR/diagnose``) (the diagnostics), ``$CKS_RUNS_DIR/<protocol>/<run>``
(its validation curve, ``metrics.jsonl``) and ``results/<protocol>/<run>.json`` (its setting and command, when the
run was recorded by ``benchmarks/protocol.py``). Each row has the keys :func:`cks.viz_diagnose.diagnostics_markdown`
reads. Paths of this machine are not written.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cks.provenance import git_commit  # noqa: E402

from benchmarks.record import command_line, portable, protocol_record  # noqa: E402


def tuning_curve(run_dir: Path, key: str = "val_ap50") -> dict[str, float]:
    """``{step: validation AP50}`` (or another ``val_*`` key; rounded to 4 digits) from a run's ``metrics.jsonl``."""
    out = {}
    path = run_dir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            rec = json.loads(line) if line.strip() else {}
            if key in rec:
                out[str(rec["step"])] = round(float(rec[key]), 4)
    return out


def preset_and_overrides(command: str, train_keys: bool = True) -> tuple[str, list[str]]:
    """The preset and the ``--set`` overrides of a recorded command (up to its next ``--`` option);
    ``train_keys=False`` drops the ``train.*`` ones (the budget, not the setting). Without ``--preset`` the preset
    is what the command took by default: the ``--model`` name for a training ``benchmarks/protocol.py`` command
    (its rule), else ``base`` (an ``--eval-only`` command trains nothing; the recorded ``cks train`` commands
    without one are from before its default became :data:`cks.cli_train.DEFAULT_PRESETS`)."""
    words = command.split()
    if "--preset" in words[:-1]:
        preset = words[words.index("--preset") + 1]
    elif "protocol.py" in command and "--model" in words[:-1] and "--eval-only" not in words:
        preset = words[words.index("--model") + 1]
    else:
        preset = "base"
    extra = []
    if "--set" in words:
        for w in words[words.index("--set") + 1:]:
            if w.startswith("--"):
                break
            if "=" in w and (train_keys or not w.startswith("train.")):
                extra.append(w)
    return preset, extra


def stopped_row(run_dir: Path) -> dict:
    """A run stopped before its end (no diagnostics): its setting (the preset and the ``--set`` overrides other than
    ``train.*`` from ``command.txt``), the last step it logged and its tuning curves."""
    preset, extra = preset_and_overrides((run_dir / "command.txt").read_text(), train_keys=False)
    last = 0
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            last = max(last, int(json.loads(line).get("step", 0)))
    return {"run": run_dir.name, "config": " + ".join([preset] + [" ".join(extra)] * bool(extra)),
            "stopped_at_step": last, "tuning_ap50_by_step": tuning_curve(run_dir),
            "tuning_dice_by_step": tuning_curve(run_dir, "val_dice")}


def setting(result: dict | None) -> str:
    """The run's preset, the ``--set`` overrides and the seed, read from the result's recorded command."""
    if not result:
        return ""
    preset, extra = preset_and_overrides(result.get("command", ""))
    seed = f"seed {result.get('seed', 0)}"
    return f"{preset} + {' '.join(extra)}, {seed}" if extra else f"{preset}, {seed}"


def diagnose_command(diag: dict, run: str, protocol: str, data: str, out_dir: Path, runs_dir: Path) -> str:
    """The ``cks diagnose`` call that wrote ``diag``: its ``--true-size`` / ``--no-history`` as recorded in the file
    (files written before these were recorded: ``--true-size``, as every such row was made, and ``--no-history``
    when the file holds neither a per-snapshot shape nor a consistency trace) and its ``--out`` folder."""
    true_size = diag.get("true_size", True)
    history = diag.get("history", bool(diag.get("shape_over_training") or diag.get("consistency_trace")))
    return " ".join([f"cks diagnose $CKS_RUNS_DIR/{protocol}/{run} --data {data}"]
                    + ["--true-size"] * bool(true_size) + [f"--score-threshold {diag['score_threshold']}"]
                    + ["--no-history"] * (not history) + ["--training-weights"] * (diag.get("weights") == "training")
                    + [f"--out {portable(str(out_dir.resolve()), runs_dir)}"])


def row(run: str, protocol: str, diagnose_dir: Path, runs_dir: Path, results_dir: Path, data: str) -> dict:
    diag = json.loads((diagnose_dir / run / "diagnostics.json").read_text())
    res_path = results_dir / protocol / f"{run}.json"
    result = protocol_record(json.loads(res_path.read_text())) if res_path.exists() else None
    shape = diag["shape"]
    return {"run": run, "config": setting(result), "step": str(diag["step"]),
            "command": diagnose_command(diag, run, protocol, data, diagnose_dir / run, runs_dir),
            "trained_with": (result or {}).get("command", ""),
            "overall": shape["overall"], "bins": shape["bins"], "count_ratio": shape.get("count_ratio"),
            "crowding": shape.get("crowding"), "weights": diag.get("weights", "model"),
            "collaborator_foreground": diag.get("collaborator_foreground"),
            "tuning_ap50_by_step": tuning_curve(runs_dir / protocol / run),
            "report_ap50": ((result or {}).get("metrics") or {}).get("ap50")}


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="*", help="run names (folders under $CKS_RUNS_DIR/<protocol>)")
    p.add_argument("--protocol", required=True)
    p.add_argument("--diagnose-dir", default=None,
                   help="folder with one `cks diagnose --out` folder per run (default $CKS_RUNS_DIR/diagnose)")
    p.add_argument("--data", default="usiigaci_nih3t3_phase/train:set17-20", help="the split the runs were diagnosed on")
    p.add_argument("--out", required=True)
    p.add_argument("--what", default="", help="one line: what the rows compare")
    p.add_argument("--stopped", nargs="*", default=[],
                   help="runs stopped early, without diagnostics: folders under $CKS_RUNS_DIR/stopped")
    p.add_argument("--results-dir", default=str(ROOT / "results"), help="where the runs' protocol results are")
    a = p.parse_args(argv)
    if not a.runs and not a.stopped:
        p.error("name at least one run (diagnosed) or one --stopped run")
    runs_dir = Path(os.environ.get("CKS_RUNS_DIR", "runs"))
    diagnose_dir = Path(a.diagnose_dir) if a.diagnose_dir else runs_dir / "diagnose"
    rows = [row(r, a.protocol, diagnose_dir, runs_dir, Path(a.results_dir), a.data) for r in a.runs]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rec = {"what": a.what, "data": a.data, "git_commit": git_commit(),
           "command": command_line("diagnostic_rows.py", argv, runs_dir),
           "rows": rows, "stopped": [stopped_row(runs_dir / "stopped" / r) for r in a.stopped]}
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    tmp.replace(out)
    print(f"{len(rows)} rows -> {out}")
    return out


if __name__ == "__main__":
    main()

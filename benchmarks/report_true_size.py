"""A diagnostic, not a result: each run's report AP50 at its own cell-size estimate and at each field's true size.

    python benchmarks/report_true_size.py --protocol usiigaci_points_v2 --models base_8000_seed0 base_8000_seed1

A size-normalised model is scored on the report split at the cell size it estimates itself (``auto``, as the
protocol and ``cks predict`` do). Predicting every report field at its *true* cell size (the masks' median
equivalent diameter, an oracle) separates what the size estimate costs from what the segmentation misses. Both are
scored at the run's own score threshold, the one its protocol chose on the tuning split (``metrics.score_threshold``
of its result file), with :func:`benchmarks.resized_tuning.score_run` (fields at native size).

This reads the report split, so it must choose nothing: no setting, threshold or run may be picked by it. Writes
``results/<protocol>/report_true_size.json``; runs already in that file and not named again are kept as they are
(each run records the command that scored it).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WHAT = ("diagnostic on the REPORT split, NOT a result and used for no choice: each run's report AP50 at the model's "
        "own cell-size estimate ('auto', as the protocol scores it) and at each field's true cell size (median "
        "equivalent diameter of its masks, an oracle), at the run's tuned score threshold, to separate the size "
        "estimate from the segmentation")


def tuned_threshold(results_dir: Path, model: str) -> float:
    """The score threshold the protocol chose for ``model`` on its tuning split.

    Read from ``results_dir/<model>.json`` (``metrics.score_threshold``) or, for a record kept out of the result
    tables, from the file whose ``run.model`` is ``model`` (e.g. a diagnostic nested under ``run``)."""
    from benchmarks.record import protocol_record
    from cks.errors import CksConfigError

    direct = results_dir / f"{model}.json"
    candidates = [direct] if direct.exists() else sorted(results_dir.glob("*.json"))
    for f in candidates:
        try:
            rec = json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        r = protocol_record(rec)
        if r is not None and r.get("model") == model and "score_threshold" in r["metrics"]:
            return float(r["metrics"]["score_threshold"])
    raise CksConfigError(f"no result with a tuned score threshold for {model!r} in {results_dir}: score the run with "
                         "benchmarks/protocol.py first (it chooses the threshold on the tuning split)")


def score_report(run_dir: Path, spec: str, threshold: float) -> dict:
    """``{"score_threshold", "auto": {...}, "true": {...}}`` of one run on ``spec`` (AP50, AP75, Dice, count ratio,
    each field's size error = estimate / true - 1)."""
    from benchmarks.resized_tuning import score_run

    rows = score_run(run_dir, spec, [1.0], ["auto", "true"], threshold)
    keep = ("ap50", "ap75", "dice", "count_ratio", "size_error")
    return {"score_threshold": threshold, **{r["size"]: {k: r[k] for k in keep} for r in rows}}


def main(argv=None) -> Path:
    from benchmarks.protocol import PROTOCOLS
    from benchmarks.record import command_line, git_commit, one_thread, write_benchmark

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--runs-dir", default=os.environ.get("CKS_RUNS_DIR", str(ROOT / "runs")))
    p.add_argument("--results", help="the protocol's results folder (default results/<protocol>)")
    p.add_argument("--out", help="default results/<protocol>/report_true_size.json")
    a = p.parse_args(argv)
    t0 = one_thread()
    proto = PROTOCOLS[a.protocol]
    results_dir = Path(a.results or ROOT / "results" / a.protocol)
    out = Path(a.out or results_dir / "report_true_size.json")
    thresholds = {m: tuned_threshold(results_dir, m) for m in a.models}  # fail before any scoring
    old = json.loads(out.read_text()).get("runs", {}) if out.exists() else {}
    command, commit = command_line("report_true_size.py", argv, a.runs_dir), git_commit()
    runs = dict(old)
    for m in a.models:
        runs[m] = {**score_report(Path(a.runs_dir) / a.protocol / m, proto["report"], thresholds[m]),
                   "command": command, "git_commit": commit}
    rec = {"what": f"{WHAT} ({a.protocol}: {proto['report']})", "protocol": a.protocol, "spec": proto["report"],
           "runs": runs}
    return write_benchmark(out, rec, "report_true_size.py", argv, t0, a.runs_dir)


if __name__ == "__main__":
    main()

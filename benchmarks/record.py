"""Write one result file with provenance: ``results/<protocol>/<model>.json``.

    python benchmarks/record.py --protocol usiigaci_points --model cks_base \
        --run /path/to/run_dir --eval eval.json --note "what differs from the paper"

Collects: the metrics of ``cks evaluate --json`` (``--eval``), the run's config.json, its
metrics.jsonl (validation curve), steps reached, wall time, git commit, hardware (CPU model, cores,
torch version, GPU if any) and the free-text ``--note`` (what differs from the paper).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cks.provenance import git_commit, hardware  # noqa: E402  (re-exported for the other scripts)


def portable(arg: str, runs_dir: Path) -> str:
    """``arg`` with no path of this machine: the runs folder becomes ``$CKS_RUNS_DIR``, a path in the repository
    becomes relative to it, any other absolute path its file name."""
    if not arg.startswith("/"):
        return arg
    path = Path(arg).resolve()
    for base, name in ((Path(runs_dir).resolve(), "$CKS_RUNS_DIR"), (ROOT, ".")):
        if path == base or base in path.parents:
            return str(Path(name) / path.relative_to(base)) if name != "." else str(path.relative_to(base))
    return path.name


def command_line(script: str, argv=None, runs_dir=None) -> str:
    """How a benchmark was called, as one would paste it: ``python benchmarks/<script> ARGS``, every argument
    shell-quoted (``'true*0.8'``) and no path of this machine (:func:`portable`; ``argv`` default ``sys.argv[1:]``,
    ``runs_dir`` default ``$CKS_RUNS_DIR``)."""
    import os
    import shlex

    runs_dir = Path(runs_dir or os.environ.get("CKS_RUNS_DIR") or ROOT / "runs")
    args = argv if argv is not None else sys.argv[1:]

    def quote(arg: str) -> str:  # "$CKS_RUNS_DIR" stays outside single quotes, so a pasted command expands it
        var = "$CKS_RUNS_DIR"
        if arg == var or arg.startswith(var + "/"):
            return f'"{var}"' + (shlex.quote(arg[len(var):]) if arg != var else "")
        return shlex.quote(arg)

    return " ".join(["python", f"benchmarks/{script}"] + [quote(portable(str(x), runs_dir)) for x in args])


def one_thread() -> float:
    """The start of a benchmark's work: torch on ``$OMP_NUM_THREADS`` threads (default 1, so two benchmarks side by
    side use a 2-core machine best) and the wall-clock time now, the ``t0`` of :func:`write_benchmark`."""
    import os
    import time

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    return time.time()


def write_benchmark(out, rec: dict, script: str, argv=None, t0: float | None = None, runs_dir=None) -> Path:
    """Write a benchmark's result ``rec`` to ``out`` (JSON, atomically) with its provenance: the command
    (:func:`command_line`), ``wall_s`` since ``t0``, the git commit and the hardware. Prints and returns the path."""
    import time

    from cks.data.writers import atomic_write_text

    rec = {**rec, "command": command_line(script, argv, runs_dir)}
    if t0 is not None:
        rec["wall_s"] = round(time.time() - t0, 1)
    rec.update(git_commit=git_commit(), hardware=hardware())
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(rec, indent=1) + "\n", out)
    print("->", out)
    return out


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--run", help="run folder (config.json, metrics.jsonl)")
    p.add_argument("--eval", required=True, help="JSON written by `cks evaluate --json`")
    p.add_argument("--note", default="")
    p.add_argument("--reported-on", default="", help="the report split's spec")
    p.add_argument("--tuned-on", default="", help="the tuning split's spec")
    p.add_argument("--command", default="", help="the command lines that produced the run and the evaluation")
    p.add_argument("--commit", default=None, help="commit the run was trained at (default: HEAD)")
    p.add_argument("--cpu-minutes", type=float, default=None, help="measured CPU time of the training process(es)")
    p.add_argument("--wall-s", type=float, default=None, help="wall time of the training (s)")
    a = p.parse_args(argv)
    rec = {"protocol": a.protocol, "model": a.model, "metrics": json.loads(Path(a.eval).read_text()),
           "note": a.note, "command": a.command, "reported_on": a.reported_on, "tuned_on": a.tuned_on, "git_commit": a.commit or git_commit(), "hardware": hardware()}
    if a.run:
        run = Path(a.run)
        rec["config"] = json.loads((run / "config.json").read_text())
        hist = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
        rec["steps"] = max((h["step"] for h in hist), default=0)
        rec["validation_curve"] = [{k: h[k] for k in h if k == "step" or k.startswith("val_") or k == "time_s"}
                                   for h in hist if "val_ap50" in h]
        rec["seed"] = rec["config"]["train"]["seed"]
    if a.cpu_minutes is not None:
        rec["cpu_minutes"] = a.cpu_minutes
    if a.wall_s is not None:
        rec["wall_s"] = a.wall_s
    out = ROOT / "results" / a.protocol / f"{a.model}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1))
    print(out)
    return out


def protocol_record(rec):
    """The protocol record in a result file's JSON: the file itself, or, for a diagnostic kept out of the result
    tables (e.g. ``loss.foreground_from=masks``), the record nested under ``run``; None when neither has metrics."""
    for r in (rec, rec.get("run") if isinstance(rec, dict) else None):
        if isinstance(r, dict) and isinstance(r.get("metrics"), dict):
            return r
    return None


if __name__ == "__main__":
    main()

"""Does a run killed mid-training and resumed end where an uninterrupted run ends? On a protocol's real configuration.

    python benchmarks/resume_check.py --protocol usiigaci_points_v2 --preset table7_a2_b1 --steps 200 \
        --kill-from-step 100 --val --val-every 50 --set loss.pairwise_on=both loss.lambda_b=4

Long runs span working sessions: they are stopped (SIGKILL, at whatever step) and continued with ``cks train
--resume`` from their last checkpoint. ``tests/test_train.py`` checks that a resumed run is bit-exact on a tiny
generated configuration; this script checks it where it matters, on a protocol's training fields with its settings
(crop, schedule, checkpoint interval; with ``--val``, validation on its tuning split as its runs do) and the given
preset. It trains the same run twice side by side, one thread each: ``A`` uninterrupted, ``B`` killed with SIGKILL
once it has logged a loss row after its latest checkpoint and past ``--kill-from-step`` (so between two checkpoints,
as a stopped session leaves a run; e.g. after the prior of Eq. 4 is switched off at half the run) and then continued
with ``--resume``. Checkpoints are written every ``--checkpoint-every`` steps and at the ``train.snapshots`` steps
(4 by default: a quarter of the run apart). The script checks that B was stopped by the kill, between two
checkpoints, and that it continued from its checkpoint (the ``resumed`` marker of ``metrics.jsonl``, with no row at or
before that step after it). It then compares the final checkpoints entry by entry (weights, optimiser state, the
torch, numpy and Python random states, the configuration; not the timings ``wall_s`` / ``cpu_s``) and the logged
loss rows step by step (:func:`cks.run_folder.read_history`, which drops the rows the killed run logged after its
checkpoint). Writes ``results/<protocol>/resume_check.json`` (``--out`` to change it).
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WHAT = ("check, not a result: the same training run twice on the protocol's training fields, A uninterrupted and B "
        "killed with SIGKILL between two checkpoints then continued with --resume; the largest difference over every "
        "entry of the final checkpoints (weights, optimiser state, torch/numpy/Python random states, configuration; "
        "timings left out) and the logged loss rows compared step by step")


def train_command(proto: dict, a, run_dir: Path) -> list[str]:
    """The ``cks train`` command of one copy: the protocol's data and settings, ``--set`` last; validation on the
    protocol's tuning split (``a.val_spec`` to name another) every ``a.val_every`` steps with ``a.val``, else off."""
    sets = [s for s in proto["sets"] if not s.startswith(("train.val_every=", "train.checkpoint_every="))]
    val = a.val
    return [sys.executable, "-m", "cks", "train", "--data", a.train or proto["train"],
            *(["--val", a.val_spec or proto["tune"]] if val else []), "--labels", proto["labels"],
            "--preset", a.preset, "--size", a.size, "--steps", str(a.steps), "--seed", str(a.seed), "--out",
            str(run_dir), "--set", f"train.seed={a.seed}", *sets, f"train.checkpoint_every={a.checkpoint_every}",
            f"train.val_every={a.val_every if val else 10 * a.steps}", *(a.set or [])]


#: checkpoint entries that are timings, not training state: they differ between any two runs
TIMINGS = ("wall_s", "cpu_s")


def _same_tensor(a, b) -> float:
    """0.0 where two tensors are equal element by element (NaN equal to NaN), else the largest absolute difference
    (``inf`` for another dtype or shape, or where one holds a NaN or an infinity the other does not; 1.0 for
    integer and boolean tensors that differ)."""
    import torch

    if a.dtype != b.dtype or a.shape != b.shape:
        return math.inf
    if a.numel() == 0:
        return 0.0
    if not a.is_floating_point():
        return float(bool((a != b).any()))
    a64, b64 = a.double(), b.double()
    same = (a64 == b64) | (torch.isnan(a64) & torch.isnan(b64))
    if bool(same.all()):
        return 0.0
    d = (a64 - b64).abs()[~same]
    return math.inf if bool(torch.isnan(d).any()) else float(d.max())


def tensor_differences(a, b, prefix: str = "") -> dict[str, float]:
    """``{name: difference}`` for every leaf of two nested checkpoint dicts (dicts, lists and tuples walked; names
    joined by ``/``). A torch tensor leaf: :func:`_same_tensor`. A numpy array: 0.0 if equal (NaN equal to NaN),
    else 1.0. A list or tuple of plain values (Python's random state): one leaf, 0.0 if equal, else 1.0. Any other leaf (the optimiser's settings, Python's random state): 0.0 if ``==``, else 1.0. A leaf or
    branch in one checkpoint only, or of another kind in the other: ``inf`` for each leaf under it."""
    import numpy as np
    import torch

    def name(k):
        return f"{prefix}/{k}" if prefix else str(k)

    if (a is None) != (b is None):  # in one checkpoint only: every leaf under it differs
        return {k: math.inf for k in tensor_differences(*(2 * [b if a is None else a]), prefix)}
    if isinstance(a, dict) and isinstance(b, dict):
        out: dict[str, float] = {}
        for k in sorted(set(a) | set(b), key=str):
            out.update(tensor_differences(a.get(k), b.get(k), name(k)))
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if all(isinstance(x, (int, float, str, bool, type(None))) for x in (*a, *b)):  # e.g. Python's random state
            return {prefix: 0.0 if tuple(a) == tuple(b) else 1.0}
        out = {}
        for i in range(max(len(a), len(b))):
            out.update(tensor_differences(a[i] if i < len(a) else None, b[i] if i < len(b) else None, name(i)))
        return out
    kinds = [torch.Tensor if torch.is_tensor(x) else np.ndarray if isinstance(x, np.ndarray) else dict
             if isinstance(x, dict) else list if isinstance(x, (list, tuple)) else object for x in (a, b)]
    if kinds[0] is not kinds[1]:
        return {k: math.inf for k in tensor_differences(a, a, prefix)} or {prefix: math.inf}
    if kinds[0] is torch.Tensor:
        return {prefix: _same_tensor(a, b)}
    if kinds[0] is np.ndarray:
        return {prefix: 0.0 if a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f") else 1.0}
    return {prefix: 0.0 if a == b else 1.0}


def loss_rows(run_dir: Path) -> dict[int, dict[str, float]]:
    """``{step: {loss name: value}}`` of a run's training rows as :func:`cks.run_folder.read_history` keeps them."""
    from cks.run_folder import read_history

    return {int(r["step"]): {k: v for k, v in r.items() if k.startswith("L_") or k == "total"}
            for r in read_history(run_dir) if "total" in r}


def compare_runs(dir_a: Path, dir_b: Path) -> dict:
    """What differs between two finished run folders: tensors of their checkpoints and their loss rows."""
    from cks.checkpoint import load_checkpoint

    ca, cb = load_checkpoint(dir_a), load_checkpoint(dir_b)
    diffs = tensor_differences({k: v for k, v in ca.items() if k not in TIMINGS},
                               {k: v for k, v in cb.items() if k not in TIMINGS})
    parts: dict[str, float] = {}
    for name, d in diffs.items():
        top = name.split("/")[0]
        parts[top] = max(parts.get(top, 0.0), d)
    ra, rb = loss_rows(dir_a), loss_rows(dir_b)
    differing = sorted(s for s in set(ra) | set(rb) if ra.get(s) != rb.get(s))
    return {"steps": [int(ca["step"]), int(cb["step"])], "entries": len(diffs), "max_abs_diff": parts,
            "loss_rows": len(ra), "differing_loss_rows": differing[:20], "n_differing_loss_rows": len(differing),
            "bit_exact": all(d == 0.0 for d in diffs.values()) and not differing}


def main(argv=None) -> dict:
    from benchmarks.protocol import PROTOCOLS
    from benchmarks.record import write_benchmark
    from cks.checkpoint import load_checkpoint

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="usiigaci_points_v2", choices=sorted(PROTOCOLS))
    p.add_argument("--preset", default="base")
    p.add_argument("--train", default=None, help="training data spec (default: the protocol's)")
    p.add_argument("--size", default="convnext_atto")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--kill-after", type=float, default=0.0,
                   help="seconds to wait, once B has logged a row after its latest checkpoint, before killing it")
    p.add_argument("--kill-from-step", type=int, default=0,
                   help="kill B only once it has logged a row past this step (e.g. after the prior is switched off)")
    p.add_argument("--val", action="store_true", help="validate on the protocol's tuning split, as its runs do")
    p.add_argument("--val-every", type=int, default=0, help="with --val: steps between validations")
    p.add_argument("--val-spec", default=None, help="with --val: the data spec to validate on (default: the protocol's "
                   "tuning split)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], help="further overrides, e.g. loss.lambda_b=4")
    p.add_argument("--work", default=None, help="folder for the two runs (default $CKS_RUNS_DIR/resume_check)")
    p.add_argument("--out", default=None, help="result JSON (default results/<protocol>/resume_check.json)")
    a = p.parse_args(argv)
    if a.steps < 2 * a.checkpoint_every:
        p.error("--steps must be at least twice --checkpoint-every (B is killed between two checkpoints)")
    if a.kill_from_step >= a.steps:
        p.error("--kill-from-step must be below --steps")
    if a.val and a.val_every <= 0:
        p.error("--val needs --val-every > 0")
    t0 = time.time()
    proto = PROTOCOLS[a.protocol]
    work = Path(a.work or Path(os.environ.get("CKS_RUNS_DIR") or ROOT / "runs") / "resume_check")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "PYTHONPATH": str(ROOT)}
    dirs = {k: work / k for k in ("A", "B")}
    for d in dirs.values():
        if d.exists():
            import shutil

            shutil.rmtree(d)
        d.parent.mkdir(parents=True, exist_ok=True)
    logs = {k: open(work / f"{k}.log", "w") for k in dirs}
    procs: dict[str, subprocess.Popen] = {}
    try:
        procs = {k: subprocess.Popen(train_command(proto, a, d), cwd=ROOT, env=env, stdout=logs[k],
                                     stderr=subprocess.STDOUT) for k, d in dirs.items()}
        killed = _kill_between_checkpoints(procs["B"], dirs["B"], a.kill_from_step, a.kill_after)
        subprocess.run(train_command(proto, a, dirs["B"]) + ["--resume"], cwd=ROOT, env=env, stdout=logs["B"],
                       stderr=subprocess.STDOUT, check=True)
        if procs["A"].wait() != 0:
            raise SystemExit(f"run A failed; see {work}/A.log")
    finally:
        for proc in procs.values():  # nothing left training after an error
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for f in logs.values():
            f.close()
    resumed = resumed_from(dirs["B"] / "metrics.jsonl")
    if resumed != killed["checkpoint_step"]:
        raise SystemExit(f"run B did not continue from its checkpoint at step {killed['checkpoint_step']} "
                         f"(resumed from {resumed}); see {work}/B.log")
    rec = {"what": WHAT, "protocol": a.protocol, "train": a.train or proto["train"], "preset": a.preset,
           "size": a.size, "seed": a.seed, "planned_steps": a.steps, "overrides": a.set,
           "validation_every": a.val_every if a.val else None, "killed_at": killed, "resumed_from": resumed,
           **compare_runs(dirs["A"], dirs["B"])}
    out = Path(a.out) if a.out else ROOT / "results" / a.protocol / "resume_check.json"
    write_benchmark(out, rec, "resume_check.py", argv, t0)
    print(f"killed after step {killed['last_logged_step']} (checkpoint {killed['checkpoint_step']}); resumed from "
          f"{resumed}; bit-exact: {rec['bit_exact']}; max |A-B| {rec['max_abs_diff']}; loss rows differing "
          f"{rec['n_differing_loss_rows']} of {rec['loss_rows']}")
    return rec


def _kill_between_checkpoints(proc: subprocess.Popen, run_dir: Path, from_step: int, delay: float) -> dict:
    """SIGKILL ``proc`` once its run has logged a row past its latest checkpoint and past ``from_step``; checks that
    the kill, not the end of training, stopped it and that rows were logged after the checkpoint it leaves."""
    from cks.checkpoint import load_checkpoint

    while True:
        if proc.poll() is not None:
            raise SystemExit(f"run B ended before it was killed (exit {proc.returncode}); raise --steps")
        if (run_dir / "checkpoint.pt").exists():
            last = max((r.get("step", 0) for r in _raw_rows(run_dir / "metrics.jsonl")), default=0)
            if last > from_step and last > int(load_checkpoint(run_dir)["step"]):  # the checkpoint read only then
                break
        time.sleep(0.2)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    if proc.wait() != -signal.SIGKILL:
        raise SystemExit(f"run B ended (exit {proc.returncode}) before the kill reached it; raise --steps")
    saved = int(load_checkpoint(run_dir)["step"])
    last = max((r.get("step", 0) for r in _raw_rows(run_dir / "metrics.jsonl")), default=0)
    if not saved < last:
        raise SystemExit(f"run B saved a checkpoint at step {saved} after its last logged row ({last}) before the "
                         "kill: not stopped between two checkpoints; run again")
    return {"checkpoint_step": saved, "last_logged_step": last}


def resumed_from(metrics: Path) -> int | None:
    """The step of the (last) ``resumed`` marker in a ``metrics.jsonl``, or None; also None when a training row at
    or before that step follows the marker (the run restarted instead of continuing)."""
    rows = _raw_rows(metrics)
    marks = [i for i, r in enumerate(rows) if r.get("event") == "resumed"]
    if not marks:
        return None
    step = int(rows[marks[-1]]["step"])
    after = [int(r["step"]) for r in rows[marks[-1] + 1:] if "event" not in r]
    return step if after and min(after) > step else None


def _raw_rows(path: Path) -> list[dict]:
    import json

    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


if __name__ == "__main__":
    main()

"""Does a run killed mid-training and resumed end where an uninterrupted run ends? On a protocol's real configuration.

    python benchmarks/resume_check.py --protocol usiigaci_points_v2 --preset table7_a2_b1 --steps 300 \
        --set loss.pairwise_on=both loss.lambda_b=4

Long runs span working sessions: they are stopped (SIGKILL, at whatever step) and continued with ``cks train
--resume`` from their last checkpoint. ``tests/test_train.py`` checks that a resumed run is bit-exact on a tiny
generated configuration; this script checks it where it matters, on a protocol's training fields with its settings
(crop, schedule, checkpoint interval) and the given preset. It trains the same run twice side by side, one thread
each: ``A`` uninterrupted, ``B`` killed with SIGKILL once it has logged a loss row after its latest checkpoint (so
between two checkpoints, as a stopped session leaves a run; ``--kill-after`` seconds later) and then continued with
``--resume``. It compares the final
checkpoints tensor by tensor (principal, collaborator, optimiser state) and the logged loss rows step by step
(:func:`cks.run_folder.read_history`, which drops the rows the killed run logged after its checkpoint). Validation is
off (``train.val_every`` beyond the run). Writes ``results/<protocol>/resume_check.json`` (``--out`` to change it).
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
        "killed with SIGKILL between two checkpoints then continued with --resume; max |A - B| over every tensor of "
        "the final checkpoints and the logged loss rows compared step by step")


def train_command(proto: dict, a, run_dir: Path) -> list[str]:
    """The ``cks train`` command of one copy: the protocol's data and settings, validation off, ``--set`` last."""
    sets = [s for s in proto["sets"] if not s.startswith(("train.val_every=", "train.checkpoint_every="))]
    return [sys.executable, "-m", "cks", "train", "--data", a.train or proto["train"], "--labels", proto["labels"],
            "--preset", a.preset, "--size", a.size, "--steps", str(a.steps), "--seed", str(a.seed), "--out",
            str(run_dir), "--set", f"train.seed={a.seed}", *sets, f"train.checkpoint_every={a.checkpoint_every}",
            f"train.val_every={10 * a.steps}", *(a.set or [])]


def tensor_differences(a, b, prefix: str = "") -> dict[str, float]:
    """``{name: max |a - b|}`` for every tensor in two nested checkpoint dicts (lists and dicts walked; a tensor
    missing from one side or of another shape is ``inf``). Non-tensor leaves are not compared."""
    import torch

    out: dict[str, float] = {}
    if (a is None) != (b is None):  # in one checkpoint only: every tensor under it differs
        return {k: math.inf for k in tensor_differences(*(2 * [b if a is None else a]), prefix)}
    if torch.is_tensor(a) or torch.is_tensor(b):
        if not (torch.is_tensor(a) and torch.is_tensor(b)) or a.shape != b.shape:
            out[prefix] = math.inf
        elif a.numel():
            out[prefix] = float((a.double() - b.double()).abs().max()) if a.is_floating_point() else float(
                (a != b).any())
        else:
            out[prefix] = 0.0
    elif isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            out.update(tensor_differences(a.get(k), b.get(k), f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        for i in range(max(len(a), len(b))):
            out.update(tensor_differences(a[i] if i < len(a) else None, b[i] if i < len(b) else None,
                                          f"{prefix}/{i}"))
    return out


def loss_rows(run_dir: Path) -> dict[int, dict[str, float]]:
    """``{step: {loss name: value}}`` of a run's training rows as :func:`cks.run_folder.read_history` keeps them."""
    from cks.run_folder import read_history

    return {int(r["step"]): {k: v for k, v in r.items() if k.startswith("L_") or k == "total"}
            for r in read_history(run_dir) if "total" in r}


def compare_runs(dir_a: Path, dir_b: Path) -> dict:
    """What differs between two finished run folders: tensors of their checkpoints and their loss rows."""
    from cks.checkpoint import load_checkpoint

    ca, cb = load_checkpoint(dir_a), load_checkpoint(dir_b)
    diffs = tensor_differences({k: v for k, v in ca.items() if k != "config"},
                               {k: v for k, v in cb.items() if k != "config"})
    parts: dict[str, float] = {}
    for name, d in diffs.items():
        top = name.split("/")[0]
        parts[top] = max(parts.get(top, 0.0), d)
    ra, rb = loss_rows(dir_a), loss_rows(dir_b)
    differing = sorted(s for s in set(ra) | set(rb) if ra.get(s) != rb.get(s))
    return {"steps": [int(ca["step"]), int(cb["step"])], "tensors": len(diffs), "max_abs_diff": parts,
            "loss_rows": len(ra), "differing_loss_rows": differing[:20], "n_differing_loss_rows": len(differing),
            "bit_exact": int(ca["step"]) == int(cb["step"]) and all(d == 0.0 for d in diffs.values()) and not differing}


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
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", default=[], help="further overrides, e.g. loss.lambda_b=4")
    p.add_argument("--work", default=None, help="folder for the two runs (default $CKS_RUNS_DIR/resume_check)")
    p.add_argument("--out", default=None, help="result JSON (default results/<protocol>/resume_check.json)")
    a = p.parse_args(argv)
    if a.steps < 2 * a.checkpoint_every:
        p.error("--steps must be at least twice --checkpoint-every (B is killed after its first checkpoint)")
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
    procs = {k: subprocess.Popen(train_command(proto, a, d), cwd=ROOT, env=env, stdout=logs[k],
                                 stderr=subprocess.STDOUT) for k, d in dirs.items()}
    ckpt_b = dirs["B"] / "checkpoint.pt"
    while not ckpt_b.exists():
        if procs["B"].poll() is not None:
            raise SystemExit(f"run B ended before its first checkpoint (exit {procs['B'].returncode}); see {work}/B.log")
        time.sleep(0.5)
    while True:  # until B has logged a row after its latest checkpoint: killed between two checkpoints
        if procs["B"].poll() is not None:
            raise SystemExit("run B finished before it was killed; lower --kill-after or raise --steps")
        logged = [r.get("step", 0) for r in _raw_rows(dirs["B"] / "metrics.jsonl")]
        if max(logged, default=0) > int(load_checkpoint(dirs["B"])["step"]):
            break
        time.sleep(0.5)
    time.sleep(a.kill_after)
    procs["B"].send_signal(signal.SIGKILL)
    procs["B"].wait()
    saved = int(load_checkpoint(dirs["B"])["step"])
    logged = [r.get("step", 0) for r in _raw_rows(dirs["B"] / "metrics.jsonl")]
    subprocess.run(train_command(proto, a, dirs["B"]) + ["--resume"], cwd=ROOT, env=env, stdout=logs["B"],
                   stderr=subprocess.STDOUT, check=True)
    if procs["A"].wait() != 0:
        raise SystemExit(f"run A failed; see {work}/A.log")
    for f in logs.values():
        f.close()
    rec = {"what": WHAT, "protocol": a.protocol, "train": a.train or proto["train"], "preset": a.preset, "overrides": a.set,
           "killed_at": {"checkpoint_step": saved, "last_logged_step": max(logged, default=0)},
           **compare_runs(dirs["A"], dirs["B"])}
    out = Path(a.out) if a.out else ROOT / "results" / a.protocol / "resume_check.json"
    write_benchmark(out, rec, "resume_check.py", argv, t0)
    print(f"killed after step {rec['killed_at']['last_logged_step']} (checkpoint {saved}); bit-exact: "
          f"{rec['bit_exact']}; max |A-B| {rec['max_abs_diff']}; loss rows differing "
          f"{rec['n_differing_loss_rows']} of {rec['loss_rows']}")
    return rec


def _raw_rows(path: Path) -> list[dict]:
    import json

    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


if __name__ == "__main__":
    main()

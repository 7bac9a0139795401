"""The mask threshold chosen on the tuning split: does 0.5 cost the runs IoU and Dice? (tuning split only)

    python benchmarks/mask_threshold.py --protocol usiigaci_points_v2 --runs base_8000_rerun_seed0 supervised_8000_rerun_seed0

``predict`` draws a cell where the sigmoid of the segmentation head's logit reaches ``mask_threshold`` (0.5, never
tuned by the protocols). For each run folder (``$CKS_RUNS_DIR/<protocol>/<run>``) this predicts the protocol's
*tuning* fields at each candidate mask threshold, with the score threshold re-chosen at each
(:func:`cks.threshold.tune_mask_threshold`, the protocol's F1 objective; each field at the model's own cell-size
estimate, ``size_from="auto"``, as the protocol scores a run without ``--size-from``) and records AP50, AP75, Dice and F1 per candidate. It reads no report field,
so a choice made from it is a tuning-split choice. ``--mask-resampling bilinear`` predicts with
``predict(mask_resampling="bilinear")`` (each cell's mask probabilities resized to the field's resolution before the
threshold) and records the run as ``<run>@bilinear``. Writes ``results/<protocol>/mask_threshold_tuning.json``; runs
already in that file and not named again are kept.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WHAT = ("tuning split only: each run's AP50, AP75, Dice and pooled F1 at IoU 0.5 for several mask thresholds "
        "(predict's mask_threshold; the protocols use 0.5), the score threshold re-chosen on the tuning split at each "
        "(max F1 at IoU 0.5), every field at the model's own cell-size estimate")


def main(argv=None) -> dict:
    from benchmarks.protocol import PROTOCOLS
    from cks.checkpoint import load_model
    from cks.data.writers import atomic_write_text
    from cks.data.spec import load_dataset
    from cks.provenance import git_commit, hardware
    from cks.threshold import MASK_GRID, tune_mask_threshold

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    p.add_argument("--runs", nargs="+", required=True, help="run folders under $CKS_RUNS_DIR/<protocol>")
    p.add_argument("--grid", nargs="+", type=float, default=list(MASK_GRID), help="candidate mask thresholds")
    p.add_argument("--mask-resampling", default="label", choices=["label", "bilinear"],
                   help="predict's mask_resampling (the protocols: label)")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    proto = PROTOCOLS[a.protocol]
    runs_root = Path(os.environ.get("CKS_RUNS_DIR", ROOT / "runs")) / a.protocol
    out_path = ROOT / "results" / a.protocol / "mask_threshold_tuning.json"
    old = json.loads(out_path.read_text()) if out_path.exists() else {"runs": {}}
    tune = load_dataset(proto["tune"], scale=1.0, points="none")
    command = "python benchmarks/mask_threshold.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for run in a.runs:
        t0 = time.time()
        r = tune_mask_threshold(load_model(runs_root / run), tune, grid=a.grid, mask_resampling=a.mask_resampling)
        key = run if a.mask_resampling == "label" else f"{run}@{a.mask_resampling}"
        old["runs"][key] = {"mask_resampling": a.mask_resampling, **r, "command": command, "wall_s": round(time.time() - t0, 1), "git_commit": git_commit()}
        print(key, json.dumps({k: r[k] for k in ("mask_threshold", "score_threshold")}))
        for row in r["table"]:
            print("  " + "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))
    rec = {"what": WHAT, "protocol": a.protocol, "tune": proto["tune"], **{k: v for k, v in old.items() if k == "runs"},
           "hardware": hardware()}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(rec, indent=1) + "\n", out_path)
    return rec


if __name__ == "__main__":
    main()

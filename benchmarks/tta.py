"""Mask test-time augmentation on the tuning split: does averaging orientations sharpen the masks? (tuning only)

    python benchmarks/tta.py --protocol usiigaci_points_v2 --runs tta/supervised_2400_seed0 tta/base_2400_seed0

For each run folder (relative to ``$CKS_RUNS_DIR``) this predicts the protocol's *tuning* fields three ways:
``predict(tta="none")`` (what every protocol does), ``"flips"`` and ``"d4"`` (:mod:`cks.tta`). Each field is
shown at the scale the model's own size estimate gives (found once, without augmentation, and reused) and,
as a second block, at its true cell size. The score threshold is chosen once, on the un-augmented
predictions (max pooled F1 at IoU 0.5, as the protocols), and applied to every arm, so the arms differ in
their masks alone (``tta`` does not change detections or scores); the threshold each arm would choose for
itself is recorded beside it. It reads no report field. Writes ``results/<protocol>/tta_tuning.json``; runs
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

WHAT = ("tuning split only: AP50, AP75, Dice and F1 of each run with predict's tta='none' (the protocols), 'flips' "
        "and 'd4' (mask test-time augmentation, cks.tta; ours), at one score threshold chosen on the un-augmented "
        "predictions (max pooled F1 at IoU 0.5); each field at the scale of the model's own size estimate "
        "('auto') and at its true cell size ('true')")
ARMS = ("none", "flips", "d4")


def score_arms(model, samples, size: str, arms=ARMS) -> dict:
    """``{arm: {ap50, ap75, dice, f1, n_pred, n_gt, predict_s, own_threshold, own_f1}}`` plus the shared threshold."""
    from cks.evaluation import predict_many
    from cks.metrics import evaluate
    from cks.predict import predict, scores_by_label
    from cks.threshold import DEFAULT_GRID, apply_threshold, tune_score_threshold

    if arms[0] != "none":
        raise ValueError(f"the first arm must be 'none' (it finds each field's scale and the shared threshold), got {arms}")
    gts = [s["label"] for s in samples]
    lowest = DEFAULT_GRID[0]
    out, scales, threshold = {}, None, None
    for arm in arms:
        t0 = time.perf_counter()
        if scales is None:  # the un-augmented arm finds each field's scale
            res = predict_many(model, samples, size=size, score_threshold=lowest, tta="none")
            scales = [r[2]["scale"] for r in res]
        else:
            res = [predict(model, s["image"], score_threshold=lowest, scale=sc, tta=arm, return_info=True)
                   for s, sc in zip(samples, scales)]
        secs = time.perf_counter() - t0
        labels, scores = [r[0] for r in res], [scores_by_label(r[1]) for r in res]
        own = tune_score_threshold(labels, scores, gts)
        if threshold is None:
            threshold = own["threshold"]
        cut = [apply_threshold(l, s, threshold) for l, s in zip(labels, scores)]
        m = evaluate([c[0] for c in cut], [c[1] for c in cut], gts)
        f1 = next(row["f1"] for row in own["table"] if abs(row["threshold"] - threshold) < 1e-9)
        out[arm] = {"ap50": round(m["ap50"], 4), "ap75": round(m["ap75"], 4), "dice": round(m["dice"], 4),
                    "f1": round(f1, 4), "n_pred": m["n_pred"], "n_gt": m["n_gt"], "predict_s": round(secs, 1),
                    "own_threshold": own["threshold"], "own_f1": round(own["f1"], 4)}
        print(f"  {size:5s} {arm:6s} " + "  ".join(f"{k} {v}" for k, v in out[arm].items()), flush=True)
    return {"score_threshold": threshold, "scales": [round(float(s), 4) for s in scales], "arms": out}


def main(argv=None) -> dict:
    from benchmarks.protocol import PROTOCOLS
    from cks.checkpoint import load_model
    from cks.data.spec import load_dataset
    from cks.data.writers import atomic_write_text
    from cks.provenance import git_commit, hardware

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    p.add_argument("--runs", nargs="+", required=True, help="run folders relative to $CKS_RUNS_DIR")
    p.add_argument("--sizes", nargs="+", default=["auto", "true"], choices=["auto", "true"])
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    proto = PROTOCOLS[a.protocol]
    runs_root = Path(os.environ.get("CKS_RUNS_DIR", ROOT / "runs"))
    out_path = ROOT / "results" / a.protocol / "tta_tuning.json"
    old = json.loads(out_path.read_text()) if out_path.exists() else {"runs": {}}
    tune = load_dataset(proto["tune"], scale=1.0, points="none")
    command = "python benchmarks/tta.py " + " ".join(argv if argv is not None else sys.argv[1:])
    for run in a.runs:
        run_dir = runs_root / run
        cfg = json.loads((run_dir / "config.json").read_text())
        model = load_model(run_dir)
        model.eval()
        print(run, flush=True)
        t0 = time.time()
        rec = {"run": f"$CKS_RUNS_DIR/{run}", "steps": cfg.get("train", {}).get("steps"),
               "seed": cfg.get("train", {}).get("seed"),
               "sizes": {size: score_arms(model, tune, size) for size in a.sizes}}
        old["runs"][run] = {**rec, "command": command, "wall_s": round(time.time() - t0, 1), "git_commit": git_commit()}
    result = {"what": WHAT, "protocol": a.protocol, "tune": proto["tune"], "runs": old["runs"], "hardware": hardware()}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(result, indent=1) + "\n", out_path)
    return result


if __name__ == "__main__":
    main()

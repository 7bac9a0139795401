"""Where should the cell size at prediction come from: the model, or the image's points? Tuning split only.

    python benchmarks/size_source.py --protocol deepcell_nuclei_v2 --models cks_nuclear_xlong_seed0 cks_nuclear_xlong_seed1

For each trained run of a protocol (``$CKS_RUNS_DIR/PROTOCOL/MODEL``) and each size source, every field of the
protocol's tuning split is predicted with its cell size

* ``model``: estimated by the model (``predict``'s default, the learned size regressor), or
* ``points``: measured at the field's points (``predict(points=...)``, :func:`cks.size.estimate_diameter`): the
  protocol's points, i.e. the nuclear points of a ``nuclei`` protocol, the points a user with a nuclear stain has
  for every new image (and the points the Voronoi-disk baseline draws its disks around).

The score threshold is chosen per source as in ``benchmarks/protocol.py`` (max pooled F1 at IoU 0.5 on the same
split), then pooled AP50 / Dice and each field's size error are recorded. The report split is never read: the
choice is made here, and ``protocol.py --eval-only --size-from points --result-name ...`` scores it once.
Writes ``results/size_estimate/size_source_<protocol>_tune.json``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SOURCES = {"model": "auto", "points": "points"}  # name in the file -> predict_many's size


def compare(model, samples) -> dict:
    """``{source: {"ap50", "dice", "threshold", "n_pred", "n_gt", "size_errors", "within_20pct"}}`` on ``samples``
    (dicts with ``image``, ``label`` and ``points``)."""
    import numpy as np

    from benchmarks.protocol import _predict_all
    from cks.metrics import evaluate
    from cks.threshold import DEFAULT_GRID, apply_threshold, tune_score_threshold

    gts = [s["label"] for s in samples]
    out = {}
    for name, size in SOURCES.items():
        labels, scores, sizes = _predict_all(model, samples, DEFAULT_GRID[0], size)
        tuned = tune_score_threshold(labels, scores, gts)
        cut = [apply_threshold(l, s, tuned["threshold"]) for l, s in zip(labels, scores)]
        r = evaluate([c[0] for c in cut], [c[1] for c in cut], gts)
        err = np.array([z["estimated_diameter"] / z["true_diameter"] - 1 for z in sizes])
        out[name] = {"ap50": round(float(r["ap50"]), 4), "dice": round(float(r["dice"]), 4),
                     "threshold": tuned["threshold"], "n_pred": int(r["n_pred"]), "n_gt": int(r["n_gt"]),
                     "size_errors": {s["name"]: round(float(e), 3) for s, e in zip(samples, err)},
                     "within_20pct": round(float(np.mean(np.abs(err) <= 0.2)), 3)}
    return out


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", required=True)
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--runs-dir", default=os.environ.get("CKS_RUNS_DIR", str(ROOT / "runs")))
    p.add_argument("--out", help="output JSON (default results/size_estimate/size_source_<protocol>_tune.json)")
    a = p.parse_args(argv)
    from benchmarks.protocol import PROTOCOLS
    from benchmarks.record import one_thread, write_benchmark
    from cks.checkpoint import load_model
    from cks.data.spec import load_dataset

    one_thread()
    proto = PROTOCOLS[a.protocol]
    points = "nuclei" if proto["labels"] == "nuclei" else "auto"
    samples = load_dataset(proto["tune"], scale=1.0, points=points)
    t0 = time.time()
    per_run = {}
    for m in a.models:
        per_run[m] = compare(load_model(Path(a.runs_dir) / a.protocol / m), samples)
        print(m, " ".join(f"{k}: AP50 {v['ap50']:.3f} Dice {v['dice']:.3f} sizes within 20 % {v['within_20pct']:.0%}"
                          for k, v in per_run[m].items()), flush=True)
    out = Path(a.out) if a.out else ROOT / "results" / "size_estimate" / f"size_source_{a.protocol}_tune.json"
    rec = {"what": "tuning split only: AP50/Dice with each field's cell size from the model (learned regressor) vs "
                   f"measured at its {points} points; score threshold tuned per source (max pooled F1 at IoU 0.5)",
           "protocol": a.protocol, "split": "tune", "spec": proto["tune"], "points": points, "per_run": per_run}
    write_benchmark(out, rec, "size_source.py", argv, t0, a.runs_dir)
    return out


if __name__ == "__main__":
    main()

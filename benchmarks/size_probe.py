"""What moves the learned cell-size estimate? Two probes on a protocol's tuning fields (issue #9).

    python benchmarks/size_probe.py --protocol usiigaci_points_v2 --models table7_a2_b1_8000_seed0

Most Usiigaci runs over-estimate the cell size of at least three of the five report fields by 1.2-1.6x (the ``sizes`` of
each result JSON in ``results/usiigaci_points_v2``) while it is within 20 % on the four tuning fields. Those report
fields are sparse (labelled cells cover 6-10 % of the field against 12-26 % on the training fields), and per-image
standardisation (:func:`cks.data.io.normalize_image`) divides a sparse field by a smaller standard deviation, so
its cells come out with more contrast. Both can be probed on the tuning split alone, without choosing anything on
the report split:

1. *Contrast*: each tuning field's estimate (:func:`cks.size_model.pass_scales`, the passes of
   :data:`cks.predict.REGRESSOR_PASSES`) with the standardised image multiplied by each ``--contrast`` factor
   (:func:`cks.size_model.size_features`' ``contrast``): does more contrast read as larger cells?
2. *Density*: the estimate on each quadrant of each tuning field, shown as an image of its own (standardised on
   its own, as a small image would be), against the quadrant's labelled foreground fraction and its true median
   diameter; the Spearman rank correlation of the estimate's error with the foreground fraction.

``--pooling image|detections`` probes a regressor re-fitted in memory as training fits it (same images, sizes,
crops and seed; :func:`cks.size_model.refit`) with that pooling of the features, instead of the run's saved one
(``saved``, the default); ``detections`` weights the style vector by where the detector sees cells, so a sparse
field's background does not dominate it. The quadrants' spread (median ``|log2 ratio|``) and their correlation with
the foreground fraction are what may choose a pooling: tuning fields only.

``--split report`` measures the same on the report fields, once, after a choice made on the tuning fields.

Writes ``results/size_estimate/probe_<protocol>_<split>[_<pooling>].json`` (``--out`` to change). A probe: it
chose nothing by itself.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    import numpy as np
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    return float(np.corrcoef(rx, ry)[0, 1])


def estimate(model, image, contrast: float = 1.0) -> float:
    """The regressor's diameter (px of ``image``) after the passes ``predict`` uses, at a contrast factor."""
    from cks.predict import REGRESSOR_PASSES
    from cks.size_model import pass_scales

    scale = pass_scales(model, model.size_model, image, passes=REGRESSOR_PASSES, contrast=contrast)[-1]
    return model.size_model.target / scale


def probe(run_dir: Path, spec: str, contrasts, size_model=None) -> dict:
    """The two probes on the fields of ``spec`` with the run's saved regressor, or with ``size_model``."""
    import numpy as np

    from cks.checkpoint import load_model
    from cks.data.spec import load_dataset
    from cks.size import median_diameter

    model = load_model(run_dir)
    model.size_model = size_model or model.size_model
    if model.size_model is None:
        raise SystemExit(f"{run_dir}: no size_model.json; run its `cks train ... --resume` (command.txt) to fit one")
    fields, quads = [], []
    for s in load_dataset(spec, scale=1.0, points="none"):
        lab, img = np.asarray(s["label"]), np.asarray(s["image"])
        true = median_diameter(lab)
        ratios = {f"{c:g}": round(estimate(model, img, c) / true, 3) for c in contrasts}
        fields.append({"field": s["name"], "true": round(true, 2), "ratio_at_contrast": ratios})
        print(run_dir.name, s["name"], "contrast", " ".join(f"x{c}: {r:.2f}" for c, r in ratios.items()), flush=True)
        h, w = lab.shape
        for y, x in ((0, 0), (0, w // 2), (h // 2, 0), (h // 2, w // 2)):
            q_lab, q_img = lab[y:y + h // 2, x:x + w // 2], img[..., y:y + h // 2, x:x + w // 2]
            n = len(np.unique(q_lab[q_lab > 0]))
            if n < 5:  # too few cells for a median size
                continue
            q_true = median_diameter(q_lab)
            quads.append({"field": s["name"], "y": y, "x": x, "cells": n, "foreground": round(float((q_lab > 0).mean()), 3),
                          "true": round(q_true, 2), "ratio": round(estimate(model, q_img) / q_true, 3)})
            print(run_dir.name, s["name"], f"quadrant ({y}, {x})", f"fg {quads[-1]['foreground']:.2f}",
                  f"ratio {quads[-1]['ratio']:.2f}", flush=True)
    summary = {"median_ratio_at_contrast": {c: round(float(np.median([f["ratio_at_contrast"][c] for f in fields])), 3)
                                            for c in fields[0]["ratio_at_contrast"]} if fields else {},
               "quadrants": len(quads),
               "fields_within_20pct": sum(abs(f["ratio_at_contrast"].get("1", 1.0) - 1) <= 0.2 for f in fields),
               "quadrant_median_abs_log2": round(float(np.median([abs(np.log2(q["ratio"])) for q in quads])), 3)
               if quads else None,
               "spearman_foreground_vs_ratio": round(spearman([q["foreground"] for q in quads],
                                                              [q["ratio"] for q in quads]), 3) if len(quads) > 2 else None}
    return {"summary": summary, "fields": fields, "quadrants": quads}


def fitted(runs_dir, protocol: str, model: str, pooling: str):
    """None for ``pooling="saved"``; else the run's regressor re-fitted with ``pooling`` as training fits it."""
    if pooling == "saved":
        return None
    import json

    from benchmarks.protocol import PROTOCOLS
    from cks.size_model import refit

    run = Path(runs_dir) / protocol / model
    supervised = json.loads((run / "config.json").read_text()).get("loss", {}).get("mode") == "supervised"
    sm = refit(run, PROTOCOLS[protocol]["train"], "masks" if supervised else PROTOCOLS[protocol]["labels"],
               pooling=pooling)
    print(model, f"{pooling} pooling: leave-one-image-out error x{2 ** sm.cv_log2_error:.3f} per crop", flush=True)
    return sm


def main(argv=None):
    from benchmarks.protocol import PROTOCOLS
    from benchmarks.record import one_thread, write_benchmark
    from cks.size_model import POOLINGS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--contrast", nargs="+", type=float, default=[0.7, 1.0, 1.25, 1.5], metavar="C",
                   help="factors on the standardised image (default 0.7 1 1.25 1.5)")
    p.add_argument("--runs-dir", default=os.environ.get("CKS_RUNS_DIR", str(ROOT / "runs")))
    p.add_argument("--pooling", choices=["saved", *POOLINGS], default="saved",
                   help="the run's saved regressor (default), or one re-fitted in memory with this pooling")
    p.add_argument("--split", choices=["tune", "report"], default="tune",
                   help="the protocol's tuning fields (default) or, once a choice is made, its report fields")
    p.add_argument("--out", help="default results/size_estimate/probe_<protocol>_<split>[_<pooling>].json")
    a = p.parse_args(argv)
    if any(not c > 0 for c in a.contrast):
        p.error(f"--contrast factors must be > 0, got {a.contrast}")
    t0 = one_thread()
    spec = PROTOCOLS[a.protocol][a.split]
    runs = {m: probe(Path(a.runs_dir) / a.protocol / m, spec, a.contrast, fitted(a.runs_dir, a.protocol, m, a.pooling))
            for m in a.models}
    res = {"what": f"learned cell-size estimate / true median diameter on the {a.split} fields: at contrast factors on "
                   "the standardised image, and per quadrant against its foreground fraction",
           "protocol": a.protocol, "split": a.split, "spec": spec, "contrast": a.contrast, "pooling": a.pooling,
           "per_run": runs}
    tail = "" if a.pooling == "saved" else f"_{a.pooling}"
    out = Path(a.out or ROOT / "results" / "size_estimate" / f"probe_{a.protocol}_{a.split}{tail}.json")
    write_benchmark(out, res, "size_probe.py", argv, t0, a.runs_dir)
    for m, r in runs.items():
        print(m, r["summary"])
    return out


if __name__ == "__main__":
    main()

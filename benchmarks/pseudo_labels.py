"""Write a trained run's own predictions on its training fields as instance masks (self-training, ours).

Not in the paper. The second round of a self-training experiment (issue #9, session 35): a CKS run trained from
points predicts every training field (its own cell-size estimate, its tuned score threshold; no masks are read),
and the masks it draws become the labels of a fine-tune with the supervised loss
(``benchmarks/protocol.py --train <folder> --labels masks --set train.init_principal=...``).

The folder has the Usiigaci layout, so every reader and spec of cks takes it as it takes the shared data::

    OUT/<sample name>/raw.tif             the training image as read (float32)
    OUT/<sample name>/instances_ids.png   the run's instance masks (uint16, 0 = background)
    OUT/pseudo_labels.json                what wrote them: run, spec, threshold, cells per field

Example (repository root)::

    python benchmarks/pseudo_labels.py --run "$CKS_RUNS_DIR"/usiigaci_points_v2/base_8000_detpool_seed0 \\
        --data usiigaci_nih3t3_phase/train:set1-16 --score-threshold 0.7 \\
        --out "$CKS_RUNS_DIR"/pseudo_labels/base_8000_detpool_seed0
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write_pseudo_labels(run: Path, spec: str, out: Path, score_threshold: float) -> dict:
    """Predict every sample of ``spec`` with the model of ``run`` and write the Usiigaci-layout folder ``out``.

    Returns the summary written to ``out/pseudo_labels.json`` (per field: predicted cells, the size estimate).
    """
    import tifffile
    from PIL import Image

    from cks.checkpoint import load_model
    from cks.data.spec import load_dataset
    from cks.evaluation import predict_many

    model = load_model(run)
    samples = load_dataset(spec, scale=1.0, points="none")
    results = predict_many(model, samples, size="auto", score_threshold=score_threshold)
    fields = []
    for s, (label, _table, info) in zip(samples, results):
        folder = out / s["name"]
        folder.mkdir(parents=True, exist_ok=True)
        if label.max() > np.iinfo(np.uint16).max:
            raise SystemExit(f"{s['name']}: {label.max()} cells do not fit a 16-bit label image")
        tifffile.imwrite(folder / "raw.tif", np.asarray(s["image"], np.float32))
        Image.fromarray(label.astype(np.uint16)).save(folder / "instances_ids.png")
        fields.append({"name": s["name"], "cells": int(len(np.unique(label)) - 1),
                       "diameter": info.get("diameter"), "diameter_source": info.get("diameter_source")})
    summary = {"run": run.name, "spec": spec, "score_threshold": score_threshold, "fields": fields,
               "what": "self-training labels (ours, not the paper's): the run's own masks on its training fields"}
    (out / "pseudo_labels.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a run folder (cks train --out)")
    p.add_argument("--data", required=True, help="data-set spec of the fields to label (the run's training fields)")
    p.add_argument("--out", required=True, help="folder to write (Usiigaci layout)")
    p.add_argument("--score-threshold", type=float, required=True,
                   help="keep detections at or above this score (the run's tuned threshold: its result's metrics)")
    a = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    summary = write_pseudo_labels(Path(a.run), a.data, Path(a.out), a.score_threshold)
    n = [f["cells"] for f in summary["fields"]]
    print(f"{len(n)} fields, {sum(n)} cells ({min(n)}-{max(n)} per field) -> {a.out}")
    return summary


if __name__ == "__main__":
    main()

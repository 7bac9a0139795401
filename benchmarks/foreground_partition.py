"""Is a run's foreground good enough to give cells their shape? Split it into cells from the points and score that.

    python benchmarks/foreground_partition.py --name usiigaci_v2 --runs $CKS_RUNS_DIR/usiigaci_points_v2/cks_xlong_seed0 ...
    python benchmarks/foreground_partition.py --name deepcell_nuclei_v2 --protocol deepcell_nuclei_v2 --runs ...

CKS hands shape to the principal through the collaborator's image-level foreground ``M_c`` (L_S, Eq. 8). This
separates "the foreground has no cell shape" from "the principal does not learn the shape the foreground has":
on a protocol's tuning split (default Usiigaci train/set17-20), every field at its true cell size
(``size.diameter`` px, from the masks), each foreground is cut into cells by a flood fill from the protocol's points
(the true mask centroids; for ``deepcell_nuclei_v2`` the points found in the nuclear channel, as CKS was trained)
(:func:`cks.losses.geodesic.geodesic_partition`, 8-connected, reach 1.5 cell diameters) and scored as
instances (AP50 / AP75 / Dice with :func:`cks.metrics.evaluate`, every cell score 1):

* ``true_fg``: the TRUE foreground (label > 0) cut this way: what a perfect collaborator would offer;
* ``collaborator``: the run's ``M_c >= 0.5`` cut this way;
* ``principal``: the run's own predicted cells (score threshold 0.5);
* ``disks``: Voronoi-clipped disks of radius 0.5 cell diameters around the same points (no image);
* ``collaborator_pixels``: precision and recall of ``M_c >= 0.5`` against the true foreground (pixels, all fields),
  its pixel IoU, the fraction of its false-positive pixels within 0.2 cell diameters of a true cell (at its outline,
  not debris far from any cell), and (``eroded``) the cut scored after shrinking ``M_c`` by 1, 2, 3 px: if a band of
  constant width were all that is wrong with it, this would recover the cells.

Writes ``results/foreground_partition/<name>.json``. What differs from the paper: 16 Usiigaci fields,
random init, a few thousand CPU steps (see each run's config); a diagnostic, not a method.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REACH = 1.5  # cell diameters
DISK = 0.5   # cell diameters
NEAR = 0.2   # cell diameters: a false-positive pixel of M_c this close to a true cell is "at a cell's outline"
ERODE = (1, 2, 3)  # px at the training scale: M_c shrunk by this much, then cut (a band of constant width removed)


def partition(fg, points, reach_px: int):
    """Flood fill of ``fg [H, W]`` (bool numpy) from ``points [N, 2]`` (y, x): an int32 label image."""
    import numpy as np
    import torch

    from cks.losses.geodesic import geodesic_partition

    lab = geodesic_partition(torch.from_numpy(np.asarray(fg, bool))[None], torch.as_tensor(points, dtype=torch.float32),
                             torch.zeros(len(points), dtype=torch.long), reach_px)[0]
    return lab.numpy().astype(np.int32)


def score(preds, gts) -> dict:
    """AP50 / AP75 / Dice of label images with every cell scored 1."""
    import numpy as np

    from cks.metrics import evaluate

    scores = [{int(i): 1.0 for i in np.unique(p) if i > 0} for p in preds]
    m = evaluate(preds, scores, gts)
    return {"ap50": round(m["ap50"], 4), "ap75": round(m["ap75"], 4), "dice": round(m["dice"], 4),
            "n_pred": m["n_pred"], "n_gt": m["n_gt"]}


def score_run(run, tune, points: str = "centroids") -> dict:
    import numpy as np
    import torch
    from scipy import ndimage

    from cks.baselines import voronoi_disks
    from cks.checkpoint import load_checkpoint, load_model
    from cks.data.readers import rescale_sample
    from cks.run_maps import _collaborator, _image_tensor
    from cks.points import centroids
    from cks.predict import predict
    from cks.size import median_diameter

    model = load_model(run)
    ck = load_checkpoint(run)
    col = _collaborator(ck)
    d = float(model.cfg.size.diameter)
    reach = max(1, round(REACH * d))
    out = {k: ([], []) for k in ("true_fg", "collaborator", "principal", "disks")}
    eroded = {k: ([], []) for k in ERODE}  # M_c >= 0.5 eroded by k px before the cut: is the band all that is wrong?
    px = {"tp": 0, "fp": 0, "fn": 0, "fp_near": 0}  # M_c >= 0.5 against the true foreground, pixels
    for s in tune:
        r = rescale_sample(s, d / median_diameter(s["label"]))
        gt = np.asarray(r["label"]).astype(np.int32)
        pts = centroids(gt)[1] if points == "centroids" else np.asarray(r["points"], np.float64).reshape(-1, 2)
        labs = {"true_fg": partition(gt > 0, pts, reach),
                "principal": predict(model, r["image"], diameter=d, score_threshold=0.5)[0].astype(np.int32),
                "disks": voronoi_disks(pts, gt.shape, DISK * d).astype(np.int32)}
        if col is not None:
            with torch.no_grad():
                ct = torch.tensor([max(int(s.get("cell_type", 0) or 0), 0)])
                z = col(_image_tensor(r["image"], 1.0)[None], ct)["fg_logits"][0].numpy()
            labs["collaborator"] = partition(z >= 0, pts, reach)
            f, g = z >= 0, gt > 0
            for k in ERODE:
                eroded[k][0].append(partition(ndimage.binary_erosion(f, iterations=k), pts, reach))
                eroded[k][1].append(gt)
            near = ndimage.distance_transform_edt(~g) <= NEAR * d
            px["tp"] += int((f & g).sum())
            px["fp"] += int((f & ~g).sum())
            px["fn"] += int((~f & g).sum())
            px["fp_near"] += int((f & ~g & near).sum())
        for k, v in labs.items():
            out[k][0].append(v)
            out[k][1].append(gt)
    tp, fp, fn = px["tp"], px["fp"], px["fn"]
    fg = None if col is None else {
        "precision": round(tp / max(tp + fp, 1), 4), "recall": round(tp / max(tp + fn, 1), 4),
        "false_positive_near_cells": round(px["fp_near"] / max(fp, 1), 4), "iou": round(tp / max(tp + fp + fn, 1), 4),
        "eroded": {str(k): score(*v) for k, v in eroded.items()}}
    return {"step": int(ck.get("step", 0)), "collaborator_pixels": fg,
            **{k: (score(*v) if v[0] else None) for k, v in out.items()}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="results/foreground_partition/<name>.json")
    p.add_argument("--runs", nargs="+", required=True, help="run folders (CKS runs; supervised ones have no M_c)")
    p.add_argument("--protocol", default="usiigaci_points_v2", help="whose tuning split and points (benchmarks/protocol.py)")
    a = p.parse_args(argv)
    from benchmarks.protocol import PROTOCOLS
    from cks.data.spec import load_dataset
    from benchmarks.record import one_thread, write_benchmark

    t0 = one_thread()
    proto = PROTOCOLS[a.protocol]
    spec = proto["tune"]
    points = "nuclei" if proto["labels"] == "nuclei" else "centroids"
    tune = load_dataset(spec, scale=1.0, points="nuclei" if points == "nuclei" else "none")
    rows = {}
    for run in a.runs:
        rows[Path(run).name] = score_run(run, tune, points)
        print(Path(run).name, rows[Path(run).name], flush=True)
    res = {"what": f"cells from each foreground by a flood fill from the {'nuclear points' if points == 'nuclei' else 'true centroids'} "
                   f"(reach {REACH:g} cell diameters), tuning split at the true cell size; every cell scored 1",
           "protocol": a.protocol, "tune": spec, "points": points,
           "reach_rel": REACH, "disk_radius_rel": DISK, "near_rel": NEAR, "runs": rows}
    write_benchmark(ROOT / "results" / "foreground_partition" / f"{a.name}.json", res, "foreground_partition.py",
                    argv, t0)
    return res


if __name__ == "__main__":
    main()

"""Classical point baselines on a set with masks: tune on the tuning split, report once on the report split.

    python benchmarks/point_baselines.py --tune usiigaci_nih3t3_phase/train:set17-20 \
        --report usiigaci_nih3t3_phase/val:set46-50 --protocol usiigaci_points

    python benchmarks/point_baselines.py --points nuclei --protocol deepcell_nuclei \
        --tune deepcell2016_covertlab:<val split> --report deepcell2016_covertlab:<test split>
    (``--split-tune val --split-report test`` take the named splits of cks.data.registry.SPLITS)

``--methods geodesic_disks`` runs only the named baselines (each writes its own file; the others are left as
they are).

Points are the mask centroids (the paper's LIVECell protocol) or, with ``--points nuclei``, detected on
the nuclear channel (the A431 protocol). The disk radius r of
:func:`cks.baselines.voronoi_disks` and the watershed's ``max_radius``/``smooth`` are chosen by instance
Dice on the tuning split (these methods give no scores, so AP ranks by label order; Dice is the
metric they can be judged on). The same holds for :func:`cks.baselines.geodesic_disks` (ours: disk areas taken
along the image; radius and ``beta`` chosen the same way). Writes ``results/<protocol>/<method>.json``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.record import command_line  # noqa: E402
from cks.provenance import git_commit, hardware  # noqa: E402
from cks.bootstrap import evaluate_with_intervals  # noqa: E402
from cks.baselines import constant_scores, geodesic_disks, seeded_watershed, voronoi_disks  # noqa: E402
from cks.data.spec import load_dataset  # noqa: E402
from cks.metrics import evaluate  # noqa: E402


def run(method, samples, intervals: bool = False, **kw):
    labs = []
    for s in samples:
        if method == "voronoi_disks":
            labs.append(voronoi_disks(s["points"], s["label"].shape, **kw))
        elif method == "geodesic_disks":
            labs.append(geodesic_disks(s["image"], s["points"], **kw))
        else:
            labs.append(seeded_watershed(s["image"], s["points"], **kw))
    scores, gts = [constant_scores(l) for l in labs], [s["label"] for s in samples]
    return evaluate_with_intervals(labs, scores, gts) if intervals else evaluate(labs, scores, gts)


GRIDS = {"voronoi_disks": {"radius": [10, 15, 20, 25, 30, 35, 40, 50]},
         "seeded_watershed": {"max_radius": [25, 40, 60], "smooth": [1.0, 2.0, 4.0]},
         "geodesic_disks": {"radius": [10, 15, 20, 25, 30, 35, 40, 50], "beta": [0.0, 1.5, 3.0, 6.0]}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tune", required=True)
    p.add_argument("--report", required=True)
    p.add_argument("--protocol", required=True)
    p.add_argument("--points", choices=["centroid", "nuclei"], default="centroid")
    p.add_argument("--split-tune", help="named split of the --tune data set (e.g. val)")
    p.add_argument("--split-report", help="named split of the --report data set (e.g. test)")
    p.add_argument("--methods", nargs="+", choices=sorted(GRIDS), default=sorted(GRIDS), help="baselines to run")
    a = p.parse_args(argv)
    tune = load_dataset(a.tune, split=a.split_tune, points=a.points)
    report = load_dataset(a.report, split=a.split_report, points=a.points)
    for method in a.methods:
        grid = GRIDS[method]
        t0 = time.time()
        keys = list(grid)
        scored = []
        for values in itertools.product(*grid.values()):
            kw = dict(zip(keys, values))
            scored.append((run(method, tune, **kw)["dice"], kw))
        best_dice, best = max(scored, key=lambda x: x[0])
        r = run(method, report, intervals=True, **best)
        rec = {"protocol": a.protocol, "model": method,
               "metrics": {k: r[k] for k in ("ap50", "ap75", "map", "dice", "n_gt", "n_pred", "n_images", "ci95")},
               "tuned_on": a.tune + (f" ({a.split_tune} split)" if a.split_tune else ""),
               "reported_on": a.report + (f" ({a.split_report} split)" if a.split_report else ""), "tuned_params": best, "tuning_dice": best_dice,
               "tuning_grid": [{"dice": d, **kw} for d, kw in scored],
               "note": (f"points = {'mask centroids' if a.points == 'centroid' else 'LoG detections on the nuclear channel'}"
                        " at native resolution; no scores, so AP ranks by label order"),
               "command": command_line("point_baselines.py", argv),
               "git_commit": git_commit(), "hardware": hardware(), "wall_s": round(time.time() - t0, 1)}
        out = ROOT / "results" / a.protocol / f"{method}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rec, indent=1))
        print(f"{method}: tuned {best} (tuning Dice {best_dice:.3f}) -> report AP50 {r['ap50']:.3f} "
              f"Dice {r['dice']:.3f} ({out})")


if __name__ == "__main__":
    main()

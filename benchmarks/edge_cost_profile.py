"""What does the image-affinity term L_PW charge for a mask edge off the annotated outline? Model-free (no report field).

    python benchmarks/edge_cost_profile.py --protocol usiigaci_points_v2 --thetas 0.075 0.15 0.3 0.6

``L_PW`` (:mod:`cks.losses.pairwise`, ours) weights each pair of neighbouring pixels by
``w = exp(-|I_i - I_j| / theta)``: an edge of the foreground costs ``w`` per cut pair, so it is cheap where the image
has an edge. This script takes the *annotated* masks of a protocol's tuning (and training) fields, rescales each
field so its cells are ``--diameter`` px across (the training scale, by its true median equivalent diameter), moves
the outline in and out by ``k`` px and reports the mean pair weight across the moved outline at each
``loss.pairwise_theta`` (:func:`cks.boundary_profile.edge_cost_profile`). ``relative`` is the cost per cut pair at
``k`` over the cost on the annotated outline: on phase contrast an edge in the bright halo just outside a cell
(``k`` = 2-4) costs this many times one on the outline. It shows what ``theta`` changes; it fits and chooses nothing.
Writes ``results/<protocol>/edge_cost_profile.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WHAT = ("model-free: the mean L_PW pair weight w = exp(-|dI| / theta) across the annotated foreground outline moved "
        "k px in (k < 0) or out (k > 0), each field rescaled by its true median cell diameter to the training cell "
        "size; 'relative' = cost per cut pair at k / cost on the outline (k = 0); tuning and training fields only, "
        "no model, chooses nothing")


def main(argv=None) -> dict:
    from benchmarks.protocol import PROTOCOLS
    from cks.boundary_profile import edge_cost_profile
    from cks.config import LossConfig, SizeConfig
    from benchmarks.record import write_benchmark
    from cks.data.spec import load_dataset
    from cks.size import median_diameter

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    p.add_argument("--splits", nargs="+", default=["tune", "train"], choices=["tune", "train"],
                   help="which of the protocol's splits to read (never the report split)")
    p.add_argument("--thetas", nargs="+", type=float, default=[0.075, 0.15, LossConfig().pairwise_theta, 0.6])
    p.add_argument("--dilation", type=int, default=LossConfig().pairwise_dilation)
    p.add_argument("--offsets", nargs=2, type=int, default=[-3, 6], metavar=("FIRST", "LAST"),
                   help="outline moves k = FIRST..LAST px at the training scale (0 must be in the range)")
    p.add_argument("--diameter", type=float, default=SizeConfig().diameter, help="model cell size, px")
    a = p.parse_args(argv)
    if not a.offsets[0] <= 0 <= a.offsets[1]:
        p.error(f"--offsets {a.offsets[0]} {a.offsets[1]} must include 0 (the annotated outline)")
    if not a.diameter > 0:
        p.error(f"--diameter must be > 0, got {a.diameter}")
    a.thetas = list(dict.fromkeys(a.thetas))  # a repeated theta once
    proto = PROTOCOLS[a.protocol]
    rec = {"what": WHAT, "protocol": a.protocol, "diameter": a.diameter, "dilation": a.dilation, "splits": {}}
    t0 = time.time()
    offsets = range(a.offsets[0], a.offsets[1] + 1)
    for split in a.splits:
        samples = load_dataset(proto[split], scale=1.0, points="none")
        samples = [s for s in samples if np.asarray(s["label"]).max() > 0]  # a field without cells has no outline
        images = [np.asarray(s["image"]) for s in samples]
        labels = [np.asarray(s["label"]) for s in samples]
        scales = [a.diameter / median_diameter(lab) for lab in labels]
        rows = {}
        for theta in a.thetas:
            r = edge_cost_profile(images, labels, scales, theta=theta, dilation=a.dilation, offsets=offsets)
            rows[f"theta{theta:g}"] = {"theta": theta, "offset": r["offset"],
                                       "mean_weight": [round(v, 4) for v in r["mean_weight"]],
                                       "relative": [round(v, 3) for v in r["relative"]], "pairs": r["pairs"]}
            print(split, f"theta={theta:g}", "relative:", rows[f"theta{theta:g}"]["relative"], flush=True)
        rec["splits"][split] = {"spec": proto[split], "n_fields": len(samples),
                                "scales": [round(float(sc), 4) for sc in scales], "rows": rows}
    out = write_benchmark(ROOT / "results" / a.protocol / "edge_cost_profile.json", rec, "edge_cost_profile.py", argv, t0)
    return json.loads(out.read_text())


if __name__ == "__main__":
    main()

"""Model-free: how much of the cells' shape does the geodesic prior carry? (issue #9, tuning split only)

    python benchmarks/prior_shape.py --protocol usiigaci_points_v2 --beta 0 1.5 3 6 12

Every tuning field is rescaled so that its cells have the target size (32 px, the median equivalent diameter of its
masks: the scale training shows it at), and each mask centroid gets the region the prior of Eq. 4 would draw
around it: :func:`cks.baselines.geodesic_disks` with the area of a disk of half the target diameter, for each
``beta`` (0: a disk, the paper's prior; > 0: ``loss.prior_shape = "geodesic"``, the distance taken along the image
through dark pixels). Scored against the masks: AP50, Dice, the matched cells' median IoU and the median solidity
(the true cells' for comparison). Nothing is learned; ``beta`` for ``loss.prior_geodesic_beta`` was chosen here.
Writes ``results/<protocol>/prior_shape_tuning.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.protocol import PROTOCOLS  # noqa: E402
from benchmarks.record import command_line  # noqa: E402
from cks.baselines import constant_scores, geodesic_disks  # noqa: E402
from cks.data.readers import rescale_sample  # noqa: E402
from cks.data.spec import load_dataset  # noqa: E402
from cks.matched_shape import shape_diagnostics, summarise  # noqa: E402
from cks.metrics import evaluate  # noqa: E402
from cks.points import centroids  # noqa: E402
from cks.provenance import git_commit, hardware  # noqa: E402
from cks.size import median_diameter  # noqa: E402

TARGET = 32.0


def fields_at_true_size(spec: str, target: float = TARGET) -> list[dict]:
    """The spec's fields, each rescaled as training rescales it (:func:`cks.data.readers.rescale_sample`) so that its
    masks' median equivalent diameter is ``target`` px, with the rescaled masks' centroids as points."""
    out = []
    for s in load_dataset(spec, scale=1.0, points="none"):
        r = rescale_sample(s, target / median_diameter(s["label"]))
        out.append(dict(r, points=centroids(r["label"])[1]))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", default="usiigaci_points_v2", choices=sorted(PROTOCOLS))
    p.add_argument("--beta", type=float, nargs="+", default=[0.0, 1.5, 3.0, 6.0, 12.0])
    a = p.parse_args(argv)
    t0 = time.time()
    spec = PROTOCOLS[a.protocol]["tune"]
    fields = fields_at_true_size(spec)
    rows = []
    for beta in a.beta:
        labs = [geodesic_disks(f["image"], f["points"], TARGET / 2, beta) for f in fields]
        m = evaluate(labs, [constant_scores(l) for l in labs], [f["label"] for f in fields])
        shape = summarise(shape_diagnostics(labs, [f["label"] for f in fields]))["overall"]
        rows.append({"beta": beta, "ap50": round(m["ap50"], 4), "dice": round(m["dice"], 4),
                     **{k: shape[k] for k in ("iou_median", "solidity_pred_median", "solidity_true_median")}})
        print(rows[-1], flush=True)
    rec = {"what": ("tuning split only, no model: the region of pi (D/2)^2 px geodesically nearest each mask centroid "
                    "(cks.baselines.geodesic_disks) on every field at its true cell size D = 32 px; beta 0 = disks"),
           "protocol": a.protocol, "spec": spec, "target": TARGET, "rows": rows,
           "command": command_line("prior_shape.py", argv),
           "git_commit": git_commit(), "hardware": hardware(), "wall_s": round(time.time() - t0, 1)}
    out = ROOT / "results" / a.protocol / "prior_shape_tuning.json"
    out.write_text(json.dumps(rec, indent=1))
    print(out)


if __name__ == "__main__":
    main()

"""Add bootstrap intervals to a recorded result, from a re-evaluation of the same predictions.

    cks evaluate --pred PRED --gt SPEC --json eval.json --bootstrap 1000
    python benchmarks/add_intervals.py results/usiigaci_points/supervised.json eval.json

The point metrics of the new evaluation must equal the recorded ones (same predictions, same ground
truth); only ``metrics.ci95`` is added. Refuses otherwise, so a result is never silently replaced.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def main(argv=None) -> None:
    result_path, eval_path = (Path(p) for p in (argv or sys.argv[1:]))
    rec, new = json.loads(result_path.read_text()), json.loads(eval_path.read_text())
    for k in ("ap50", "ap75", "map", "dice", "n_gt", "n_pred"):
        old = rec["metrics"][k]
        if not math.isclose(float(old), float(new[k]), rel_tol=1e-9, abs_tol=1e-12):
            raise SystemExit(f"{result_path}: {k} recorded {old} but re-evaluated {new[k]}; not the same predictions")
    rec["metrics"]["ci95"] = new["ci95"]
    result_path.write_text(json.dumps(rec, indent=1))
    print(f"{result_path}: AP50 {rec['metrics']['ap50']:.3f} {new['ci95']['ap50']}, Dice {rec['metrics']['dice']:.3f} "
          f"{new['ci95']['dice']}")


if __name__ == "__main__":
    main()

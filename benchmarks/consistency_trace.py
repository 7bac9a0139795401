"""Why does a CKS run collapse? The principal's masks and the collaborator's M_c on the true cells, snapshot by snapshot.

    python benchmarks/consistency_trace.py --name usiigaci_ablation_v2 \
        --runs $CKS_RUNS_DIR/usiigaci_ablation_v2/table5_entropy_principal_seed1 \
               $CKS_RUNS_DIR/usiigaci_ablation_v2/table7_a1_b2_seed1 ...

For each run folder (its ``snapshots/step_*.pt``), on a protocol's tuning split (default Usiigaci train/set17-20),
every field rescaled so its cells (from the masks) have ``size.diameter`` px as in training:
:func:`cks.trace.consistency_trace` (the mean of each instance mask on its own cell and on its neighbours' cells,
the collaborator's M_c on cells and background, whether the prior of Eq. 4 was still on). The principal runs at
the true centroids, as in training from centroid points.

Writes ``results/consistency_trace/<name>.json``. What differs from the paper: 16 Usiigaci training fields,
convnext_atto from random init, 800 CPU steps (each run's config); a diagnostic, not a method.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="results/consistency_trace/<name>.json")
    p.add_argument("--runs", nargs="+", required=True, help="run folders with snapshots")
    p.add_argument("--protocol", default="usiigaci_ablation_v2", help="whose tuning split (benchmarks/protocol.py)")
    a = p.parse_args(argv)
    from benchmarks.protocol import PROTOCOLS
    from benchmarks.record import one_thread, write_benchmark
    from cks.config import Config
    from cks.checkpoint import load_checkpoint
    from cks.data.spec import load_dataset
    from cks.trace import consistency_trace

    t0 = one_thread()
    spec = PROTOCOLS[a.protocol]["tune"]
    tune = load_dataset(spec, scale=1.0, points="none")
    runs = {}
    for run in a.runs:
        cfg = Config.from_dict(load_checkpoint(run)["config"])
        rows = consistency_trace(run, tune)
        runs[Path(run).name] = {"steps": int(cfg.train.steps), "prior_until": float(cfg.loss.prior_until),
                                "consistency_principal": cfg.loss.consistency_principal,
                                "consistency_collaborator": cfg.loss.consistency_collaborator,
                                "rows": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                                         for r in rows]}
        for r in rows:
            print(Path(run).name, r, flush=True)
    res = {"what": "per snapshot: mean instance mask on its own true cell / on the other true cells of its window, "
                   "fraction of own-cell pixels >= 0.5, median window peak, mean M_c on true cells / background; "
                   "tuning split at the true cell size, principal at the true centroids",
           "protocol": a.protocol, "tune": spec, "runs": runs}
    write_benchmark(ROOT / "results" / "consistency_trace" / f"{a.name}.json", res, "consistency_trace.py", argv, t0)
    return res


if __name__ == "__main__":
    main()

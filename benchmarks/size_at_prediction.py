"""Cell size at prediction, no masks and no points: the learned regressor against the scale search.

    python benchmarks/size_at_prediction.py --protocol usiigaci_points_v2 --models cks_prior_seed0 supervised_seed0
    python benchmarks/size_at_prediction.py ... --split report     # once, after the choice is made
    python benchmarks/size_at_prediction.py ... --rescale 0.5 0.7 1 1.4 2   # the tuning fields resized

``--rescale``: every field is also shown resized by each factor (bilinear, anti-aliased when shrinking), its
true size multiplied by the factor: cells from half to twice the size of the tuning fields' own, the range by
which new fields may differ from the training fields (issue #9). It separates two causes of a wrong estimate:
a regressor that cannot extrapolate in scale, and one that misreads the look of a field.

For each trained run of a protocol (``$CKS_RUNS_DIR/PROTOCOL/MODEL``, with the ``size_model.json`` that
``cks train`` fits when a run stops; ``cks train ... --resume`` on a finished run fits a missing one),
every field of the protocol's tuning split (default) or report split: the true cell size (median
equivalent diameter of the masks, :func:`cks.size.median_diameter`), the learned estimate
(:func:`cks.size_model.estimate_diameter_learned`) after 1 and after 2 passes, the scale search of
:func:`cks.predict.predict` (``size_from="score"``), and the learned estimate refined at the model's own
confident detections (``size_from="refined"``). Prints every field and writes
``results/size_estimate/prediction_<split>.json`` (``--out`` to change) with the fraction of fields within
20 % of the true size per estimator. The number of passes of ``cks.predict.REGRESSOR_PASSES`` was chosen
on the tuning split only.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def resized(image, factor: float):
    """``image`` ``[H, W]`` or ``[C, H, W]`` resized by ``factor`` (:func:`cks.data.readers.resize_image`), float32."""
    import numpy as np

    from cks.data.readers import resize_image

    img = np.asarray(image, np.float32)
    chw = img[None] if img.ndim == 2 else img
    out = resize_image(chw, (round(chw.shape[1] * factor), round(chw.shape[2] * factor)))
    return out[0] if img.ndim == 2 else out


def measure(run_dir: Path, spec: str, factors=(1.0,)) -> list[dict]:
    from cks.checkpoint import load_model
    from cks.data.spec import load_dataset
    from cks.predict import predict
    from cks.size import median_diameter
    from cks.size_model import pass_scales

    model = load_model(run_dir)
    if model.size_model is None:
        raise SystemExit(f"{run_dir}: no size_model.json; run its `cks train ... --resume` (command.txt) to fit one")
    rows = []
    for s in load_dataset(spec, scale=1.0, points="none"):
        for f in factors:
            image, true = resized(s["image"], f), median_diameter(s["label"]) * f
            p1, p2 = (model.size_model.target / sc for sc in pass_scales(model, model.size_model, image, passes=2))
            info = predict(model, image, size_from="score", return_info=True)[2]
            refined = predict(model, image, size_from="refined", return_info=True)[2]
            rows.append({"field": s["name"], "resized": f, "true": round(true, 2), "learned_1": round(p1, 2),
                         "learned_2": round(p2, 2), "score_search": round(float(info["diameter"]), 2),
                         "refined": round(float(refined["diameter"]), 2)})
            print(run_dir.name, s["name"], f"x{f:g}", " ".join(f"{k} {v / true - 1:+.0%}" for k, v in rows[-1].items()
                                                          if k not in ("field", "true", "resized")), flush=True)
    return rows


#: the estimators compared (row keys): the regressor after 1 and 2 passes, the scale search, and the regressor
#: refined at the model's detections (``predict(size_from="refined")``)
ESTIMATORS = ("learned_1", "learned_2", "score_search", "refined")


def summary(rows: list[dict]) -> dict:
    import numpy as np

    out = {}
    for k in [k for k in ESTIMATORS if all(k in r for r in rows)]:  # older result files lack "refined"
        err = np.array([abs(r[k] / r["true"] - 1) for r in rows])
        out[k] = {"fields": len(rows), "within_20pct": round(float(np.mean(err <= 0.2)), 3),
                  "median_abs_error": round(float(np.median(err)), 4), "max_abs_error": round(float(err.max()), 4)}
    return out


def main(argv=None):
    from benchmarks.protocol import PROTOCOLS
    from benchmarks.record import one_thread, write_benchmark

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument("--split", choices=["tune", "report"], default="tune")
    p.add_argument("--runs-dir", default=os.environ.get("CKS_RUNS_DIR", str(ROOT / "runs")))
    p.add_argument("--rescale", nargs="+", type=float, default=[1.0], metavar="F",
                   help="also measure every field resized by these factors (default: 1, as it is)")
    p.add_argument("--out", help="default results/size_estimate/prediction_<protocol>_<split>[_resized].json")
    a = p.parse_args(argv)
    t0 = one_thread()
    spec = PROTOCOLS[a.protocol][a.split]
    if any(not f > 0 for f in a.rescale):
        p.error(f"--rescale factors must be > 0, got {a.rescale}")
    runs = {m: measure(Path(a.runs_dir) / a.protocol / m, spec, a.rescale) for m in a.models}
    every = [r for rows in runs.values() for r in rows]
    res = {"what": "cell size estimated at prediction (no masks, no points) vs the masks' median equivalent diameter",
           "protocol": a.protocol, "split": a.split, "spec": spec, "resized": a.rescale, "summary": summary(every),
           "per_run": {m: {"summary": summary(rows), "fields": rows} for m, rows in runs.items()}}
    if len(a.rescale) > 1:
        res["by_factor"] = {f"{f:g}": summary([r for r in every if r["resized"] == f]) for f in a.rescale}
    tail = "_resized" if a.rescale != [1.0] else ""
    out = Path(a.out or ROOT / "results" / "size_estimate" / f"prediction_{a.protocol}_{a.split}{tail}.json")
    write_benchmark(out, res, "size_at_prediction.py", argv, t0, a.runs_dir)
    for k, v in res["summary"].items():
        print(f"{k}: {v['within_20pct']:.0%} of {v['fields']} fields within 20 %, median |error| "
              f"{v['median_abs_error']:.1%}")
    for f, by in res.get("by_factor", {}).items():
        print(f"  resized x{f}: " + ", ".join(f"{k} {v['within_20pct']:.0%}" for k, v in by.items()))
    return out


if __name__ == "__main__":
    main()

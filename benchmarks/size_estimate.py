"""Cell size from points, no masks: the estimate of :func:`cks.size.estimate_diameter` on every field.

    python benchmarks/size_estimate.py            # writes results/size_estimate/points.json
    python benchmarks/size_estimate.py --grid     # the parameter search, tuning fields only -> grid.json

For every field of the Usiigaci set (train and val) and of DeepCell 2016 (train, val and test splits of
``cks.data.registry.SPLITS``): the true cell size (median equivalent diameter of the mask instances, at
native resolution, :func:`cks.size.median_diameter`) and its estimate from the image plus (i) the mask
centroids and, for DeepCell, (ii) points detected on the nuclear channel (``load_dataset(points=
"nuclei")``, default detector settings). Two simpler estimators are measured next to it, each with
its one factor fitted here on the tuning fields (median true / raw): (a) the median nearest-neighbour
spacing of the points, (b) the area of an Otsu threshold of the same texture map divided by the
number of points, as ``sqrt(4 A / (pi N))``. Tuning fields: Usiigaci ``train`` and the DeepCell
``train`` split; every other field is held out. Prints a table of every field and the summary.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cks import size  # noqa: E402
from cks.data.readers import find_samples  # noqa: E402
from cks.data.registry import SPLITS  # noqa: E402
from cks.data.spec import load_dataset, resolve_path  # noqa: E402
from cks.provenance import git_commit, hardware  # noqa: E402

SETS = ("usiigaci_nih3t3_phase", "deepcell2016_covertlab")
TUNING = {("usiigaci_nih3t3_phase", "train"), ("deepcell2016_covertlab", "train")}
WITHIN = 0.2  # the target: estimate within 20 % of the true median diameter


def otsu_area_raw(image, points) -> float:
    """Baseline (b), uncalibrated: ``sqrt(4 A / (pi N))`` with ``A`` the Otsu foreground of the texture map."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    img = size._image(image)
    f = min(1.0, size.WORK_SPACING / size.point_spacing(points))
    small = ndi.zoom(img, f, order=1, prefilter=False) if f < 1 else img
    mean = ndi.uniform_filter(small, size.TEXTURE_WINDOW)
    sd = np.sqrt(np.clip(ndi.uniform_filter(small * small, size.TEXTURE_WINDOW) - mean * mean, 0, None))
    tex = np.log(sd + 0.05 * np.median(sd) + 1e-9)
    lo, hi = np.percentile(tex, [2, 98])  # clip outliers (black borders, saturated specks)
    fg_px = float((tex > threshold_otsu(np.clip(tex, lo, hi))).sum()) * (img.size / small.size)
    return math.sqrt(4 * fg_px / (math.pi * len(points)))


def measure(samples, set_name: str, split: str, kind: str) -> list[dict]:
    rows = []
    for s in samples:
        pts = s["points"]
        t = time.perf_counter()
        est = size.estimate_diameter(s["image"], pts)
        dt = time.perf_counter() - t
        true = size.median_diameter(s["label"])
        rows.append({"set": set_name, "split": split, "name": s["name"], "points": kind,
                     "tuning": (set_name, split) in TUNING, "n_cells": int(len(size.equivalent_diameters(s["label"]))),
                     "n_points": int(len(pts)), "true_diameter": round(true, 2), "estimate": round(est, 2),
                     "rel_error": round(est / true - 1, 4), "seconds": round(dt, 3),
                     "raw": {"estimate": est / size.SIZE_CALIBRATION, "spacing": size.point_spacing(pts),
                             "otsu_area": otsu_area_raw(s["image"], pts)}})
    return rows


def summarise(rows: list[dict], key: str = "rel_error") -> dict:
    err = np.abs([r[key] for r in rows])
    if not len(err):
        return {"n_fields": 0}
    worst = max(rows, key=lambda r: abs(r[key]))
    return {"n_fields": int(len(err)), "within_20pct": round(float(np.mean(err <= WITHIN)), 3),
            "median_abs_error": round(float(np.median(err)), 4), "max_abs_error": round(float(err.max()), 4),
            "worst": f"{worst['set']}/{worst['name']} ({worst[key]:+.1%})"}


def summary_table(rows: list[dict], key: str = "rel_error") -> dict:
    out = {}
    for kind in sorted({r["points"] for r in rows}):
        sub = [r for r in rows if r["points"] == kind]
        out[kind] = {"all": summarise(sub, key), "tuning": summarise([r for r in sub if r["tuning"]], key),
                     "held_out": summarise([r for r in sub if not r["tuning"]], key),
                     "per_split": {f"{s}/{sp}": summarise([r for r in sub if (r["set"], r["split"]) == (s, sp)], key)
                                   for s, sp in dict.fromkeys((r["set"], r["split"]) for r in sub)}}
    return out


def fit_factor(rows: list[dict], raw_key: str) -> float:
    """Median of true / raw over the tuning rows (a log-median: the factor that centres the tuning errors)."""
    r = [math.log(x["true_diameter"] / x["raw"][raw_key]) for x in rows if x["tuning"]]
    return float(math.exp(np.median(r)))


GRID = {"WORK_SPACING": (10.0, 12.0, 14.0, 16.0), "POINT_PERCENTILE": (0.5, 1.0, 2.0, 5.0), "FIRST_CAP": (0.75, 1.0),
        "SECOND_CAP": (0.5, 0.6, 0.75), "TEXTURE_SMOOTH": (0.5, 1.0)}


def grid_search(argv) -> Path:
    """How the constants of :mod:`cks.size` were chosen: every combination of :data:`GRID` on the tuning rows
    only (both point kinds), ranked by the spread (std) of log(raw / true); the factor is the log-median."""
    import itertools

    t0, cases = time.time(), []
    for set_name, split in sorted(TUNING):
        for kind in ("centroid", "nuclei") if set_name.startswith("deepcell") else ("centroid",):
            for s in load_dataset(set_name, split=split, scale=1.0, points=kind):
                cases.append((np.asarray(s["image"][0], np.float32), s["points"], size.median_diameter(s["label"])))
    keep = {k: getattr(size, k) for k in GRID}
    table = []
    try:
        for values in itertools.product(*GRID.values()):
            for k, v in zip(GRID, values):
                setattr(size, k, v)
            r = np.log([size._raw_diameter(img, pts) / true for img, pts, true in cases])
            c = float(np.median(r))
            table.append({**dict(zip(GRID, values)), "calibration": round(math.exp(-c), 4),
                          "std_log": round(float(np.std(r)), 4),
                          "within_20pct": round(float(np.mean(np.abs(np.exp(r - c) - 1) <= WITHIN)), 3)})
    finally:
        for k, v in keep.items():
            setattr(size, k, v)
    table.sort(key=lambda x: x["std_log"])
    rec = {"what": "parameter search of cks.size.estimate_diameter on the tuning rows only", "n_rows": len(cases),
           "tuning_fields": sorted(f"{s}/{sp}" for s, sp in TUNING), "grid": GRID, "ranked": table,
           "chosen_in_cks_size": {k: getattr(size, k) for k in (*GRID, "SIZE_CALIBRATION")},
           "command": " ".join(["python", "benchmarks/size_estimate.py", *argv]), "git_commit": git_commit(),
           "hardware": hardware(), "wall_s": round(time.time() - t0, 1)}
    out = ROOT / "results" / "size_estimate" / "grid.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1) + "\n")
    for x in table[:5]:
        print(x)
    print(out.relative_to(ROOT))
    return out


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/size_estimate/points.json", help="output JSON (relative to the repo)")
    p.add_argument("--grid", action="store_true", help="run the parameter search instead (writes grid.json)")
    a = p.parse_args(argv)
    if a.grid:
        return grid_search(argv if argv is not None else sys.argv[1:])
    t0 = time.time()
    rows, n_found = [], {}
    for set_name in SETS:
        n_found[set_name] = len(find_samples(resolve_path(set_name)))
        kinds = ("centroid", "nuclei") if set_name.startswith("deepcell") else ("centroid",)
        for split in SPLITS[set_name]:
            for kind in kinds:
                samples = load_dataset(set_name, split=split, scale=1.0, points=kind)
                rows += measure(samples, set_name, split, kind)
                print(f"{set_name} {split} {kind}: {len(samples)} fields", flush=True)
    # baselines (a) and (b): one factor each, fitted on the tuning rows of both point kinds
    factors = {"spacing": fit_factor(rows, "spacing"), "otsu_area": fit_factor(rows, "otsu_area")}
    for r in rows:
        for k, f in factors.items():
            r[f"rel_error_{k}"] = round(f * r["raw"][k] / r["true_diameter"] - 1, 4)
        r["raw"] = {k: round(v, 3) for k, v in r["raw"].items()}
    n_measured = {s: len({r["name"] for r in rows if r["set"] == s}) for s in SETS}
    rec = {
        "what": "cell size (median equivalent diameter, px, native resolution) estimated from points without "
                "masks, against the true value from the masks, on every field",
        "definition": "cell size = median over an image's cells of sqrt(4 * area / pi) (cks.size.median_diameter)",
        "method": {"function": "cks.size.estimate_diameter",
                   "description": size.__doc__.split("Nothing runs on import")[0].strip(),
                   "constants": {k: getattr(size, k) for k in ("WORK_SPACING", "TEXTURE_WINDOW", "TEXTURE_SMOOTH",
                                                             "POINT_PERCENTILE", "FIRST_CAP", "SECOND_CAP",
                                                             "SIZE_CALIBRATION")},
                   "calibration_refit_here": round(fit_factor(rows, "estimate"), 4),
                   "selection": "constants chosen by the smallest spread (std of log(estimate / true)) over the "
                                "tuning rows (centroid and nuclear points) in a grid search (--grid, grid.json); "
                                "held-out fields were not used to choose"},
        "baselines": {"spacing": {"description": "factor * median nearest-neighbour distance of the points",
                                  "factor": round(factors["spacing"], 4),
                                  "summary": summary_table(rows, "rel_error_spacing")},
                      "otsu_area": {"description": "factor * sqrt(4 A / (pi N)), A = Otsu foreground of the log "
                                                   "local-std texture map, N = number of points",
                                    "factor": round(factors["otsu_area"], 4),
                                    "summary": summary_table(rows, "rel_error_otsu_area")}},
        "tuning_fields": "usiigaci_nih3t3_phase train split (train/set1-20) and deepcell2016_covertlab train split "
                         "(cks.data.registry.SPLITS); all other fields are held out",
        "target": f"estimate within {WITHIN:.0%} of the true median diameter on >= 90 % of fields",
        "summary": summary_table(rows),
        "fields": rows,
        "data": {s: f"$CKS_DATA_DIR/{s}" for s in SETS},
        "fields_found_on_disk": n_found, "fields_measured": n_measured,
        "nuclei_points": "load_dataset(points='nuclei'): cks.points.points_from_nuclei with default settings",
        "command": " ".join(["python", "benchmarks/size_estimate.py", *(argv if argv is not None else sys.argv[1:])]),
        "git_commit": git_commit(), "hardware": hardware(), "wall_s": round(time.time() - t0, 1),
        "median_seconds_per_estimate": round(float(np.median([r["seconds"] for r in rows])), 3),
    }
    out = ROOT / a.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"\n{'set/field':52s} {'points':8s} {'cells':>5s} {'true':>6s} {'est':>6s} {'error':>7s}")
    for r in rows:
        flag = "" if abs(r["rel_error"]) <= WITHIN else "  <-- off by > 20 %"
        print(f"{(r['set'][:9] + '/' + r['name'])[:52]:52s} {r['points']:8s} {r['n_cells']:5d} "
              f"{r['true_diameter']:6.1f} {r['estimate']:6.1f} {r['rel_error']:+7.1%}{flag}")
    print("\nwithin 20 % (fraction of fields), median |error|:")
    for kind, s in rec["summary"].items():
        parts = [("all", s["all"]), ("tuning", s["tuning"]), ("held out", s["held_out"]), *s["per_split"].items()]
        for part, v in parts:
            print(f"  {kind:8s} {part:36s} n={v['n_fields']:3d}  within {v['within_20pct']:.2f}  "
                  f"median |err| {v['median_abs_error']:.3f}")
    for k in factors:
        s = rec["baselines"][k]["summary"]
        print(f"  baseline {k:10s} factor {factors[k]:.3f}: within 20 % " +
              ", ".join(f"{kind} {v['all']['within_20pct']:.2f} (held out {v['held_out']['within_20pct']:.2f})"
                        for kind, v in s.items()))
    print(out.relative_to(ROOT))
    return out


if __name__ == "__main__":
    main()

"""Is shape being learned? Diagnostics of predicted masks against the ground truth, and of a run's maps.

* :func:`shape_diagnostics` (:mod:`cks.matched_shape`) pairs every ground-truth (GT) cell with the predicted
  cell of largest intersection and measures, per pair and per size bin, how the predicted boundary sits
  relative to the true one (signed offset: **positive = outside the cell, i.e. masks too large**), the area
  ratio, solidities and IoU, next to the IoU of the Voronoi-disk baseline for the same cell.
* :func:`collaborator_foreground_fraction` and :func:`training_maps` (:mod:`cks.run_maps`): foreground of the
  collaborator's ``M_c`` vs the GT; ``M_p`` (Eq. 4), ``M_c`` and ``B_p`` (Eq. 9) for every snapshot of a run.
* :func:`diagnose_run` (``cks diagnose RUN --data SPEC``): all of it for a run folder, written as
  ``diagnostics.json`` + PNG figures (plots: :mod:`cks.viz_diagnose`).

How the signed offset is measured: :mod:`cks.matched_shape`.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from .errors import CksDataError
from .matched_shape import DEFAULT_BINS, MATCH_IOU, TOUCH_GAP, _jsonable, shape_diagnostics, size_slope, summarise
from .run_maps import (_collaborator, collaborator_foreground_fraction, foreground_iou, shape_over_training,
                       snapshot_files, training_maps)

# shape_diagnostics, summarise, size_slope, foreground_iou, collaborator_foreground_fraction, snapshot_files,
# training_maps and shape_over_training are re-exported: they were defined here before the split.
__all__ = ["shape_diagnostics", "summarise", "size_slope", "foreground_iou", "collaborator_foreground_fraction",
           "snapshot_files", "training_maps", "shape_over_training", "diagnose_run", "add_parser", "run_cli",
           "DEFAULT_BINS", "MATCH_IOU"]


# ----------------------------------------------------------------------------- a whole run
def _portable(spec) -> str:
    """A data spec without this machine's absolute paths (relative to CKS_DATA_DIR, else the last part)."""
    out = []
    for one in [spec] if isinstance(spec, (str, os.PathLike)) else list(spec):
        s = str(one)
        base = os.environ.get("CKS_DATA_DIR")
        if os.path.isabs(s) or s.startswith("~"):
            full = os.path.abspath(os.path.expanduser(s))
            if base and full.startswith(os.path.abspath(base) + os.sep):
                s = os.path.relpath(full, os.path.abspath(base))
            else:
                s = os.path.basename(full.rstrip(os.sep)) or s
        out.append(s)
    return ",".join(out) if len(out) > 1 else out[0]


def diagnose_run(run_dir, data_spec, out_dir=None, max_images: int | None = None, score_threshold: float = 0.5,
                 progress: bool = True, true_size: bool = False, history: bool = True, weights: str = "model") -> dict:
    """Shape diagnostics, collaborator foreground fraction and training maps of a run on a data set with masks.

    Predicts every image of ``data_spec`` with :func:`cks.predict.predict` (the model's training scale),
    compares with the GT at native resolution (bins and offsets at the training scale), writes
    ``diagnostics.json``, ``shape.png``, ``boundary_profile.png`` (:mod:`cks.boundary_profile`: the image's mean
    intensity against the signed distance to the true and to the predicted boundaries), ``training_maps.png`` and,
    for a CKS run, ``consistency_trace.png`` (:mod:`cks.trace`: masks and ``M_c`` on the true cells per snapshot)
    into ``out_dir`` (default ``run_dir/diagnose``) and returns the JSON summary. ``true_size``: predict each image at its true cell size
    (median equivalent diameter of its masks) instead of the model's own size estimate, so the figures show
    the shape of the masks alone; the collaborator's foreground is then measured at the same per-image scale. A
    fixed-scale run (``size.normalize`` False) is always shown at its one training scale, as in training and in
    :func:`cks.evaluation.evaluate_model` with ``size="true"``. ``history`` False skips the per-snapshot shape and
    the consistency trace (the final weights only; several times faster). ``weights``: which weights of a run
    trained with ``train.ema`` are diagnosed (:func:`cks.checkpoint.load_model`): ``"model"``, the average, or
    ``"training"``, the weights training reached (the same for other runs).
    """
    from tqdm.auto import tqdm

    from .checkpoint import load_checkpoint, load_model
    from .data.writers import atomic_write_text
    from .data.readers import rescale_sample
    from .data.spec import load_dataset
    from .predict import predict
    from .boundary_profile import boundary_profile
    from .viz_diagnose import plot_boundary_profile, plot_shape_diagnostics, show_training_maps

    run = Path(run_dir)
    out = Path(out_dir) if out_dir else (run if run.is_dir() else run.parent) / "diagnose"
    model = load_model(run, weights=weights)
    scale = float(getattr(model, "scale", 1.0))
    samples = load_dataset(data_spec, scale=1.0, points="none")[:max_images]
    if not samples or any(s.get("label") is None for s in samples):
        raise CksDataError(f"{_portable(data_spec)}: diagnose needs images with masks (label images)")
    from .evaluation import _size_kwargs

    normalised = bool(getattr(getattr(model, "cfg", None), "size", None) and model.cfg.size.normalize)
    # as cks.evaluation's size="true": a size-normalised model at each image's true cell size, a fixed-scale
    # model at the one scale it was trained at; the collaborator is measured at the same per-image scale
    kws = [_size_kwargs(model, s, "true" if true_size else "auto") for s in samples]
    true_scales = [kw["scale"] if "scale" in kw else float(model.cfg.size.diameter) / kw["diameter"]
                   if "diameter" in kw else scale for kw in kws]
    preds = [predict(model, s["image"], score_threshold=score_threshold, **kw)[0]
             for s, kw in tqdm(list(zip(samples, kws)), desc="diagnose", disable=not progress, dynamic_ncols=True)]
    res = shape_diagnostics(preds, [s["label"] for s in samples], scale=scale)
    images = [s["image"] for s in samples]
    true_profile = boundary_profile(images, [s["label"] for s in samples], scale)
    profile = {"scale": scale, "distance": true_profile["distance"], "true": true_profile["mean"],
               "predicted": boundary_profile(images, preds, scale)["mean"]}
    ckpt = load_checkpoint(run)
    collab = _collaborator(ckpt)
    fraction = None if collab is None else collaborator_foreground_fraction(collab, samples, true_scales)
    first = rescale_sample(samples[0], scale) if scale != 1.0 else samples[0]
    maps = training_maps(run, first)
    over = shape_over_training(run, samples, score_threshold) if history and len(snapshot_files(run)) > 1 else []
    from .trace import consistency_trace, plot_consistency_trace

    # masks on their own / the neighbours' cells and M_c on the cells, per snapshot (collapse or spread?)
    trace = [] if collab is None or not history else consistency_trace(
        run, samples if model.cfg.size.normalize or scale == 1.0 else [rescale_sample(s, scale) for s in samples])
    summary = {"run": run.name if run.is_dir() else f"{run.parent.name}/{run.name}", "data": _portable(data_spec),
               "step": int(ckpt.get("step", 0)), "scale": scale, "score_threshold": float(score_threshold),
               "size": ("its one training scale (a fixed-scale run)" if not normalised
                        else "true cell size (from the masks)" if true_size else "the model's own estimate"),
               "true_size": bool(true_size), "history": bool(history), "weights": weights,
               "collaborator_scales": [round(v, 4) for v in true_scales],
               "n_images": len(samples), "shape": summarise(res), "collaborator_foreground": fraction,
               "training_maps": {"steps": [r["step"] for r in maps["rows"]],
                                 "fg_fraction": [r["fg_fraction"] for r in maps["rows"]],
                                 "true_fg_fraction": None if maps["label"] is None else float((maps["label"] > 0).mean())},
               "shape_over_training": over, "boundary_profile": profile, "consistency_trace": trace,
               "figures": ["shape.png", "boundary_profile.png", "training_maps.png"]
               + (["consistency_trace.png"] if trace else [])}
    summary = _jsonable(summary)
    out.mkdir(parents=True, exist_ok=True)
    import matplotlib.pyplot as plt

    figures = [("shape.png", plot_shape_diagnostics(res)), ("boundary_profile.png",
               plot_boundary_profile(profile, collaborator=(fraction or {}).get("profile"))),
               ("training_maps.png", show_training_maps(maps))]
    if trace:
        figures.append(("consistency_trace.png", plot_consistency_trace({summary["run"]: trace})))
    for name, fig in figures:
        fig.savefig(out / name, dpi=90)
        plt.close(fig)
    atomic_write_text(json.dumps(summary, indent=2), out / "diagnostics.json")
    return summary


# ----------------------------------------------------------------------------- command line
def add_parser(subparsers):
    """Register ``cks diagnose RUN --data SPEC [--out DIR] [--max-images N] [--score-threshold T]``."""
    import argparse

    text = ("is shape being learned? signed boundary offset, area ratio and IoU vs disks per size bin, where the mask "
            "edges sit on the image (boundary profile), run maps")
    p = subparsers.add_parser("diagnose", help=text, description=text, formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="example:\n  cks diagnose runs/cks --data usiigaci_nih3t3_phase/val:set46-50")
    p.add_argument("run", help="run folder (or checkpoint.pt)")
    p.add_argument("--data", required=True, help="dataset spec with masks, PATH[:SELECTOR] (see cks.data.spec)")
    p.add_argument("--out", help="output folder (default RUN/diagnose)")
    p.add_argument("--max-images", type=int, help="use only the first N images")
    p.add_argument("--score-threshold", type=float, default=0.5,
                   help="detection score threshold for the predictions that are diagnosed (default 0.5)")
    p.add_argument("--true-size", action="store_true",
                   help="predict each image at its true cell size (from its masks) instead of the automatic estimate "
                        "(a size-normalised run; a fixed-scale run always predicts at its training scale)")
    p.add_argument("--training-weights", action="store_true",
                   help="a run trained with train.ema: diagnose the weights training reached instead of their moving "
                        "average (the run's model)")
    p.add_argument("--no-history", action="store_true",
                   help="the final weights only: skip the per-snapshot shape and consistency trace "
                        "(several times faster)")
    return p


def run_cli(args) -> dict:
    s = diagnose_run(args.run, args.data, out_dir=args.out, max_images=args.max_images,
                     score_threshold=args.score_threshold, true_size=args.true_size,
                     history=not getattr(args, "no_history", False),
                     weights="training" if getattr(args, "training_weights", False) else "model")
    print("size bins: true equivalent cell diameter in px at the model's training scale (a size-normalised model's "
          "cells are about size.diameter px there), not in the input images' px")
    print("| bin (px) | GT | matched | IoU>=0.5 | offset px | offset/diam | area ratio | IoU | disk IoU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in s["shape"]["bins"] + [dict(s["shape"]["overall"], bin="all")]:
        f = [("-" if r[k] is None else f"{r[k]:.3g}") for k in ("offset_median", "offset_rel_median",
                                                                 "area_ratio_median", "iou_median", "disk_iou_median")]
        print(f"| {r['bin']} | {r['n_gt']} | {r['n_matched']} | {r['n_matched_50']} | " + " | ".join(f) + " |")
    print(f"by touching neighbours (GT cells within {TOUCH_GAP:g} px of another GT cell): alone, one, two or more")
    print("| neighbours | GT | matched | IoU>=0.5 | offset px | area ratio | solidity (true) | IoU | disk IoU |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in s["shape"].get("crowding") or []:
        v = {k: ("-" if r[k] is None else f"{r[k]:.3g}") for k in ("offset_median", "area_ratio_median", "iou_median",
                                                                  "disk_iou_median", "solidity_pred_median",
                                                                  "solidity_true_median")}
        print(f"| {r['group']} | {r['n_gt']} | {r['n_matched']} | {r['n_matched_50']} | {v['offset_median']} | "
              f"{v['area_ratio_median']} | {v['solidity_pred_median']} ({v['solidity_true_median']}) | "
              f"{v['iou_median']} | {v['disk_iou_median']} |")
    cr = s["shape"]["count_ratio"]
    sl = s["shape"]["overall"].get("size_slope")
    print(f"size tracking (log-log slope of predicted on true area, matched cells; 1 = masks follow cell size, "
          f"0 = one size for all): {'-' if sl is None else f'{sl:.2f}'}")
    print(f"count ratio (predicted / GT): {'-' if cr is None else f'{cr:.3f}'}")
    prof = s["boundary_profile"]

    def peak(curve):  # the distance (px) of the brightest bin; "-" when no bin has pixels
        ok = [(v, d) for v, d in zip(curve, prof["distance"]) if v is not None and math.isfinite(v)]
        return f"{max(ok)[1]:+d} px" if ok else "-"

    print(f"brightest image band (boundary_profile.png; a phase halo): {peak(prof['true'])} from the true boundary, "
          f"{peak(prof['predicted'])} from the predicted one (outside > 0)")
    cp = (s.get("collaborator_foreground") or {}).get("profile")
    if cp:
        at = {d: v for d, v in zip(cp["distance"], cp["m_c"])}
        shown = " ".join(f"{d:+d}:{at[d]:.2f}" for d in (-3, -1, 1, 3, 5) if d in at and at[d] is not None
                         and math.isfinite(at[d]))
        print(f"collaborator M_c across the true boundary (px: mean M_c) {shown}; {100 * cp['saturated']:.0f} % of "
              f"pixels within 3 px of it have |logit| >= 3 (where the linear L_M of Eq. 6 hardly moves M_c)")
    if s.get("consistency_trace"):
        print("consistency trace (consistency_trace.png; masks at the true centroids; a collapse drives all to 0):")
        for r in s["consistency_trace"]:
            v = {k: ("-" if r[k] is None or not math.isfinite(r[k]) else f"{r[k]:.2f}")
                 for k in ("mask_own", "mask_neighbours", "mask_peak", "m_c_cells", "m_c_background")}
            print(f"  step {r['step']}{'' if r['prior_on'] else ' (prior off)'}: mask on own cell {v['mask_own']}, on "
                  f"neighbours {v['mask_neighbours']}, peak {v['mask_peak']}; M_c on cells {v['m_c_cells']}, "
                  f"background {v['m_c_background']}")
    return s

"""The ``cks`` command line (also ``python -m cks``): demo, points, train, predict, evaluate, presets.

Every user error (bad file, unknown preset, incompatible checkpoint, ...) ends in a one-line
``error: ...`` message on stderr and exit status 2, never a traceback; outputs are written
atomically (temp file + rename), so an interrupted command never leaves a half-written file.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

from .data.writers import atomic_write_text, read_table_scores, write_labels, write_table
from .errors import CksError

EXAMPLES = {
    "demo": "cks demo --out demo_run            # ~1 min on 2 free cores: generated images, CKS from points, figure",
    "points": "cks points nuclear1.png nuclear2.png --out points.json --min-sigma 3 --max-sigma 10",
    "train": ("cks train --data usiigaci_nih3t3_phase/train:set1-16@0.5 --val usiigaci_nih3t3_phase/train:set17-20 "
              "--labels points --out runs/cks --size convnext_atto --minutes 30"),
    "predict": "cks predict --model runs/cks $CKS_DATA_DIR/usiigaci_nih3t3_phase/val/set4*/raw.tif --out preds/",
    "evaluate": "cks evaluate --pred preds/ --gt usiigaci_nih3t3_phase/val:set46-50",
    "presets": "cks presets",
}


def _match_predictions(gts: list[dict], keys: list[str], pred_dir: Path) -> list[str]:
    """The prediction key (path below ``pred_dir``, no suffix) of every ground-truth sample.

    A key matches an image when its trailing path components equal those of the image path (all of
    the key's components, or at least the file name and its folder); the longest match wins.
    """
    kparts = {k: Path(k).parts for k in keys}
    chosen: list[str] = []
    seen: dict[str, str] = {}
    for g in gts:
        where = g.get("image_path") or g["name"]
        stem = Path(g["image_path"]).with_suffix("").parts if g.get("image_path") else Path(g["name"]).parts
        best, best_n = [], 0
        for k, kp in kparts.items():
            n = 0
            while n < min(len(kp), len(stem)) and kp[-1 - n] == stem[-1 - n]:
                n += 1
            if n == 0 or not (n == len(kp) or n == len(stem) or n >= 2):
                continue
            if n > best_n:
                best, best_n = [k], n
            elif n == best_n:
                best.append(k)
        if not best:
            raise CksError(f"no prediction for ground-truth image {where} in {pred_dir}; "
                           f"run `cks predict` on it with --out {pred_dir}")
        if len(best) > 1:
            raise CksError(f"ground-truth image {where} matches several predictions in {pred_dir} "
                           f"({', '.join(sorted(best)[:3])}); predict each set into its own --out folder")
        if best[0] in seen:
            raise CksError(f"{pred_dir / best[0]}.labels.tif matches two ground-truth images ({seen[best[0]]}, "
                           f"{where}); predict all images in one `cks predict` call so outputs keep their folders")
        seen[best[0]] = where
        chosen.append(best[0])
    return chosen


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Image files of the inputs: a file as given, a folder as its image files (recursive, sorted).

    A folder's ``*.labels.tif`` (results of an earlier ``cks predict``) are left out. A missing path or a folder
    without images is an error that names it.
    """
    from .data.readers import IMAGE_SUFFIXES

    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                           and not f.name.endswith(".labels.tif"))
            if not found:
                raise CksError(f"{p}: a folder without images ({', '.join(IMAGE_SUFFIXES)}); give image files "
                               f"or a folder that holds them")
            files.extend(found)
        elif not p.exists():
            raise CksError(f"{p}: no such file or folder")
        else:
            files.append(p)
    return files


def output_keys(paths: list[Path]) -> list[str]:
    """Where each input's results go below ``--out``: its path below the inputs' common folder, suffix dropped.

    The common folder's own name is kept when all inputs share one folder (``set46/raw.tif`` alone ->
    ``set46/raw``; ``set46/raw.tif set47/raw.tif`` -> ``set46/raw``, ``set47/raw``), so one input or many give
    the same names. Two inputs that would share a name (``a.tif``, ``a.png``) are refused.
    """
    parents = [p.resolve().parent for p in paths]
    if not parents:
        return []
    root = Path(os.path.commonpath([str(p) for p in parents]))
    if len(set(parents)) == 1:
        root = root.parent
    keys = [p.resolve().relative_to(root).with_suffix("").as_posix() for p in paths]
    seen: dict[str, Path] = {}
    for p, k in zip(paths, keys):
        if k in seen:
            raise CksError(f"{seen[k]} and {p} would both be written as {k}.labels.tif; rename one, or predict "
                           f"them with separate --out folders")
        seen[k] = p
    return keys


# ---------------------------------------------------------------- commands
def cmd_demo(a) -> dict:
    from .config import get_preset
    from .data.synthetic import synthetic_dataset
    from .metrics import evaluate
    from .predict import predict, scores_by_label
    from .train import train
    from .viz import match_colors, plot_history, show_segmentation

    import torch
    torch.manual_seed(0)
    out = Path(a.out)
    cfg = get_preset(a.preset, size="test", overrides={"train.steps": a.steps} if a.steps else None)
    steps = cfg.train.steps
    train_set = synthetic_dataset(4, size=(128, 128), n_cells=10, radius=(7, 11), seed=1)
    for s in train_set:
        s["label"] = None  # CKS sees points only
    val = synthetic_dataset(2, size=(128, 128), n_cells=10, radius=(7, 11), seed=100)
    print(f"demo: CKS from points on 4 generated images, {steps} steps of preset {a.preset!r} "
          f"(about a minute on 2 free cores; progress below)")
    r = train(cfg, train_set, val, out_dir=out, max_minutes=a.minutes)
    short = r["step"] < steps
    preds = [predict(r["model"], v["image"]) for v in val]
    ev = evaluate([p[0] for p in preds], [scores_by_label(p[1]) for p in preds], [v["label"] for v in val])
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 5.2))
    v = val[0]
    show_segmentation(v["image"], match_colors(preds[0][0], v["label"]), points=v["points"], ax=axes[0],
                      title=f"CKS prediction after {r['step']} steps")
    show_segmentation(v["image"], v["label"], ax=axes[1], title="ground truth (never used in training)")
    axes[0].legend(handles=[axes[0].lines[0]], labels=["a point per cell: all CKS is told"], loc="lower left",
                   fontsize=8, framealpha=0.8)
    verdict = (f"STOPPED EARLY by --minutes at {r['step']} of {steps} steps: not the method's result"
               if short else f"validation (2 unseen images, {ev['n_gt']} cells)")
    fig.suptitle(f"{verdict}: AP50 {ev['ap50']:.2f}, Dice {ev['dice']:.2f}; same colour = same cell",
                 fontsize=10, color="red" if short else "black")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "demo.png", dpi=100)
    plot_history(r["history"], title="demo training").savefig(out / "history.png", dpi=80)
    res = {k: ev[k] for k in ("ap50", "ap75", "map", "dice", "n_pred", "n_gt")}
    res.update(steps=r["step"], planned_steps=steps, stopped_early=short)
    print(f"demo: {r['step']} of {steps} steps -> val AP50 {ev['ap50']:.3f}, Dice {ev['dice']:.3f}; "
          f"figure {out / 'demo.png'}")
    if short:
        print(f"demo: --minutes {a.minutes:g} stopped training at step {r['step']} of {steps}, so the masks are "
              "those of a half-trained model; run `cks demo` without --minutes for the full run")
    return res


def cmd_points(a) -> dict:
    from .data.annotations import write_simple_json
    from .data.io import read_image
    from .points import points_from_nuclei

    kw = {"background_size": a.background, "smooth_sigma": a.smooth, "min_sigma": a.min_sigma,
          "max_sigma": a.max_sigma, "threshold": a.threshold}
    inputs = [Path(p) for p in a.inputs]
    records = []
    for p in inputs:
        img = read_image(p)
        if not 0 <= a.channel < img.shape[0]:
            raise CksError(f"{p}: has {img.shape[0]} channel(s), no channel {a.channel}; "
                           f"use --channel 0..{img.shape[0] - 1}")
        pts = points_from_nuclei(img[a.channel], **kw)
        records.append((p, pts))
        print(f"{p}: {len(pts)} points")
    out = Path(a.out)
    if out.suffix.lower() != ".json":
        raise CksError(f"{out}: --out must be a .json file (the point list `cks train --data` reads)")
    write_simple_json(out, records)  # image paths relative to the JSON's folder, as `cks train --data` reads them
    return {"images": len(records), "points": sum(len(r[1]) for r in records)}


def _load_training(a, spec, scale, labels, keep_masks=False):
    from .data.spec import load_dataset

    samples = load_dataset(spec, scale=scale, points="nuclei" if labels == "nuclei" else "auto")
    return _prepare_labels(a, samples, labels, keep_masks)


def _prepare_labels(a, samples, labels, keep_masks=False):
    """Masks -> centroid points (supervised); points: drop the masks, check the points, optional jitter.

    ``keep_masks`` (``loss.foreground_from=masks``, a diagnostic): point training keeps the masks for L_S only.
    """
    from .points import centroids, jitter, validate_points

    rng = np.random.default_rng(a.seed)
    for s in samples:
        where, pts, (h, w) = s.get("image_path") or s["name"], s.get("points"), s["image"].shape[-2:]
        if labels == "masks":
            if s.get("label") is None:
                raise CksError(f"{where}: --labels masks needs an instance label image; add one (label_file) "
                               "or train from points with --labels points")
            s["point_ids"], s["points"] = centroids(s["label"])
            continue
        if keep_masks and s.get("label") is None:
            raise CksError(f"{where}: loss.foreground_from=masks needs an instance label image for every training image")
        if not keep_masks:
            s["label"] = None  # point supervision: masks never reach the trainer
        if pts is None or len(pts) == 0:
            raise CksError(f"{where}: no points; give point labels (or --labels masks)")
        validate_points(pts, (h, w), name=str(where), allow_empty=False)
        if a.jitter > 0:
            s["points"] = jitter(pts, a.jitter, rng, shape=(h, w))
    return samples


#: `cks train` on a machine without a GPU: a budget a 2-core laptop can spend (the paper's 90,000 steps of
#: 512-px crops take days there); ~1.8 s per CKS step with convnext_atto on 2 cores
CPU_STEPS, CPU_CROP = 2000, 256


def _cpu_defaults(a) -> dict:
    """Steps and crop size: the user's, else the preset's on a GPU, else CPU_STEPS / CPU_CROP (printed)."""
    import torch

    out = {}
    if a.steps is not None:
        out["train.steps"] = a.steps
    if a.crop_size is not None:
        out["train.crop_size"] = a.crop_size
    if torch.cuda.is_available():
        return out
    given = {x.split("=", 1)[0].strip() for x in (a.set or [])}
    if "train.steps" not in out and "train.steps" not in given:
        out["train.steps"] = CPU_STEPS
        print(f"train: no GPU: {CPU_STEPS} steps by default (the paper's 90,000 are for a GPU); set --steps, "
              "--minutes or --cpu-minutes to change it")
    if "train.crop_size" not in out and "train.crop_size" not in given:
        out["train.crop_size"] = CPU_CROP
    return out


def nuclear_prior_note(labels: str, cfg) -> str | None:
    """A hint for CKS from nuclear points whose prior switches off (preset ``nuclear_points``), else None."""
    lc = cfg.loss
    if labels != "nuclei" or lc.mode != "cks" or lc.prior_until >= 1 or lc.prior_scale_after > 0 or lc.prior_scale == 0:
        return None
    return (f"train: note: points from nuclei, and the prior of Eq. 4 stops at {lc.prior_until:g} of the run; without "
            "it CKS can shrink to the nuclei (the points sit on them). --preset nuclear_points keeps a weak prior to "
            "the end (DeepCell tuning AP50 0.27 vs 0.18 with the base preset, issue #9)")


def cmd_train(a) -> dict:
    from .config import get_preset, with_overrides
    from .data.spec import load_dataset, parse_spec
    from .train import train

    cfg = get_preset(a.preset, size=a.size)
    if a.labels == "masks" and cfg.loss.mode != "supervised":
        cfg = with_overrides(cfg, {"loss.mode": "supervised"})
    if a.labels in ("points", "nuclei") and cfg.loss.mode == "supervised":
        raise CksError(f"preset {a.preset!r} is fully supervised; use --labels masks or a CKS preset")
    cfg = with_overrides(cfg, _cpu_defaults(a))
    cfg = with_overrides(cfg, a.set or [])
    note = nuclear_prior_note(a.labels, cfg)
    if note:
        print(note)
    spec_scale = parse_spec(a.data)[2]
    keep = cfg.loss.foreground_from == "masks"  # the true-foreground diagnostic keeps the masks for L_S
    if cfg.size.normalize:
        if a.scale is not None or spec_scale is not None:
            raise CksError("this preset rescales every image to cells of size.diameter px (cell-size normalisation); "
                           "drop --scale / @SCALE, give the cells' size with --diameter, or keep a fixed scale with "
                           "--set size.normalize=false")
        from .data.normalize import median_scale, normalize_cell_size

        samples = load_dataset(a.data, scale=1.0, points="nuclei" if a.labels == "nuclei" else "auto")
        if a.size_from == "masks" and a.labels != "masks":  # sizes from the masks before point training drops them
            samples = normalize_cell_size(samples, cfg.size.diameter, "masks")
        samples = _prepare_labels(a, samples, a.labels, keep)  # checks the points (jitter: px of the input images)
        if a.size_from != "masks" or a.labels == "masks":
            samples = normalize_cell_size(samples, cfg.size.diameter, a.size_from, a.diameter,
                                          use_masks=a.labels == "masks")
        scale = median_scale(samples)
        ds = np.array([s["cell_diameter"] for s in samples])
        print(f"train: cell size ({samples[0]['cell_diameter_source']}) median {np.median(ds):.1f} px "
              f"(range {ds.min():.1f}-{ds.max():.1f}) -> {cfg.size.diameter:g} px; scales "
              f"{min(s['scale'] for s in samples):.2f}-{max(s['scale'] for s in samples):.2f}")
    else:
        if a.diameter is not None:
            scale = cfg.size.diameter / a.diameter
        else:
            scale = a.scale if a.scale is not None else (spec_scale or 1.0)
        samples = _load_training(a, a.data, scale, a.labels, keep)
    n_types = max(int(s.get("cell_type", 0) or 0) for s in samples) + 1
    if cfg.collaborator.n_cell_types < n_types and len(cfg.loss.prior_d) > 1:
        cfg = with_overrides(cfg, {"collaborator.n_cell_types": n_types})
    val = None
    if a.val:
        val = load_dataset(a.val, scale=1.0, points="none")  # scored at native resolution
        if any(v.get("label") is None for v in val):
            raise CksError(f"{a.val}: validation needs instance masks")
    print(f"train: {len(samples)} images ({sum(len(s['points'] if s.get('points') is not None else []) for s in samples)}"
          f" points) at scale {scale}, preset {a.preset}, size {a.size}, mode {cfg.loss.mode}, {cfg.train.steps} steps")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun: one process per GPU / CPU slot
        import torch
        import torch.distributed as dist
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    r = train(cfg, samples, val, out_dir=a.out, resume=a.resume, max_minutes=a.minutes, scale=scale,
              max_cpu_minutes=a.cpu_minutes)
    vals = [h for h in r["history"] if "val_ap50" in h]
    last = {k: v for k, v in (vals[-1] if vals else {}).items() if k.startswith("val_")}
    score = (f"; validation at step {vals[-1]['step']}: AP50 {last['val_ap50']:.3f}, Dice {last['val_dice']:.3f}"
             if last else "")
    print(f"train: stopped at step {r['step']} of {cfg.train.steps}; checkpoint {Path(a.out) / 'checkpoint.pt'}{score}")
    return {"step": r["step"], **last}


def _points_beside(image_path: Path, shape) -> np.ndarray:
    """The points of the point file beside an image (``cks predict --size-at-points``)."""
    from .data.point_files import POINT_SUFFIXES, partner_point_file, read_point_file

    f = partner_point_file(image_path)
    if f is None:
        raise CksError(f"{image_path}: --size-at-points needs a point file beside the image with the same name "
                       f"({', '.join(POINT_SUFFIXES)}); add one, or drop --size-at-points (or give --diameter)")
    return read_point_file(f, shape)


def cmd_predict(a) -> dict:
    from .checkpoint import load_model
    from .data.io import read_image
    from .predict import predict

    model = load_model(a.model)
    from .data.exports import write_coco, write_geojson, write_imagej_rois

    inputs = expand_inputs([Path(p) for p in a.inputs])
    keys = output_keys(inputs)
    out = Path(a.out)
    formats, coco = set(a.format or []), []
    n_cells, sizes = 0, {}
    for p, rel in zip(inputs, keys):
        img = read_image(p)
        if a.channel is not None:
            if not 0 <= a.channel < img.shape[0]:
                raise CksError(f"{p}: has {img.shape[0]} channel(s), no channel {a.channel}; "
                               f"use --channel 0..{img.shape[0] - 1}")
            img = img[a.channel:a.channel + 1]
        label, table, info = predict(model, img, score_threshold=a.score_threshold, scale=a.scale,
                                     diameter=a.diameter, tile=a.tile, size_from=a.size_from,
                                     points=_points_beside(p, img.shape[-2:]) if a.size_at_points else None,
                                     return_info=True)
        write_table(table, out / (str(rel) + ".csv"))  # the table first: a .labels.tif always has its .csv
        write_labels(label, out / (str(rel) + ".labels.tif"))
        if "imagej" in formats:
            write_imagej_rois(label, out / (str(rel) + ".rois.zip"))
        if "geojson" in formats:
            write_geojson(label, table, out / (str(rel) + ".geojson"))
        if "coco" in formats:
            coco.append((str(p), label, table))
        n_cells += len(table["label"])
        sizes[rel] = info
        size_txt = (f", cell size {info['diameter']:.1f} px ({info['diameter_source']})"
                    if info["diameter"] is not None else "")
        print(f"{p}: {len(table['label'])} cells at scale {info['scale']:.3f}{size_txt} -> "
              f"{out / (str(rel) + '.labels.tif')}")
    atomic_write_text(json.dumps(sizes, indent=1), out / "sizes.json")  # per image: scale, cell size, source
    if coco:
        write_coco(coco, out / "predictions.coco.json")
        print(f"COCO instances of all {len(coco)} image(s) -> {out / 'predictions.coco.json'}")
    return {"images": len(inputs), "cells": n_cells}


def cmd_evaluate(a) -> dict:
    from .data.io import read_label
    from .data.spec import load_dataset
    from .metrics import evaluate

    gts = load_dataset(a.gt, scale=1.0, points="none")
    pred_dir = Path(a.pred)
    preds = sorted(pred_dir.rglob("*.labels.tif"))
    if not preds:
        raise CksError(f"{pred_dir}: no *.labels.tif files; run `cks predict ... --out {pred_dir}` first")
    keys = {str(p.relative_to(pred_dir))[: -len(".labels.tif")]: p for p in preds}
    if any(g.get("label") is None for g in gts):
        raise CksError(f"{a.gt}: ground truth needs instance masks (label images)")
    labels, scores, gt_labels, names = [], [], [], []
    chosen = _match_predictions(gts, list(keys), pred_dir)
    for g, k in zip(gts, chosen):
        lab = read_label(keys[k])
        if lab.shape != g["label"].shape:
            raise CksError(f"{keys[k]}: size {lab.shape} differs from ground truth {g.get('image_path') or g['name']} "
                           f"{g['label'].shape}; predict the native-size images (cks predict maps back to input size)")
        labels.append(lab)
        table_path = keys[k].with_name(keys[k].name[: -len('.labels.tif')] + ".csv")
        sc = read_table_scores(table_path)
        unscored = sorted(set(np.unique(lab[lab > 0]).tolist()) - set(sc))
        if unscored:
            raise CksError(f"{table_path}: no row for label(s) {unscored[:5]} of {keys[k]}; the table and the label "
                           f"image are from different runs: re-run `cks predict`")
        scores.append(sc)
        gt_labels.append(g["label"])
        names.append(g["name"])
    pairs = [f"{k} <-> {g.get('name')}" for g, k in zip(gts, chosen)]
    print(f"evaluate: paired {len(pairs)} prediction(s) with ground truth by path: {'; '.join(pairs[:4])}"
          f"{'; ...' if len(pairs) > 4 else ''}")
    if a.bootstrap:
        from .bootstrap import evaluate_with_intervals

        r = evaluate_with_intervals(labels, scores, gt_labels, n_boot=a.bootstrap)
    else:
        r = evaluate(labels, scores, gt_labels)
    res = {"ap50": r["ap50"], "ap75": r["ap75"], "map": r["map"], "dice": r["dice"], "n_images": r["n_images"],
           "n_gt": r["n_gt"], "n_pred": r["n_pred"], "images": names, **({"ci95": r["ci95"]} if "ci95" in r else {})}
    print("| metric | value |\n|---|---|")
    for k in ("ap50", "ap75", "map", "dice"):
        ci = f" [{res['ci95'][k][0]:.4f}, {res['ci95'][k][1]:.4f}]" if "ci95" in res else ""
        print(f"| {dict(ap50='AP50', ap75='AP75', map='mAP', dice='Dice')[k]} | {res[k]:.4f}{ci} |")
    print(f"| images / GT cells / predicted | {r['n_images']} / {r['n_gt']} / {r['n_pred']} |")
    if a.json:
        atomic_write_text(json.dumps(res, indent=2), Path(a.json))
    print(json.dumps({k: res[k] for k in ("ap50", "ap75", "map", "dice", "n_gt", "n_pred")}))
    return res


def cmd_presets(a) -> dict:
    from .config import PRESETS, SIZES

    for name, diff in PRESETS.items():
        print(f"{name:40s} {json.dumps({k: v for k, v in diff.items()}) if diff else '(the paper, with size-relative prior d and L_MC on size-normalised images; paper_absolute: the paper as written)'}")
    print("\nsizes: " + ", ".join(SIZES))
    return {"presets": list(PRESETS)}


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cks", description="Point-supervised cell segmentation by collaborative "
                                "knowledge sharing (Yu, IEEE TMI 2023).",
                                epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def add(name, helptext):
        return sub.add_parser(name, help=helptext, description=helptext, epilog="example:\n  " + EXAMPLES[name],
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    d = add("demo", "train CKS from points on generated images (no download) and write a figure")
    d.add_argument("--out", default="demo_run", help="folder for the run and demo.png (default demo_run)")
    d.add_argument("--steps", type=int, help="training steps (default: the preset's, 600)")
    d.add_argument("--minutes", type=float, help="optional wall-time cap; the output says if it cut training short")
    d.add_argument("--preset", default="demo", help="see `cks presets` (default: demo)")

    q = add("points", "nuclear-stain image(s) -> point labels (JSON list in the author's format, read by `cks train --data`)")
    q.add_argument("inputs", nargs="+", help="nuclear-stain image files (TIFF/PNG), or a multi-channel image with --channel")
    q.add_argument("--out", required=True, help="points.json (image paths stored relative to its folder)")
    q.add_argument("--channel", type=int, default=0, help="channel of the nuclear stain (default 0)")
    q.add_argument("--background", type=int, default=101, help="background box size in px (default 101)")
    q.add_argument("--smooth", type=float, default=2.0, help="Gaussian sigma before LoG (default 2)")
    q.add_argument("--min-sigma", type=float, default=3.0, help="smallest LoG scale in px, about nucleus radius / 1.4 "
                   "(default 3; use 2 for small nuclei)")
    q.add_argument("--max-sigma", type=float, default=10.0, help="largest LoG scale in px (default 10; 6 for small nuclei)")
    q.add_argument("--threshold", type=float, default=0.15, help="LoG response threshold on the normalised image; "
                   "lower finds dimmer nuclei and more false ones (default 0.15)")

    t = add("train", "train a model (CKS from points, supervised from masks, or any ablation preset)")
    t.add_argument("--data", required=True, help="dataset spec PATH[:SELECTOR][@SCALE] (see cks.data.spec)")
    t.add_argument("--val", help="validation spec (needs masks); scored at native resolution")
    t.add_argument("--labels", choices=["points", "masks", "nuclei"], default="points",
                   help="points: the data's points (centroids of masks if only masks); masks: fully supervised; "
                        "nuclei: points detected on the nuclear channel")
    t.add_argument("--out", required=True, help="run folder (config.json, checkpoint.pt, metrics.jsonl, size_model.json)")
    t.add_argument("--preset", default="base", help="see `cks presets`")
    t.add_argument("--size", default="convnext_atto", help="model size: convnext_small (paper), convnext_atto, test")
    t.add_argument("--steps", type=int, help="training steps (default: the preset's on a GPU, 2000 on a CPU); "
                   "--minutes / --cpu-minutes may stop it earlier")
    t.add_argument("--crop-size", type=int, help="side of the random training crop in px (default: the preset's "
                   "512 on a GPU, 256 on a CPU)")
    t.add_argument("--minutes", type=float, help="wall-time budget; saves and stops when reached")
    t.add_argument("--cpu-minutes", type=float, help="CPU-time budget over all resumed segments; saves and stops")
    t.add_argument("--scale", type=float, help="fixed resize factor for training images (overrides @SCALE; "
                   "only with --set size.normalize=false)")
    t.add_argument("--diameter", type=float, help="cell size of the training images: median equivalent diameter "
                   "in px (default: measured from the masks, or estimated from the points)")
    t.add_argument("--size-from", choices=["auto", "masks", "given", "points"], default="auto",
                   help="where each training image's cell size comes from (auto: --diameter, else masks for "
                        "--labels masks, else an estimate from the points)")
    t.add_argument("--jitter", type=float, default=0.0, help="Gaussian jitter of the points, sigma in px")
    t.add_argument("--seed", type=int, default=0, help="seed for the point jitter (training seed: --set train.seed=N)")
    t.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. loss.prior_scale=0")
    t.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")

    r = add("predict", "segment images with a trained model -> label TIFF + CSV per image")
    r.add_argument("--model", required=True, help="run folder or checkpoint.pt")
    r.add_argument("inputs", nargs="+", help="image files or folders; results keep each input's relative path")
    r.add_argument("--out", required=True, help="output folder: NAME.labels.tif (instance ids) and NAME.csv (one row per "
                   "cell: label, score, y, x, area) per input")
    r.add_argument("--score-threshold", type=float, default=0.5, help="keep detections scoring at least this (0-1, "
                   "default 0.5); lower finds more cells and more false ones; tune it on images with masks")
    r.add_argument("--scale", type=float, help="resize factor (default: a size-normalised model estimates each "
                   "image's cell size; older models use their training scale)")
    r.add_argument("--diameter", type=float, help="cell size of the images: median equivalent diameter in px "
                   "(overrides the automatic estimate)")
    r.add_argument("--size-from", choices=["auto", "learned", "score", "points", "refined"], default="auto",
                   help="how a size-normalised model finds each image's cell size without --diameter: auto (the "
                        "run's learned size regressor, size_model.json, else the scale search), learned, score "
                        "(scale search), points (estimate at the detections), refined (learned, then measured at "
                        "the detections there); see cks.predict.predict")
    r.add_argument("--size-at-points", action="store_true",
                   help="measure each image's cell size at the point file beside it (same name, .csv/.json/.geojson/"
                        ".zip/.roi: clicks, or nuclei from `cks points`) instead of estimating it; the model still "
                        "finds and segments the cells itself")
    r.add_argument("--tile", type=int, default=1024, help="tile side for large images (default 1024)")
    r.add_argument("--channel", type=int, help="use only this channel of the input")
    r.add_argument("--format", nargs="+", choices=["imagej", "geojson", "coco"], metavar="FORMAT",
                   help="also write: imagej (NAME.rois.zip, Fiji ROI Manager), geojson (NAME.geojson, QuPath "
                        "detections), coco (predictions.coco.json for all inputs); label TIFF + CSV always")

    e = add("evaluate", "score predicted label images against ground truth (AP50, AP75, mAP, Dice)")
    e.add_argument("--pred", required=True, help="folder written by `cks predict`")
    e.add_argument("--gt", required=True, help="dataset spec with masks")
    e.add_argument("--json", help="also write the metrics to this file")
    e.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="add 95%% bootstrap intervals over images from N resamples (e.g. 1000)")

    add("presets", "list configuration presets (ablations) and model sizes")
    from .diagnose import add_parser as add_diagnose  # `cks diagnose` lives in cks/diagnose.py
    add_diagnose(sub)
    from .size_model import add_parser as add_size_model  # `cks size-model` lives in cks/size_model.py
    add_size_model(sub)
    return p


def main(argv=None) -> int:
    import logging

    logging.getLogger("tifffile").setLevel(logging.ERROR)  # damaged files are reported once, as an error
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        from .diagnose import run_cli as cmd_diagnose
        from .size_model import run_cli as cmd_size_model
        {"demo": cmd_demo, "points": cmd_points, "train": cmd_train, "predict": cmd_predict,
         "evaluate": cmd_evaluate, "presets": cmd_presets, "diagnose": cmd_diagnose,
         "size-model": cmd_size_model}[a.cmd](a)
    except (CksError, FloatingPointError) as e:
        print("error: " + " ".join(str(e).split()), file=sys.stderr)  # one line
        return 2
    except OSError as e:  # unwritable --out, disk full, ...
        print(f"error: {e.filename or ''}: {e.strerror or e}; check the path and free space", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (the last checkpoint is intact; use --resume)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``cks`` command line (also ``python -m cks``): demo, points, train, predict, evaluate, presets.

Every user error (bad file, unknown preset, incompatible checkpoint, ...) ends in a one-line
``error: ...`` message on stderr and exit status 2, never a traceback; outputs are written
atomically (temp file + rename), so an interrupted command never leaves a half-written file.

This module builds the parser and runs demo, points and presets; ``cks train`` is :mod:`cks.cli_train`,
``cks predict`` / ``cks evaluate`` :mod:`cks.cli_predict`, ``cks diagnose`` :mod:`cks.diagnose`,
``cks size-model`` :mod:`cks.size_model` and ``cks thresholds`` :mod:`cks.threshold`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli_predict import cmd_evaluate, cmd_predict
from .cli_train import DEFAULT_PRESETS, cmd_train
from .errors import CksError

EXAMPLES = {
    "demo": "cks demo --out demo_run            # ~1 min on 2 free cores: generated images, CKS from points, figure",
    "points": "cks points nuclear1.png nuclear2.png --out points.json --min-sigma 3 --max-sigma 10",
    "train": ("cks train --data usiigaci_nih3t3_phase/train:set1-16 --val usiigaci_nih3t3_phase/train:set17-20 "
              "--labels points --out runs/cks --size convnext_atto --minutes 30"),
    "predict": "cks predict --model runs/cks $CKS_DATA_DIR/usiigaci_nih3t3_phase/val/set*/raw.tif --out preds/",
    "evaluate": "cks evaluate --pred preds/ --gt usiigaci_nih3t3_phase/val:set46-50",
    "presets": "cks presets",
}


# ---------------------------------------------------------------- commands (train: cli_train.py; predict, evaluate: cli_predict.py)
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


def _image_named_like(nuclear: Path, folder: Path) -> Path:
    """The image in ``folder`` with the nuclear image's name (any image suffix): what the points are for."""
    from .data.readers import IMAGE_SUFFIXES

    for cand in [folder / nuclear.name] + [folder / (nuclear.stem + s) for s in IMAGE_SUFFIXES]:
        if cand.is_file():
            return cand
    raise CksError(f"{nuclear}: no image of the same name in --images {folder} ({nuclear.stem}.tif, .png, ...); "
                   f"name each image as its nuclear-stain image")


def cmd_points(a) -> dict:
    from .data.annotations import write_simple_json
    from .data.io import read_image
    from .points import points_from_nuclei

    kw = {"background_size": a.background, "smooth_sigma": a.smooth, "min_sigma": a.min_sigma,
          "max_sigma": a.max_sigma, "threshold": a.threshold}
    inputs = [Path(p) for p in a.inputs]
    out = Path(a.out)
    if out.suffix.lower() != ".json":
        raise CksError(f"{out}: --out must be a .json file (the point list `cks train --data` reads)")
    targets = [_image_named_like(p, Path(a.images)) for p in inputs] if a.images else inputs
    seen: dict[Path, Path] = {}
    for p, target in zip(inputs, targets):
        if target.resolve() in seen:
            raise CksError(f"{seen[target.resolve()]} and {p} both name {target}: one image would get two point lists; "
                           f"give the nuclear images of one folder at a time, each named as its image")
        seen[target.resolve()] = p
    records = []
    for p, target in zip(inputs, targets):
        img = read_image(p) if a.channel is None else read_image(p, channel=a.channel)  # explicit: any channel count
        shape = read_image(target).shape[-2:] if target is not p else img.shape[-2:]
        if shape != img.shape[-2:]:
            raise CksError(f"{target}: size {tuple(shape)} differs from its nuclear image {p} ({tuple(img.shape[-2:])}); "
                           f"the points would not fit it")
        pts = points_from_nuclei(img[0], **kw)
        records.append((target, pts))
        print(f"{p}: {len(pts)} points" + (f" (for {target})" if target is not p else ""))
    write_simple_json(out, records)  # image paths relative to the JSON's folder, as `cks train --data` reads them
    return {"images": len(records), "points": sum(len(r[1]) for r in records)}


def cmd_presets(a) -> dict:
    from .config import PRESETS, SIZES

    defaults = {p: [k for k, v in DEFAULT_PRESETS.items() if v == p] for p in DEFAULT_PRESETS.values()}
    for name, diff in PRESETS.items():
        mark = f"[cks train --labels {'/'.join(defaults[name])}] " if name in defaults else ""
        print(f"{name:40s} {mark}{json.dumps({k: v for k, v in diff.items()}) if diff else '(the paper, with size-relative prior d and L_MC on size-normalised images and our L_PW; paper_absolute: the paper as written)'}")
    print("\nsizes: " + ", ".join(SIZES))
    return {"presets": list(PRESETS)}


# ---------------------------------------------------------------- parser
def _version() -> str:
    """The installed package's version (``pip install -e .`` of pyproject.toml), or "unknown" in a bare checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cks")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cks", description="Point-supervised cell segmentation by collaborative "
                                "knowledge sharing (Yu, IEEE TMI 2023).",
                                epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"cks {_version()}")
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
    q.add_argument("--images", help="folder of the images to train on, named as the nuclear images (e.g. phase/ for "
                   "nuclei/*.tif): points.json then lists them, so `cks train --data points.json` trains on them "
                   "(default: it lists the nuclear images themselves)")
    q.add_argument("--channel", type=int, help="channel (0-based) of the nuclear stain, in an image with any number "
                   "of channels (default: the first of a 1-3 channel image)")
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
    t.add_argument("--preset", help="see `cks presets` (default by --labels: " + ", ".join(
        f"{v} for {k}" for k, v in DEFAULT_PRESETS.items()) + "; --resume without it also recognises base, the default "
        "before)")
    t.add_argument("--size", default="convnext_atto", help="model size: convnext_small (paper), convnext_atto "
                   "(default, CPU-sized), convnext_femto / convnext_pico / convnext_nano (larger encoders with atto's "
                   "heads), test")
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
    t.add_argument("--overwrite", action="store_true", help="replace the run already in --out (without it, a "
                   "folder that holds a run is refused)")

    r = add("predict", "segment images with a trained model -> label TIFF + CSV per image")
    r.add_argument("--model", required=True, help="run folder or checkpoint.pt")
    r.add_argument("inputs", nargs="+", help="image files or folders; results keep each input's relative path")
    r.add_argument("--out", required=True, help="output folder: NAME.labels.tif (instance ids) and NAME.csv (one row per "
                   "cell: label, score, y, x, area) per input")
    r.add_argument("--score-threshold", type=float, default=0.5, help="keep detections scoring at least this (0-1, "
                   "default 0.5); lower finds more cells and more false ones; tune it on images with masks "
                   "(`cks thresholds`)")
    r.add_argument("--mask-threshold", type=float, default=0.5, help="a pixel belongs to a cell where the mask "
                   "probability reaches this (0-1, default 0.5); lower draws larger cells (`cks thresholds`)")
    r.add_argument("--mask-resampling", choices=["label", "bilinear"], default="label", help="how masks of an image "
                   "shown at another scale return to its resolution: label (threshold at the model's resolution, "
                   "nearest neighbour back; default) or bilinear (resize each cell's mask, then threshold: boundaries "
                   "to a native pixel)")
    r.add_argument("--tta", choices=["none", "flips", "d4"], default="none", help="test-time augmentation of the "
                   "masks: each cell's mask averaged over the image flipped (flips: 4 orientations, 4x the time) or "
                   "flipped and transposed (d4: 8); the detections and their scores do not change (default none)")
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
    r.add_argument("--channel", type=int, help="use only this channel (0-based) of each input, which may have any "
                   "number of channels")
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
    from .threshold import add_parser as add_thresholds  # `cks thresholds` lives in cks/threshold.py
    add_thresholds(sub)
    return p


def main(argv=None) -> int:
    import logging

    logging.getLogger("tifffile").setLevel(logging.ERROR)  # damaged files are reported once, as an error
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        from .diagnose import run_cli as cmd_diagnose
        from .size_model import run_cli as cmd_size_model
        from .threshold import run_cli as cmd_thresholds
        {"demo": cmd_demo, "points": cmd_points, "train": cmd_train, "predict": cmd_predict,
         "evaluate": cmd_evaluate, "presets": cmd_presets, "diagnose": cmd_diagnose,
         "size-model": cmd_size_model, "thresholds": cmd_thresholds}[a.cmd](a)
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

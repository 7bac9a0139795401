"""``cks predict`` and ``cks evaluate``: images in, label images / tables / exports out; predictions against masks.

Part of the ``cks`` command line (:mod:`cks.cli`). Which input goes to which output name
(:func:`output_keys`) and which prediction belongs to which ground-truth image (:func:`_match_predictions`)
are decided by path, so ``cks evaluate --pred OUT`` finds what ``cks predict --out OUT`` wrote.
Outputs are written atomically (temp file + rename).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .data.writers import atomic_write_text, read_table_scores, write_labels, write_table
from .errors import CksError

__all__ = ["cmd_predict", "cmd_evaluate", "expand_inputs", "output_keys", "refuse_overwriting_inputs"]


def expand_inputs(paths: list[Path]) -> list[Path]:
    """Image files of the inputs: a file as given, a folder as its image files (recursive, sorted).

    A folder's label images (``*.labels.tif`` of an earlier ``cks predict``, Cellpose-style ``*_masks.tif``;
    :data:`cks.data.readers.MASK_PARTNERS`) are left out. A missing path or a folder without images is an error
    that names it.
    """
    from .data.readers import IMAGE_SUFFIXES, is_mask_file

    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES
                           and not is_mask_file(f))
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


def _match_predictions(gts: list[dict], keys: list[str], pred_dir: Path) -> list[str]:
    """The prediction key (path below ``pred_dir``, no suffix) of every ground-truth sample.

    A key matches an image when its trailing path components equal those of the image path (all of
    the key's components, or at least the file name and its folder); the longest match wins. Failing that, the
    one key with the image's file name matches (``cks predict images/`` writes ``images/a``, which pairs with a
    ground truth ``my_set_with_masks/a.tif``) where the file names the sample (not ``raw.tif`` of a Usiigaci
    ``set46/``, which its folder names); several such keys are no match.
    """
    kparts = {k: Path(k).parts for k in keys}
    chosen: list[str] = []
    seen: dict[str, str] = {}
    for g in gts:
        where = g.get("image_path") or g["name"]
        stem = Path(g["image_path"]).with_suffix("").parts if g.get("image_path") else Path(g["name"]).parts
        best, best_n, same_name = [], 0, []
        for k, kp in kparts.items():
            n = 0
            while n < min(len(kp), len(stem)) and kp[-1 - n] == stem[-1 - n]:
                n += 1
            if n >= 1:
                same_name.append(k)
            if n == 0 or not (n == len(kp) or n == len(stem) or n >= 2):
                continue
            if n > best_n:
                best, best_n = [k], n
            elif n == best_n:
                best.append(k)
        named_by_file = bool(g.get("image_path")) and Path(g["name"]).name == Path(g["image_path"]).stem
        if not best and named_by_file and len(same_name) == 1:  # not "raw" of set46/raw.tif: its folder names it
            best = same_name
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


def _points_beside(image_path: Path, shape) -> np.ndarray:
    """The points of the point file beside an image (``cks predict --size-at-points``)."""
    from .data.point_files import POINT_SUFFIXES, partner_point_file, read_point_file

    f = partner_point_file(image_path)
    if f is None:
        raise CksError(f"{image_path}: --size-at-points needs a point file beside the image with the same name "
                       f"({', '.join(POINT_SUFFIXES)}); add one, or drop --size-at-points (or give --diameter)")
    return read_point_file(f, shape)


#: what ``cks predict`` writes per input, after ``OUT/<key>``: always the first two, then one per ``--format``
OUTPUT_SUFFIXES = {"table": ".csv", "labels": ".labels.tif", "imagej": ".rois.zip", "geojson": ".geojson"}


def refuse_overwriting_inputs(inputs: list[Path], keys: list[str], out: Path, formats) -> None:
    """Refuse an ``--out`` where ``cks predict`` would write over an input or over an image's point file.

    An image's point file is ``NAME.csv`` / ``.geojson`` / ... beside ``NAME.tif`` (``cks.data.point_files``),
    the names of predict's own table and GeoJSON: with ``--out`` at the images' folder the results would replace
    a user's clicks, or, where there were none, be read as clicks later (``--size-at-points``, training from
    points). Checked before the model loads, so nothing is written.
    """
    from .data.point_files import POINT_SUFFIXES

    protected = {}
    for p in inputs:
        protected[p.resolve()] = f"the input image {p}"
        for suffix in POINT_SUFFIXES:
            protected.setdefault(p.with_suffix(suffix).resolve(), f"the point file of {p}")
    written = ["table", "labels"] + [f for f in ("imagej", "geojson") if f in set(formats or [])]
    targets = [out / (str(rel) + OUTPUT_SUFFIXES[kind]) for rel in keys for kind in written]
    targets += [out / "sizes.json"] + ([out / "predictions.coco.json"] if "coco" in set(formats or []) else [])
    for target in targets:
        target = target.resolve()
        if target in protected:
            raise CksError(f"--out {out} would write {target.name} over {protected[target]} (a point file is read "
                           f"by --size-at-points and by training from points); give an --out folder outside the "
                           f"images' folders, e.g. --out predictions")


def cmd_predict(a) -> dict:
    from .checkpoint import load_model
    from .data.exports import write_coco, write_geojson, write_imagej_rois
    from .data.io import read_image
    from .predict import predict

    inputs = expand_inputs([Path(p) for p in a.inputs])  # checked before the model loads
    keys = output_keys(inputs)
    out = Path(a.out)
    formats, coco = set(a.format or []), []
    refuse_overwriting_inputs(inputs, keys, out, formats)
    model = load_model(a.model)
    n_cells, sizes, failed = 0, {}, []
    for p, rel in zip(inputs, keys):
        try:  # one unreadable or unusable image is reported, and the others are still predicted
            img = read_image(p, channel=a.channel)  # --channel K: one plane of any number of channels
            label, table, info = predict(model, img, score_threshold=a.score_threshold,
                                         mask_threshold=a.mask_threshold, mask_resampling=a.mask_resampling, tta=a.tta,
                                         scale=a.scale, diameter=a.diameter, tile=a.tile, size_from=a.size_from,
                                         points=_points_beside(p, img.shape[-2:]) if a.size_at_points else None,
                                         return_info=True)
        except CksError as exc:
            if len(inputs) == 1:
                raise
            msg = " ".join(str(exc).split())
            failed.append(msg if str(p) in msg else f"{p}: {msg}")
            print(f"{p}: skipped (the reason is in the error at the end); the other images go on")
            continue
        base = str(rel)
        write_table(table, out / (base + OUTPUT_SUFFIXES["table"]))  # the table first: a .labels.tif has its .csv
        write_labels(label, out / (base + OUTPUT_SUFFIXES["labels"]))
        if "imagej" in formats:
            write_imagej_rois(label, out / (base + OUTPUT_SUFFIXES["imagej"]))
        if "geojson" in formats:
            write_geojson(label, table, out / (base + OUTPUT_SUFFIXES["geojson"]))
        if "coco" in formats:
            coco.append((str(p), label, table))
        n_cells += len(table["label"])
        sizes[rel] = info
        size_txt = (f", cell size {info['diameter']:.1f} px ({info['diameter_source']})"
                    if info["diameter"] is not None else "")
        print(f"{p}: {len(table['label'])} cells at scale {info['scale']:.3f}{size_txt} -> "
              f"{out / (str(rel) + '.labels.tif')}")
    if failed and len(failed) == len(inputs):
        raise CksError(f"none of the {len(inputs)} image(s) could be predicted. {' | '.join(failed[:3])}"
                       f"{f' | and {len(failed) - 3} more' if len(failed) > 3 else ''}")
    atomic_write_text(json.dumps(sizes, indent=1), out / "sizes.json")  # per image: scale, cell size, source
    if coco:
        write_coco(coco, out / "predictions.coco.json")
        print(f"COCO instances of all {len(coco)} image(s) -> {out / 'predictions.coco.json'}")
    if failed:
        raise CksError(f"{len(failed)} of {len(inputs)} image(s) could not be predicted, the other "
                       f"{len(inputs) - len(failed)} are in {out}. {' | '.join(failed[:3])}"
                       f"{f' | and {len(failed) - 3} more' if len(failed) > 3 else ''}")
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

"""How much IoU does the segmentation head's mask grid cost by itself? A model-free ceiling (no report field).

    python benchmarks/mask_resolution.py --protocol usiigaci_points_v2

``predict`` rescales each image so its cells are ``size.diameter`` (32) px across, the segmentation head draws each
cell's logits on a stride-2 grid (a 2x2 transposed convolution of the stride-4 features, bilinearly resized to its
S x S window), thresholds them at 0.5 and maps the label image back to the input's resolution by nearest neighbour
(:mod:`cks.predict`). This script sends the *true* masks through the same chain, with nothing learned in it: each
field is rescaled by its true median cell diameter to 32 px (bilinear, antialiased), each cell's mask is averaged
over the head's grid (``--strides``: 1 = model resolution only, 2 = the head's grid, 4 = the feature grid),
resized back up (bilinear), thresholded at 0.5, pasted (largest value wins) and mapped back to the input's
resolution (nearest). The AP75, IoU and Dice of these "perfect" masks against the masks they came from are the
ceiling of that chain: a finer mask head can gain at most the distance between the stride-2 row and 1.0.

It reads the protocol's tuning and training fields only (it fits and chooses nothing). Writes
``results/<protocol>/mask_resolution.json``.
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

WHAT = ("model-free ceiling of predict's mask chain: the true masks rescaled to the model's cell size (by each "
        "field's true median diameter), averaged on the segmentation head's grid (stride), resized back to the "
        "model's resolution and returned to the input's (back: threshold, then nearest or pixel-centred nearest "
        "neighbour; or bilinear resize, then threshold), scored against themselves; tuning and training fields "
        "only, no model")
CHUNK = 16  # cells resized together (memory: CHUNK x H x W floats)


def ceiling_label(label: np.ndarray, scale: float, stride: int, back: str = "nearest"):
    """The true ``label [H, W]`` sent through predict's mask chain at ``scale`` on a ``stride`` grid.

    ``back="nearest"`` thresholds at model resolution and maps the label image back by nearest neighbour (what
    ``predict`` does); ``back="bilinear"`` resizes each cell's mask values back (bilinear) and thresholds at the
    input's resolution. Returns ``(label [H, W] int32, ids [K])``: ids of the cells that survive (same numbers as
    ``label``). Loops over chunks of ``CHUNK`` cells, not over cells.
    """
    import torch
    import torch.nn.functional as F

    h, w = label.shape
    hs, ws = max(1, round(h * scale)), max(1, round(w * scale))
    ids = np.unique(label)
    ids = ids[ids > 0]
    grid = (h, w) if back == "bilinear" else (hs, ws)
    best = torch.zeros(grid)
    owner = torch.zeros(grid, dtype=torch.int64)
    lab = torch.from_numpy(label.astype(np.int64))
    for start in range(0, ids.size, CHUNK):
        chunk = torch.from_numpy(ids[start:start + CHUNK].astype(np.int64))
        onehot = (lab[None] == chunk[:, None, None]).float()[:, None]  # [k, 1, H, W]
        m = F.interpolate(onehot, size=(hs, ws), mode="bilinear", align_corners=False, antialias=True)
        if stride > 1:
            m = F.avg_pool2d(m, stride, stride, ceil_mode=True)
            m = F.interpolate(m, size=(hs, ws), mode="bilinear", align_corners=False)
        if back == "bilinear":
            m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        val, arg = m[:, 0].max(0)
        win = val > best
        best[win] = val[win]
        owner[win] = chunk[arg[win]]
    out = torch.where(best >= 0.5, owner, torch.zeros_like(owner))
    if back != "bilinear":
        out = F.interpolate(out[None, None].float(), size=(h, w), mode=back)[0, 0].long()
    out = out.numpy()
    return out.astype(np.int32), np.unique(out[out > 0])


def matched_iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of each true cell with the predicted cell of the same id (0 where it vanished), ``[K]``."""
    ids = np.unique(gt)
    ids = ids[ids > 0]
    n = int(max(gt.max(), pred.max())) + 1
    inter = np.bincount(gt.ravel()[(gt.ravel() == pred.ravel()) & (gt.ravel() > 0)], minlength=n)
    area_g, area_p = np.bincount(gt.ravel(), minlength=n), np.bincount(pred.ravel(), minlength=n)
    return inter[ids] / (area_g[ids] + area_p[ids] - inter[ids])


def main(argv=None) -> dict:
    from benchmarks.protocol import PROTOCOLS
    from cks.config import SizeConfig
    from cks.data.spec import load_dataset
    from cks.data.writers import atomic_write_text
    from cks.metrics import evaluate
    from cks.provenance import git_commit, hardware
    from cks.size import median_diameter

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    p.add_argument("--splits", nargs="+", default=["tune", "train"], choices=["tune", "train"],
                   help="which of the protocol's splits to read (never the report split)")
    p.add_argument("--strides", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--back", nargs="+", default=["nearest", "bilinear"], choices=["nearest", "nearest-exact", "bilinear"],
                   help="how the masks return to the input's resolution (predict: nearest)")
    p.add_argument("--diameter", type=float, default=SizeConfig().diameter, help="model cell size, px")
    a = p.parse_args(argv)
    proto = PROTOCOLS[a.protocol]
    rec = {"what": WHAT, "protocol": a.protocol, "diameter": a.diameter, "splits": {},
           "command": "python benchmarks/mask_resolution.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    t0 = time.time()
    for split in a.splits:
        samples = load_dataset(proto[split], scale=1.0, points="none")
        rows = {}
        for back, stride in ((b, st) for b in a.back for st in a.strides):
            preds, gts, scores, ious = [], [], [], []
            for s in samples:
                gt = np.asarray(s["label"]).astype(np.int32)
                scale = a.diameter / median_diameter(gt)
                pred, ids = ceiling_label(gt, scale, stride, back)
                preds.append(pred)
                gts.append(gt)
                scores.append({int(i): 1.0 for i in ids})
                ious.append(matched_iou(pred, gt))
            m = evaluate(preds, scores, gts)
            iou = np.concatenate(ious)
            key = f"stride{stride}_{back}"
            rows[key] = {"stride": stride, "back": back, "ap50": round(float(m["ap50"]), 4),
                         "ap75": round(float(m["ap75"]), 4), "ap90": round(float(m["ap"].get(0.9, math.nan)), 4),
                         "dice": round(float(m["dice"]), 4), "iou_median": round(float(np.median(iou)), 4),
                         "iou_p10": round(float(np.percentile(iou, 10)), 4),
                         "frac_iou_below_075": round(float(np.mean(iou < 0.75)), 4), "n_cells": int(iou.size)}
            print(split, key, json.dumps(rows[key]), flush=True)
        rec["splits"][split] = {"spec": proto[split], "n_fields": len(samples), "rows": rows}
    rec.update(wall_s=round(time.time() - t0, 1), git_commit=git_commit(), hardware=hardware())
    out = ROOT / "results" / a.protocol / "mask_resolution.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(rec, indent=1) + "\n", out)
    return rec


if __name__ == "__main__":
    main()

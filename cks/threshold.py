"""Choosing the detection score threshold (and the mask threshold) on a tuning split.

``predict`` pastes masks in descending score order, the higher-scoring cell winning every overlap, so a
lower-scoring cell never takes a pixel from a higher one. Dropping every cell below ``t`` from a label
image predicted at a low threshold therefore gives exactly the label image predicted at ``t``:
one prediction pass serves every candidate threshold (:func:`apply_threshold`).

AP (Eq. 9) ranks by score and cannot rise when low-scoring detections are removed, so it cannot choose
a threshold. The count of reported cells and the F1 score at IoU 0.5 can: :func:`tune_score_threshold`
picks the threshold that maximises F1 at IoU 0.5 pooled over the tuning images (ties: the lower one).

The mask threshold (``predict``'s ``mask_threshold``: a pixel belongs to a cell where the sigmoid of the
segmentation head's logit reaches it; 0.5 by default) moves every mask's boundary, so it changes IoU and Dice
(Eq. 15) as well as which cells match. It needs one prediction pass per candidate:
:func:`tune_mask_threshold` chooses it with the score threshold, on the same F1 objective.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .metrics import intersections, iou_from_intersections, match_at_iou, _scores_for_ids

#: candidate thresholds (the detector's own floor is ``detector.min_score`` = 0.2)
DEFAULT_GRID = tuple(np.round(np.arange(0.2, 0.951, 0.05), 2))


def apply_threshold(label: np.ndarray, scores: dict[int, float], t: float) -> tuple[np.ndarray, dict[int, float]]:
    """``label`` with every cell whose score is below ``t`` set to 0 (ids kept), and the kept scores."""
    ids = np.fromiter(scores.keys(), dtype=np.int64, count=len(scores))
    sc = np.fromiter(scores.values(), dtype=np.float64, count=len(scores))
    lut = np.zeros(int(max(label.max(initial=0), ids.max(initial=0))) + 1, label.dtype)
    keep = sc >= t
    lut[ids[keep]] = ids[keep]
    return lut[label], {int(i): float(s) for i, s in zip(ids[keep], sc[keep])}


def f1_at_iou(labels: list, scores: list, gts: list, iou: float = 0.5) -> dict:
    """Pooled F1 at one IoU threshold: greedy score-ordered matching as in :func:`cks.metrics.evaluate`."""
    tp = n_pred = n_gt = 0
    for lab, sc, gt in zip(labels, scores, gts):
        pred_ids, gt_ids, pa, ga, inter = intersections(lab, gt)
        s = _scores_for_ids(sc, pred_ids)
        flags = match_at_iou(iou_from_intersections(pa, ga, inter), s, iou)
        tp += int(np.sum(flags))
        n_pred += int(pred_ids.size)
        n_gt += int(gt_ids.size)
    prec = tp / n_pred if n_pred else 0.0
    rec = tp / n_gt if n_gt else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0
    return {"f1": f1, "precision": prec, "recall": rec, "n_pred": n_pred, "n_gt": n_gt}


def tune_score_threshold(labels: list, scores: list, gts: list, grid=DEFAULT_GRID) -> dict:
    """The threshold in ``grid`` maximising pooled F1 at IoU 0.5 on (predicted at the grid's lowest value) labels.

    Returns ``{"threshold", "f1", "count_ratio", "table": [{threshold, f1, precision, recall, n_pred, n_gt}]}``.
    """
    table = []
    for t in grid:
        cut = [apply_threshold(lab, sc, float(t)) for lab, sc in zip(labels, scores)]
        r = f1_at_iou([c[0] for c in cut], [c[1] for c in cut], gts)
        table.append({"threshold": float(t), **r})
    best = max(table, key=lambda r: (r["f1"], -r["threshold"]))
    return {"threshold": best["threshold"], "f1": best["f1"],
            "count_ratio": best["n_pred"] / best["n_gt"] if best["n_gt"] else float("nan"), "table": table}


#: candidate mask thresholds of :func:`tune_mask_threshold`
MASK_GRID = (0.3, 0.4, 0.5, 0.6, 0.7)


def tune_mask_threshold(model, samples, grid=MASK_GRID, size="auto", objective: str = "f1",
                        score_grid=DEFAULT_GRID, **predict_kw) -> dict:
    """Choose the mask threshold and the score threshold together on tuning ``samples`` (with masks).

    For each mask threshold ``m`` in ``grid``, every sample is predicted once at ``m`` and the lowest score in
    ``score_grid``; :func:`tune_score_threshold` then picks the score threshold at that ``m``, and the labels cut
    there are scored with :func:`cks.metrics.evaluate` (AP50, AP75, Dice of Eq. 15). Each image's scale is found
    once (``size``, as in :func:`cks.evaluation.predict_many`; ``predict`` finds a size at mask threshold 0.5
    whatever the candidate) on the first candidate and reused, so the candidates differ in the mask threshold alone.
    The score threshold is always chosen by F1; among the candidates, the one with the highest ``objective`` wins
    (``"f1"``: pooled F1 at IoU 0.5; ``"dice"``: Dice at the chosen score threshold), :func:`best_row`.

    Args:
        model: a principal model. samples: sample dicts with ``"image"`` and ``"label"``.
        grid: candidate mask thresholds in (0, 1). predict_kw: passed to :func:`cks.predict.predict` (e.g.
            ``size_from``, ``tile``; not the thresholds, ``scale``, ``diameter`` or ``points``: ``size`` sets those).
    Returns:
        ``{"mask_threshold", "score_threshold", "objective", "table": [{"mask_threshold", "score_threshold",
        "f1", "ap50", "ap75", "dice", "n_pred", "n_gt", "foreground_px"}, ...]}``; ``foreground_px`` counts the
        pixels of all predicted cells at the lowest score threshold (it cannot grow with ``m``).
    Raises:
        CksConfigError: an empty grid, a threshold outside (0, 1), an unknown objective, a sample without masks or
            a ``predict_kw`` that this function sets itself.
    """
    from .errors import CksConfigError
    from .evaluation import _size_kwargs
    from .metrics import evaluate
    from .predict import predict, scores_by_label

    grid = [float(m) for m in grid]
    if not grid or not all(0.0 < m < 1.0 for m in grid):
        raise CksConfigError(f"mask thresholds must be in (0, 1) and at least one, got {grid}")
    if objective not in ("f1", "dice"):
        raise CksConfigError(f"objective must be 'f1' or 'dice', got {objective!r}")
    if not samples or any(s.get("label") is None for s in samples):
        raise CksConfigError("choosing thresholds needs images with masks (a label image per image); give a tuning "
                             "set with masks")
    taken = sorted(set(predict_kw) & {"scale", "diameter", "points", "score_threshold", "mask_threshold", "return_info"})
    if taken:
        raise CksConfigError(f"tune_mask_threshold sets {', '.join(taken)} itself; give the cell size as size=")
    gts = [s["label"] for s in samples]
    scales: list = [None] * len(samples)
    table = []
    for m in grid:
        labels, scores = [], []
        for k, s in enumerate(samples):
            where = _size_kwargs(model, s, size) if scales[k] is None else {"scale": scales[k]}
            lab, tab, info = predict(model, s["image"], score_threshold=float(score_grid[0]), mask_threshold=m,
                                     return_info=True, **where, **predict_kw)
            scales[k] = info["scale"]
            labels.append(lab)
            scores.append(scores_by_label(tab))
        tuned = tune_score_threshold(labels, scores, gts, grid=score_grid)
        cut = [apply_threshold(lab, sc, tuned["threshold"]) for lab, sc in zip(labels, scores)]
        r = evaluate([c[0] for c in cut], [c[1] for c in cut], gts)
        table.append({"mask_threshold": m, "score_threshold": tuned["threshold"], "f1": tuned["f1"],
                      "ap50": r["ap50"], "ap75": r["ap75"], "dice": r["dice"], "n_pred": r["n_pred"],
                      "n_gt": r["n_gt"], "foreground_px": int(sum(int((lab > 0).sum()) for lab in labels))})
    best = best_row(table, objective)
    return {"mask_threshold": best["mask_threshold"], "score_threshold": best["score_threshold"],
            "objective": objective, "table": table}


def best_row(table: list[dict], objective: str = "f1") -> dict:
    """The row of :func:`tune_mask_threshold`'s table with the highest ``objective``; ties go to the mask threshold
    nearest 0.5 (the default), then to the lower one."""
    return max(table, key=lambda r: (r[objective], -round(abs(r["mask_threshold"] - 0.5), 9), -r["mask_threshold"]))


def add_parser(subparsers):
    """Register ``cks thresholds --model RUN --data SPEC [--mask-grid M ...] [--objective f1|dice] [--json F]``."""
    import argparse

    text = ("choose the score and mask thresholds of `cks predict` on images with masks (a tuning set, not the "
            "images you report on)")
    p = subparsers.add_parser("thresholds", help=text, description=text,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="example:\n  cks thresholds --model runs/cks --data usiigaci_nih3t3_phase/train:set17-20")
    p.add_argument("--model", required=True, help="run folder or checkpoint.pt")
    p.add_argument("--data", required=True, help="dataset spec with masks, PATH[:SELECTOR] (see cks.data.spec)")
    p.add_argument("--mask-grid", nargs="+", type=float, default=list(MASK_GRID), metavar="M",
                   help=f"candidate mask thresholds in (0, 1) (default {' '.join(map(str, MASK_GRID))})")
    p.add_argument("--objective", choices=["f1", "dice"], default="f1",
                   help="how the mask threshold is chosen: F1 at IoU 0.5 pooled over the images (default) or Dice; "
                        "the score threshold is always the one with the best F1 at that mask threshold")
    p.add_argument("--diameter", type=float, help="cell size of the images in px (default: the model's estimate)")
    p.add_argument("--size-from", choices=["auto", "learned", "score", "points", "refined"], default="auto",
                   help="how the model finds each image's cell size without --diameter, as in cks predict")
    p.add_argument("--mask-resampling", choices=["label", "bilinear"], default="label",
                   help="as in cks predict: tune the thresholds for the way you will predict")
    p.add_argument("--tta", choices=["none", "flips", "d4"], default="none",
                   help="as in cks predict (mask test-time augmentation): tune for the way you will predict")
    p.add_argument("--json", help="also write the table and the choice to this file")
    return p


def run_cli(args) -> dict:
    from .checkpoint import load_model
    from .data.spec import load_dataset
    from .data.writers import atomic_write_text

    model = load_model(args.model)
    samples = load_dataset(args.data, scale=1.0, points="none")
    r = tune_mask_threshold(model, samples, grid=args.mask_grid, size="auto" if args.diameter is None else args.diameter,
                            objective=args.objective, size_from=args.size_from,
                            mask_resampling=args.mask_resampling, tta=args.tta)
    print("mask  score    F1   AP50   AP75   Dice  cells (true)")
    for row in r["table"]:
        print(f"{row['mask_threshold']:4.2f}  {row['score_threshold']:5.2f} {row['f1']:5.3f}  {row['ap50']:5.3f}  "
              f"{row['ap75']:5.3f}  {row['dice']:5.3f}  {row['n_pred']} ({row['n_gt']})")
    size = (f" --diameter {args.diameter}" if args.diameter is not None else
            f" --size-from {args.size_from}" if args.size_from != "auto" else "")
    if args.mask_resampling != "label":
        size += f" --mask-resampling {args.mask_resampling}"
    if args.tta != "none":
        size += f" --tta {args.tta}"
    print(f"chosen by {r['objective']}: cks predict --model {args.model} --score-threshold {r['score_threshold']} "
          f"--mask-threshold {r['mask_threshold']}{size} ...")
    if args.json:
        import json

        atomic_write_text(json.dumps({**r, "model": str(args.model), "data": args.data,
                                      "mask_resampling": args.mask_resampling, "tta": args.tta}, indent=1), Path(args.json))
    return r


__all__ = ["DEFAULT_GRID", "MASK_GRID", "apply_threshold", "f1_at_iou", "tune_score_threshold", "tune_mask_threshold",
           "best_row", "add_parser", "run_cli"]

"""Predict a set of images and score it: the one path used by training validation, the protocols and the book.

* :func:`predict_many` runs :func:`cks.predict.predict` on every image (at a given cell size, at each
  image's true size from its masks, or at the model's own estimate) and keeps what each call returns;
* :func:`evaluate_model` scores those predictions against the masks with :func:`cks.metrics.evaluate`
  (AP of Eq. 9 at IoU 0.5 / 0.75, mAP, Dice of Eq. 15), optionally with bootstrap intervals, and reports
  the cell size each image was predicted at.

Example (generated images, an untrained tiny model: the numbers are meaningless, the path is the point)::

    >>> from cks.config import get_preset
    >>> from cks.models import Principal
    >>> from cks.data.synthetic import synthetic_sample
    >>> model = Principal(get_preset("base", size="test")).eval()
    >>> val = [synthetic_sample((96, 96), n_cells=5, seed=s) for s in range(2)]
    >>> r = evaluate_model(model, val, size="true")
    >>> sorted(k for k in r if k in ("ap50", "dice", "n_gt"))
    ['ap50', 'dice', 'n_gt']
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import CksConfigError


def true_size_factor(size) -> float | None:
    """K of a ``"true*K"`` size (K x each image's true cell size), ``None`` for any other size.

    Raises:
        CksConfigError: ``"true*"`` followed by anything but a number > 0.
    """
    if not (isinstance(size, str) and size.startswith("true*")):
        return None
    try:
        factor = float(size[5:])
    except ValueError:
        factor = float("nan")
    if not (np.isfinite(factor) and factor > 0):
        raise CksConfigError(f"size={size!r}: the factor after 'true*' must be a number > 0, e.g. 'true*0.8'")
    return factor


def _size_kwargs(model, sample, size) -> dict:
    """predict() keywords for one image: ``size`` = "auto" | "true" | "true*K" | "points" | "model" | a diameter in px."""
    from .size import median_diameter

    factor = true_size_factor(size)  # K x the true size: what a size error costs
    if factor is None:
        factor = 1.0
    else:
        size = "true"
    if size == "auto":
        return {}
    if size == "points":
        if sample.get("points") is None:
            raise CksConfigError("size='points' needs points (a 'points' [N, 2] array per sample, e.g. "
                                 "load_dataset(..., points='nuclei')) to measure each image's cell size at")
        return {"points": sample["points"]}
    if size == "true":
        if sample.get("label") is None:
            raise CksConfigError("size='true' needs masks (a 'label' per sample) to measure each image's cell size")
        if not getattr(getattr(model, "cfg", None), "size", None) or not model.cfg.size.normalize:
            return {"scale": float(getattr(model, "scale", 1.0)) / factor}  # a fixed-scale model has one size
        return {"diameter": median_diameter(sample["label"]) * factor}
    if size == "model":
        return {"scale": float(getattr(model, "scale", 1.0))}
    try:
        return {"diameter": float(size)}
    except (TypeError, ValueError):
        raise CksConfigError(f"size must be 'auto', 'true', 'true*K', 'points', 'model' or a diameter in px, "
                             f"got {size!r}") from None


def predict_many(model, samples: Sequence, size="auto", score_threshold: float = 0.5, **predict_kw) -> list[tuple]:
    """:func:`cks.predict.predict` on every image; returns ``[(label, table, info), ...]``.

    Args:
        model: a principal model (:func:`cks.checkpoint.load_model`).
        samples: sample dicts (with ``"image"``; ``"label"`` for ``size="true"``) or bare image arrays.
        size: ``"auto"`` (the model's own estimate of each image's cell size), ``"true"`` (each image's
            median equivalent diameter from its masks: scores segmentation alone), ``"true*K"`` (K times that:
            what a size estimate off by that factor costs), ``"points"`` (measured at
            each sample's ``"points"``, :func:`cks.size.estimate_diameter`), ``"model"`` (the model's
            training scale) or a diameter in px for every image.
        score_threshold, predict_kw: passed to :func:`cks.predict.predict`.
    """
    from .predict import predict

    out = []
    for s in samples:
        sample = s if isinstance(s, dict) else {"image": s}
        out.append(predict(model, sample["image"], score_threshold=score_threshold, return_info=True,
                           **_size_kwargs(model, sample, size), **predict_kw))
    return out


def evaluate_model(model, samples: Sequence[dict], size="auto", score_threshold: float = 0.5, bootstrap: int = 0,
                   **predict_kw) -> dict:
    """Predict ``samples`` (:func:`predict_many`) and score them against their masks.

    Returns:
        :func:`cks.metrics.evaluate`'s dict (``ap50, ap75, map, dice, n_gt, n_pred, ...``; with ``bootstrap`` >
        0 also ``ci95`` from :func:`cks.bootstrap.evaluate_with_intervals`) plus ``images`` (names),
        ``sizes`` (per image: true and used cell size in px, scale, source), ``count_ratio`` (predicted /
        true cells) and ``predictions`` (what :func:`predict_many` returned, for figures).
    """
    from .metrics import evaluate
    from .predict import scores_by_label
    from .size import median_diameter

    if any(s.get("label") is None for s in samples):
        raise CksConfigError("evaluate_model needs masks: every sample must have a 'label' image")
    preds = predict_many(model, samples, size=size, score_threshold=score_threshold, **predict_kw)
    labels, scores = [p[0] for p in preds], [scores_by_label(p[1]) for p in preds]
    gts = [s["label"] for s in samples]
    if bootstrap:
        from .bootstrap import evaluate_with_intervals

        r = evaluate_with_intervals(labels, scores, gts, n_boot=bootstrap)
    else:
        r = evaluate(labels, scores, gts)
    sizes = [{"name": s.get("name", str(i)), "true_diameter": median_diameter(s["label"]),
              "diameter": p[2]["diameter"], "scale": p[2]["scale"], "source": p[2]["diameter_source"]}
             for i, (s, p) in enumerate(zip(samples, preds))]
    return {**r, "images": [z["name"] for z in sizes], "sizes": sizes,
            "count_ratio": r["n_pred"] / max(r["n_gt"], 1), "predictions": preds}


__all__ = ["predict_many", "evaluate_model", "true_size_factor"]

"""How :func:`cks.predict.predict` finds the scale of an image whose cell size it is not given.

A size-normalised model was trained with every image resized so that its cells are ``size.diameter`` px across; a
new image has to be shown to it the same way. ``predict(size_from=...)`` chooses how its cell size is found: the
learned regressor (:mod:`cks.size_model`, the default where the run has one), a scale search over the detector's
confidence, the cell size measured at the model's own detections, or both of the last two
(see :func:`cks.predict.predict` for what each measured). Points given by the user (a nuclear stain, clicks)
measure the size at them (:func:`_diameter_at_points`). Each ``_scale_by_*`` function returns
``(scale, passes, source)``: the resize factor, how many full prediction passes it cost and a phrase for
``info["diameter_source"]``.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .errors import CksDataError


def _predict_at(*args, **kwargs):
    """:func:`cks.predict._predict_at` (imported at call time: :mod:`cks.predict` imports this module)."""
    from .predict import _predict_at as run

    return run(*args, **kwargs)


def _diameter_at_points(image, points) -> float:
    """:func:`cks.size.estimate_diameter` at user-given points ``[N, 2]`` (y, x), with errors that say what to do."""
    from .size import estimate_diameter

    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise CksDataError(f"points must be [N, 2] (y, x), got shape {pts.shape}")
    if len(pts) < 2:
        raise CksDataError(f"{len(pts)} point(s) given: measuring the cell size needs at least 2; give the size "
                           f"instead (diameter= / --diameter) or let the model estimate it (no points)")
    return float(estimate_diameter(image, pts))


#: the scale search tries ``model.scale * 2^(k / 3)`` for ``k`` in SEARCH_STEPS (0.4x to 2.5x)
SEARCH_STEPS = tuple(range(-4, 5))

#: the search predicts a central crop whose side is at most this many px at the largest scale tried
SEARCH_SIDE = 1024

#: a scale's confidence: the mean of its TOP_N best detection scores (fewer detections count as 0)
TOP_N = 20

#: the values of ``predict(size_from=...)``
SIZE_FROM = ("auto", "learned", "score", "points", "refined")

#: detections below this score are ignored by the scale search
SEARCH_MIN_SCORE = 0.3

#: only detections scoring at least this measure the cell size in ``size_from="points"``
SIZE_MIN_SCORE = 0.5

#: fewer confident cells than this: too few to measure a size, the training scale stands
MIN_CELLS_FOR_SIZE = 3


def _top_confidence(scores: np.ndarray, n: int = TOP_N) -> float:
    """Mean of the ``n`` best scores, missing ones counted as 0 (a scale that finds few cells is not sure)."""
    top = np.sort(np.asarray(scores, np.float64))[::-1][:n]
    return float(top.sum() / n)


def _scale_by_score(model, img: np.ndarray, **kw) -> tuple[float, int, str]:
    """The scale at which the model is most confident (see ``size_from="score"`` of :func:`predict`).

    Returns ``(scale, passes, source)``; the training scale when no scale finds a confident cell, and when the
    confidence is highest at an end of the searched range (no peak inside it: the search cannot tell the
    size; on DeepCell test fields it ran to the largest scale, 2.5x, where the true one was 1x) -- then with
    a ``UserWarning`` that says to give the cell size.
    """
    s0 = float(getattr(model, "scale", 1.0))
    factors = np.array([2.0 ** (k / 3.0) for k in SEARCH_STEPS])
    h, w = img.shape[-2:]
    side = max(32, int(SEARCH_SIDE / (s0 * factors.max())))  # native px; the same cells at every scale
    y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
    crop = img[:, y0:y0 + side, x0:x0 + side]
    kw = dict(kw, score_threshold=SEARCH_MIN_SCORE)  # the search is the same whatever the reporting threshold
    conf = np.array([_top_confidence(_predict_at(model, crop, s0 * f, **kw)[1]["score"]) for f in factors])
    if not (conf > 0).any():
        return s0, len(factors), "training scale (the scale search found no confident cell)"
    i = int(np.argmax(conf))
    if i in (0, len(factors) - 1):
        warnings.warn(f"the scale search found no peak of confidence within {factors[0] * s0:.3g}-"
                      f"{factors[-1] * s0:.3g}x (highest at the {'smallest' if i == 0 else 'largest'} scale), so "
                      f"it predicts at the training scale {s0:.3g}; if the cells differ in size from the training "
                      f"images, give their size (predict(diameter=...) or cks predict --diameter)", UserWarning,
                      stacklevel=4)
        return s0, len(factors), "training scale (the scale search found no peak)"
    log_f = math.log2(factors[i])
    if 0 < i < len(factors) - 1:  # vertex of the parabola through the best and its neighbours (log-scale)
        a, b, c = conf[i - 1], conf[i], conf[i + 1]
        curv = a - 2 * b + c
        if curv < 0:
            log_f += float(np.clip(0.5 * (a - c) / curv, -0.5, 0.5)) / 3.0
    return s0 * 2.0 ** log_f, len(factors), "estimated (score)"


def _scale_by_regressor(model, img: np.ndarray) -> tuple[float, int, str]:
    """The scale from the model's learned size regressor (``size_from="learned"``, ``REGRESSOR_PASSES`` backbone
    passes), with a ``UserWarning`` where it cannot be trusted: an image less than ``REGRESSOR_MIN_CELLS`` cells
    across at the size found (a 64 x 1,024 px strip of a Usiigaci field read 5x the true size), or an answer at an
    end of the scales the regressor was fitted on. An image under 2 px on a side starts at the training scale
    (where ``size_from="refined"`` then measures its detections as usual)."""
    from .size_model import estimate_diameter_learned, scale_limits

    h, w = img.shape[-2:]
    advice = "give the cell size (predict(diameter=...) or cks predict --diameter)"
    if min(h, w) < 2:
        warnings.warn(f"a {h} x {w} px image is too small to estimate its cell size; predicting at the training "
                      f"scale; {advice}", UserWarning, stacklevel=4)
        return float(getattr(model, "scale", 1.0)), 0, "training scale (image too small to estimate the size)"
    diameter, scale = estimate_diameter_learned(model, model.size_model, img, passes=REGRESSOR_PASSES)
    lo, hi = scale_limits(model, model.size_model)
    if min(h, w) < REGRESSOR_MIN_CELLS * diameter:
        warnings.warn(f"the {h} x {w} px image is less than {REGRESSOR_MIN_CELLS} cells of the estimated size "
                      f"({diameter:.3g} px) across: too little to estimate the cell size reliably; {advice}",
                      UserWarning, stacklevel=4)
    elif not lo * 1.001 < scale < hi / 1.001:
        warnings.warn(f"the size regressor's answer ({diameter:.3g} px) is at the end of the sizes it was fitted "
                      f"on; {advice}", UserWarning, stacklevel=4)
    return scale, 0, "estimated (learned)"  # 0 full prediction passes: the regressor runs the backbone only


#: the learned size estimate warns on images fewer than this many estimated cell diameters across
REGRESSOR_MIN_CELLS = 4


#: ``size_from="learned"``: measure at the training scale, then once more at the scale that gives
REGRESSOR_PASSES = 2


def _scale_by_points(model, img: np.ndarray, start: float | None = None, max_range: float | None = None,
                     **kw) -> tuple[float, int, str]:
    """Predict, estimate the size at the confident detections, rescale; repeat (``size_from="points"``).

    :func:`cks.size.estimate_diameter` (foreground area per detected cell) moves the scale the right way
    even from a wrong start: cells shown too large are cut into fragments (more points, smaller area per
    point: the scale goes down), cells shown too small are merged or missed (it goes up). Starts at ``start``
    (default: the training scale) and stays within ``max_range`` (default ``MAX_RANGE``) of it. Stops when the
    scale changes by < 10 % (at most ``POINT_PASSES`` passes). Returns ``(scale, passes, source)``.
    """
    from .size import estimate_diameter

    s0 = float(getattr(model, "scale", 1.0)) if start is None else float(start)
    max_range = MAX_RANGE if max_range is None else float(max_range)
    scale, passes = s0, 0
    for _ in range(POINT_PASSES):
        _, table = _predict_at(model, img, scale, **kw)
        passes += 1
        sure = table["score"] >= SIZE_MIN_SCORE
        if int(sure.sum()) < MIN_CELLS_FOR_SIZE:
            break
        d = estimate_diameter(img, np.stack([table["y"][sure], table["x"][sure]], 1))
        if not (math.isfinite(d) and d > 0):
            break
        new = float(np.clip(float(model.cfg.size.diameter) / float(d), s0 / max_range, s0 * max_range))
        done = abs(math.log(new / scale)) < math.log(1.1)
        scale = new
        if done:
            break
    return scale, passes, "estimated (points)"


#: ``size_from="points"``: at most this many estimate passes; the scale stays within MAX_RANGE of the training scale
POINT_PASSES, MAX_RANGE = 3, 3.0

#: ``size_from="refined"``: the detections may move the model's own estimate by at most this factor
REFINE_RANGE = 1.6

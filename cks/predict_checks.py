"""What :func:`cks.predict.predict` checks before it runs the model: the image, the cell size and the scale.

Each check raises an error that says what to do (:class:`cks.errors.CksDataError` for the image,
:class:`cks.errors.CksConfigError` for a size or scale) or warns where a result would be unreliable, so a
wrong argument never surfaces as a tensor error, an out-of-memory traceback or a run that does not end.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from .errors import CksConfigError, CksDataError

__all__ = ["as_chw", "check_diameter", "check_scale", "MAX_MODEL_PIXELS", "SCALE_WARN_FACTOR"]

#: the largest image (px at the model's resolution, H x W) predict will enlarge an image to: about 11,600 px square.
#: A scale that asks for more is almost always a diameter in the wrong unit (um instead of px) or a typo. (An image
#: that is this large already and is not enlarged is predicted tile by tile.)
MAX_MODEL_PIXELS = 2 ** 27

#: the warnings' stacklevel: they name the line that called predict (check_scale < predict < torch.no_grad < caller)
_STACKLEVEL = 4

#: predict warns when an image is shown at a scale this many times away from the model's training scale
#: (its cells then look 8x larger or smaller than any cell the model saw)
SCALE_WARN_FACTOR = 8.0

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def as_chw(image) -> np.ndarray:
    """An image as ``[C, H, W]`` (C <= 3): ``[H, W]``, ``[C, H, W]`` or channel-last ``[H, W, C]`` (as
    ``skimage.io`` and PIL give an RGB image). A 3-D array is channel-last when its first axis is longer than 3 and
    its last is not; so an image of at most 3 rows with at most 3 channels is read as channel-first.

    Raises :class:`CksDataError` for another shape, a non-numeric or complex dtype, NaN/inf pixels, or values
    that do not fit in float32 (the model's precision).
    """
    a = np.asarray(image)
    if a.dtype == bool:
        a = a.astype(np.uint8)
    if a.dtype.kind not in "biuf":
        what = "complex" if a.dtype.kind == "c" else f"{a.dtype}"
        raise CksDataError(f"image must hold real numbers, got dtype {what}; convert it (e.g. np.abs for complex "
                           f"values, or np.asarray(image, dtype=float))")
    if a.ndim == 2:
        a = a[None]
    if a.ndim == 3 and a.shape[0] > 3 and a.shape[-1] <= 3:  # channel-last [H, W, C]
        a = np.moveaxis(a, -1, 0)
    if a.ndim != 3 or a.shape[0] > 3 or min(a.shape) < 1:
        raise CksDataError(f"image must be [H, W], [C, H, W] or [H, W, C] with C <= 3, got shape {a.shape}; "
                           f"for a stack, predict one plane at a time")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise CksDataError("image has NaN/inf pixels; replace them (e.g. np.nan_to_num) before predicting")
        if a.size and float(np.abs(a).max()) > _FLOAT32_MAX:
            raise CksDataError(f"image values reach {float(np.abs(a).max()):.3g}, beyond float32 (the model's "
                               f"precision); rescale the image (e.g. divide by its maximum) before predicting")
    return a


def check_diameter(diameter) -> float:
    """``diameter`` (a cell size in px) as a positive finite float, or :class:`CksConfigError`."""
    try:
        d = float(diameter)
    except (TypeError, ValueError):
        raise CksConfigError(f"diameter must be a number of pixels (the cells' median equivalent diameter), got "
                             f"{diameter!r}") from None
    if not (math.isfinite(d) and d > 0):
        raise CksConfigError(f"diameter must be > 0 px, got {diameter}")
    return d


def check_scale(scale: float, shape: tuple[int, int], training_scale: float | None = None,
                diameter: float | None = None, model_diameter: float | None = None) -> float:
    """Refuse a scale that would build an image of more than :data:`MAX_MODEL_PIXELS`; warn where the result
    cannot be good.

    Args:
        scale: resize factor for an image of ``shape`` (H, W) native px.
        training_scale: the one scale a fixed-scale model was trained at (``model.scale``): a warning when
            ``scale`` is more than :data:`SCALE_WARN_FACTOR` away from it. None for a size-normalised model
            (its training images were each resized to its cell size, so any scale can be right).
        diameter, model_diameter: the image's cell size (given or estimated) and the cell size the model was
            trained at, px: said in the messages, and a warning when the resized image is smaller than one
            such cell (e.g. a diameter far too large).
    Returns:
        ``scale`` as a float.
    """
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise CksConfigError(f"scale must be a positive number, got {scale!r}") from None
    if not (math.isfinite(s) and s > 0):
        raise CksConfigError(f"scale must be a positive number, got {scale}")
    h, w = shape
    hs, ws = max(1, round(h * s)), max(1, round(w * s))
    why = (f" (cell size {diameter:.3g} px, the model's {model_diameter:.3g} px)"
           if diameter is not None and model_diameter is not None else "")
    if hs * ws > MAX_MODEL_PIXELS and hs * ws > h * w:  # a large image shown at its size or smaller is tiled
        raise CksConfigError(f"scale {s:.3g}{why} would resize the {h} x {w} px image to {hs} x {ws} px, more than "
                             f"predict builds ({MAX_MODEL_PIXELS:,} px); check the diameter or scale (is it in px, "
                             f"not um?), or cut the image into parts")
    if training_scale is not None and not 1 / SCALE_WARN_FACTOR <= s / float(training_scale) <= SCALE_WARN_FACTOR:
        warnings.warn(f"scale {s:.3g} shows the cells {s / float(training_scale):.3g}x as large as the model was "
                      f"trained on (scale {float(training_scale):.3g}); the results will be poor unless that is "
                      f"what you meant", UserWarning, stacklevel=_STACKLEVEL)
    if model_diameter is not None and min(hs, ws) < model_diameter:
        warnings.warn(f"at scale {s:.3g}{why} the {h} x {w} px image becomes {hs} x {ws} px, smaller than one "
                      f"cell the model was trained on ({model_diameter:.3g} px): it cannot find whole cells; check "
                      f"the diameter or scale", UserWarning, stacklevel=_STACKLEVEL)
    return s

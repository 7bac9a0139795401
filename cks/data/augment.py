"""Training augmentation (paper Sec. IV-B-2), consistent for image, label and points.

Steps, in the order of the author's paper-era code:

1. **scale jitter**: resize by ``f ~ U(low, high)`` (``train.scale_range``, default
   ``cks.config.SCALE_RANGE`` = 0.85-1.15; image bilinear + antialiasing, label nearest, points exact
   ``p' = (p + 0.5) f - 0.5``);
2. **crop / pad** to a fixed ``size`` (random placement; padding is 0 = the mean of a normalised
   image, label 0). Only the source window that ends up in the crop is resized, so the cost does
   not grow with the image size;
3. **D4**: up-down flip, left-right flip and transpose, each with probability 0.5 (the paper's
   "rotation"); exact, no interpolation;
4. **contrast / brightness**: ``x' = (x - mean) c + mean + b`` with ``c ~ U(0.6, 1.4)``,
   ``b ~ U(-0.3, 0.3)``, meant for a normalised image.

Points that leave the crop are dropped, and so are the label ids they belonged to (ids that had
points before and have none after), so points and label stay consistent. The id of a point is
``sample["point_ids"]`` when present, else the label under the point.

All randomness comes from the ``rng`` argument (``np.random.Generator``): same seed, same output.
"""

from __future__ import annotations

import numpy as np

from cks.config import SCALE_RANGE
from cks.data.readers import resize_image, resize_label
from cks.points import label_at_points

__all__ = ["augment_sample", "crop_or_pad", "resize_crop", "random_d4", "apply_d4", "jitter_intensity"]


def _window(arr: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """``arr[..., y0:y0+h, x0:x0+w]`` where out-of-range parts are zero (offsets may be negative)."""
    H, W = arr.shape[-2:]
    out = np.zeros(arr.shape[:-2] + (h, w), arr.dtype)
    sy, sx = max(y0, 0), max(x0, 0)
    ey, ex = min(y0 + h, H), min(x0 + w, W)
    if ey > sy and ex > sx:
        out[..., sy - y0:ey - y0, sx - x0:ex - x0] = arr[..., sy:ey, sx:ex]
    return out


def resize_crop(image, label, points, factor: float, size: tuple[int, int], rng=None):
    """Resize by ``factor`` and crop/pad to ``size``, touching only the needed source window.

    Args:
        image: ``[C, H, W]``. label: ``[H, W]`` or None. points: ``[N, 2]``.
        factor: resize factor. size: output ``(S_h, S_w)``.
        rng: picks the crop/pad placement; ``None`` centres it.
    Returns:
        ``(image [C, S_h, S_w], label [S_h, S_w] or None, points [N, 2])``; points are mapped, not dropped.
    """
    src = image.shape[-2:]
    starts, spans, outs, places = [], [], [], []
    for n, s in zip(src, size):
        need = int(np.ceil(s / factor))  # source pixels that cover the output
        span = min(n, need)
        start = 0 if span == n else (int(rng.integers(0, n - span + 1)) if rng is not None else (n - span) // 2)
        out_n = max(1, int(round(span * factor)))
        lo, hi = min(0, out_n - s), max(0, out_n - s)  # negative placement = padding
        place = int(rng.integers(lo, hi + 1)) if rng is not None else (out_n - s) // 2
        starts.append(start), spans.append(span), outs.append(out_n), places.append(place)
    sl = (slice(starts[0], starts[0] + spans[0]), slice(starts[1], starts[1] + spans[1]))
    img = resize_image(image[:, sl[0], sl[1]], tuple(outs))
    img = _window(img, places[0], places[1], *size)
    lab = None
    if label is not None:
        lab = _window(resize_label(label[sl], tuple(outs)), places[0], places[1], *size)
    r = np.array([outs[0] / spans[0], outs[1] / spans[1]], np.float32)
    pts = (np.asarray(points, np.float32).reshape(-1, 2) - np.array(starts, np.float32) + 0.5) * r - 0.5
    pts = pts - np.array(places, np.float32)
    return img, lab, pts.astype(np.float32)


def crop_or_pad(image, label, points, size, rng=None):
    """Crop/pad to ``size`` without resizing (``rng=None``: centred). Same returns as :func:`resize_crop`."""
    return resize_crop(image, label, points, 1.0, size, rng)


def apply_d4(image, label, points, flip_ud: bool, flip_lr: bool, transpose: bool):
    """Apply the chosen flips then the transpose to ``[C, H, W]``, ``[H, W]`` and ``[N, 2]`` (exact)."""
    h, w = image.shape[-2:]
    pts = np.asarray(points, np.float32).reshape(-1, 2).copy()
    if flip_ud:
        image, pts[:, 0] = image[:, ::-1, :], h - 1 - pts[:, 0]
        label = None if label is None else label[::-1, :]
    if flip_lr:
        image, pts[:, 1] = image[:, :, ::-1], w - 1 - pts[:, 1]
        label = None if label is None else label[:, ::-1]
    if transpose:
        image, pts = image.transpose(0, 2, 1), pts[:, ::-1]
        label = None if label is None else label.T
    image = np.ascontiguousarray(image)
    label = None if label is None else np.ascontiguousarray(label)
    return image, label, np.ascontiguousarray(pts)


def random_d4(image, label, points, rng):
    """Random element of D4: each of up-down flip, left-right flip, transpose with p = 0.5.

    The transpose is skipped for non-square images (it would change the shape).
    """
    ud, lr, tr = rng.random(3) < 0.5
    return apply_d4(image, label, points, bool(ud), bool(lr), bool(tr) and image.shape[-1] == image.shape[-2])


def jitter_intensity(image, rng, contrast_range=(0.6, 1.4), brightness: float = 0.3):
    """``(x - mean) * c + mean + b`` per channel mean, ``c ~ U(contrast_range)``, ``b ~ U(-brightness, brightness)``."""
    c = rng.uniform(*contrast_range) if contrast_range is not None else 1.0
    b = rng.uniform(-brightness, brightness) if brightness else 0.0
    mean = image.mean(axis=(1, 2), keepdims=True)
    return ((image - mean) * np.float32(c) + mean + np.float32(b)).astype(np.float32)


def _keep_mask(points: np.ndarray, size, border: float) -> np.ndarray:
    lo = border - 0.5
    return ((points[:, 0] >= lo) & (points[:, 0] < size[0] - 0.5 - border)
            & (points[:, 1] >= lo) & (points[:, 1] < size[1] - 0.5 - border))


def augment_sample(sample: dict, rng: np.random.Generator, size=512, scale_range=SCALE_RANGE, d4: bool = True,
                   contrast_range=(0.6, 1.4), brightness: float = 0.3, border: float = 0.0) -> dict:
    """Augment one sample (module docstring) into a fixed-size training crop.

    Args:
        sample: dict with ``image`` [C, H, W] (normally already normalised), optional ``label``
            [H, W], ``points`` [N, 2], ``point_ids`` [N].
        rng: numpy Generator.
        size: output side ``S`` (int) or ``(S_h, S_w)``.
        scale_range: bounds of the resize factor; ``None`` = no scale jitter.
        d4: random flips / transpose.
        contrast_range, brightness: intensity jitter (``None`` / 0 disables).
        border: points closer than this to the crop edge are dropped too (author: 1 px).
    Returns:
        dict with ``image`` float32 [C, S_h, S_w], ``label`` int32 [S_h, S_w] or None, ``points``
        float32 [M, 2], ``point_ids`` int32 [M] or None, plus ``cell_type`` and ``name`` copied over.
    """
    size = (size, size) if np.isscalar(size) else tuple(size)
    image, label = sample["image"], sample.get("label")
    points = sample.get("points")
    points = np.zeros((0, 2), np.float32) if points is None else np.asarray(points, np.float32).reshape(-1, 2)
    pids = sample.get("point_ids")
    if pids is None and label is not None:
        pids = label_at_points(points, label)
    factor = rng.uniform(*scale_range) if scale_range is not None else 1.0
    image, label, points = resize_crop(image, label, points, factor, size, rng)
    keep = _keep_mask(points, size, border)
    if label is not None and pids is not None:
        pids = np.asarray(pids, np.int32)
        lost = np.setdiff1d(pids[~keep], pids[keep])
        lost = lost[lost > 0]
        if lost.size:
            label = np.where(np.isin(label, lost), 0, label).astype(np.int32)
    points = points[keep]
    pids = None if pids is None else np.asarray(pids, np.int32)[keep]
    if d4:
        image, label, points = random_d4(image, label, points, rng)
    if contrast_range is not None or brightness:
        image = jitter_intensity(image, rng, contrast_range, brightness)
    return dict(image=image.astype(np.float32), label=None if label is None else label.astype(np.int32),
                points=points.astype(np.float32), point_ids=pids, cell_type=sample.get("cell_type", -1),
                name=sample.get("name", ""))

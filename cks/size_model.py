"""A learned cell-size regressor on the principal model's own features (what Cellpose's size model does).

Why: a size-normalised model must show every new image at the scale where its cells have
``size.diameter`` px, so at prediction it needs each image's cell size without masks or points. The
scale search of :func:`cks.predict.predict` (``size_from="score"``) asks where the detector is most
confident; on the tuning fields of issue #9 it missed the true size by more than 20 % on 9 of 28 Usiigaci
and 8 of 10 DeepCell field-runs. This module learns the size instead, after training, from the training
images themselves (measured: ``benchmarks/size_at_prediction.py``; better than the scale search on the
tuning fields, worse on the Usiigaci report fields, whose smaller cells it over-estimates):

1. *Samples.* Each training image ``i`` (native resolution, cell size ``D_i`` from its masks or
   estimated from its points, exactly what training used) is shown ``per_image`` times at a random scale
   ``size.diameter / D_i * 2^u``, ``u ~ U(-u_range, u_range)``, as a random crop of ``side`` px; its
   cells then look ``2^u`` times the size the model was trained on.
2. *Features.* :func:`size_features`: the per-channel mean and standard deviation of every encoder stage
   and every FPN level of the principal model (a "style vector", as in Cellpose) -> ``[F]``, weighted by where
   the model's detector sees cells (``pooling="detections"``, the default since issue #9 session 31), so that the
   empty background of a sparse field does not dominate the vector; or pooled over the whole image (``"image"``,
   Cellpose's way and every regressor fitted before). Chosen on the Usiigaci tuning fields, each quadrant shown
   as an image of its own (``benchmarks/size_probe.py --pooling``, three runs): the quadrants' median
   ``|log2(estimate / true)|`` 0.14-0.19 against 0.22-0.23, their correlation with the foreground fraction
   weaker, every field still within 20 %.
3. *Regression.* Ridge regression of ``u`` on the standardised features (solved in its dual form, the
   samples being fewer than the features), the penalty ``lambda`` chosen by leave-one-image-out
   cross-validation among ``LAMBDAS``.
4. *Prediction* (:func:`estimate_diameter_learned`): show the image at the training scale ``s`` (a
   central crop of at most ``PREDICT_SIDE`` px), predict ``u``, so ``D = size.diameter * 2^u / s``;
   repeat once at the scale this gives (``passes``), where the regressor is most accurate (``u`` near 0).

Fitting costs ~1 minute on one CPU thread for 16 images x 24 samples (convnext_atto). The fitted
regressor is a small JSON file next to the checkpoint (``size_model.json``), loaded by
:func:`cks.checkpoint.load_model`. Nothing runs on import.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import CksDataError

__all__ = ["SizeModel", "size_features", "detection_weights", "fit_size_model", "estimate_diameter_learned",
           "pass_scales", "find_size_model", "refit", "FILE_NAME", "POOLINGS"]

#: file name of a fitted regressor inside a run folder
FILE_NAME = "size_model.json"
#: ridge penalties tried by leave-one-image-out cross-validation
LAMBDAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)
#: training crops per image, crop side (px at model resolution), and the range of log2 size factors
PER_IMAGE, SIDE, U_RANGE = 24, 384, 1.25
#: at prediction the image is measured on a central crop of at most this many px (model resolution)
PREDICT_SIDE = 1024
#: how :func:`size_features` pools each feature map
POOLINGS = ("image", "detections")


def size_features(model, image: np.ndarray, scale: float, box: tuple[int, int, int, int] | None = None,
                  contrast: float = 1.0, brightness: float = 0.0, pooling: str = "image") -> np.ndarray:
    """The "style vector" of one image at one scale.

    Args:
        model: a :class:`cks.models.Principal`.
        image: ``[C, H, W]`` raw intensities (normalised here, as :func:`cks.predict.predict` does).
        scale: resize factor applied to the (cropped) image before the model.
        box: optional native-pixel crop ``(y0, x0, h, w)`` taken before resizing.
        contrast / brightness: the normalised image becomes ``x * contrast + brightness`` (its mean is 0), the
            intensity jitter of training (:func:`cks.data.augment.jitter_intensity`); 1 / 0 at prediction.
        pooling: ``"image"``: every pixel of a map counts alike. ``"detections"``: pixel weights
            :func:`detection_weights` (the detector's cell probability, spread over a cell's width), resized to
            each map; an image with no detection at all is pooled almost as with ``"image"``.
    Returns:
        ``[F]`` float64: per-channel (weighted) mean and standard deviation of every encoder stage, then of every
        FPN level (F = 2 x (sum of encoder channels + 4 x fpn_channels)).
    """
    if pooling not in POOLINGS:
        raise CksDataError(f"size_features: pooling must be one of {POOLINGS}, got {pooling!r}")
    import torch
    import torch.nn.functional as F

    from .data.io import normalize_image
    from .models.backbone import match_channels, pad_to_multiple

    x = torch.from_numpy(normalize_image(np.asarray(image, np.float32)))
    if contrast != 1.0 or brightness != 0.0:
        x = x * float(contrast) + float(brightness)
    if box is not None:
        y0, x0, h, w = box
        x = x[:, y0:y0 + h, x0:x0 + w]
    least = 64 if pooling == "detections" else 32  # the detector's GroupNorm needs >= 2 px at stride 32
    hs, ws = max(least, round(x.shape[-2] * scale)), max(least, round(x.shape[-1] * scale))
    x = F.interpolate(x[None], size=(hs, ws), mode="bilinear", align_corners=False, antialias=True)
    device = next(model.parameters()).device
    with torch.no_grad():
        x = pad_to_multiple(match_channels(x.to(device), model.cfg.backbone.in_channels), 32)
        enc = model.backbone.forward_encoder(x)
        fpn = list(model.backbone.fpn(enc))
        weight = detection_weights(model, fpn) if pooling == "detections" else None
    parts = []
    for m in list(enc) + fpn:
        m = m[0].double()  # [C, h, w]
        if weight is None:
            parts += [m.flatten(1).mean(1), m.flatten(1).std(1)]
        else:
            parts += _weighted_moments(m, weight)
    return torch.cat(parts).cpu().numpy()


def detection_weights(model, fpn: list):
    """Pixel weights for ``pooling="detections"``: where the model's detector sees cells.

    Args:
        model: a :class:`cks.models.Principal`.
        fpn: its FPN maps, one ``[1, C, H/s, W/s]`` per backbone stride ``s`` (finest first).
    Returns:
        ``[h, w]`` float tensor at the finest detector level: the highest detection probability over the levels
        (each upsampled to the finest), spread by a max filter one trained cell diameter wide
        (``model.cfg.size.diameter`` px) so that a cell's whole body, not only its centre, is weighted; plus
        1e-6, so an image with no detection is pooled almost uniformly.
    """
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        logits, _ = model.detector(dict(zip(model.backbone.strides, fpn)))
        finest = min(logits)
        size = tuple(logits[finest].shape[-2:])
        prob = torch.stack([F.interpolate(torch.sigmoid(v.float()), size=size, mode="bilinear", align_corners=False)
                            for v in logits.values()]).amax(0)  # [1, 1, h, w]
        k = max(1, int(round(float(model.cfg.size.diameter) / finest))) // 2 * 2 + 1  # odd, one diameter
        prob = F.max_pool2d(prob, k, stride=1, padding=k // 2)
    return prob[0, 0] + 1e-6


def _weighted_moments(m, weight) -> list:
    """Per-channel mean and standard deviation of ``m`` ``[C, h, w]`` under ``weight`` ``[H, W]`` (area-resized
    to ``h x w``, normalised to sum 1): ``[mean [C], std [C]]``."""
    import torch.nn.functional as F

    w = F.interpolate(weight[None, None].double(), size=tuple(m.shape[-2:]), mode="area")[0, 0].flatten()
    w = w / w.sum()
    flat = m.flatten(1)
    mean = flat @ w
    var = ((flat - mean[:, None]) ** 2) @ w
    return [mean, var.clamp_min(0).sqrt()]


@dataclass
class SizeModel:
    """A fitted ridge regressor ``u = (f - mean) / std . weights + bias`` (``u``: log2 of apparent / trained size)."""

    mean: list
    std: list
    weights: list
    bias: float
    lam: float
    target: float  # size.diameter of the model (px at model resolution)
    cv_log2_error: float  # leave-one-image-out mean |u error| of single crops at the chosen lambda
    n_images: int
    n_samples: int
    u_range: float = U_RANGE
    step: int = -1  # the training step of the weights it was fitted on (-1: unknown)
    #: scales (model px per native px) the fitting crops were shown at, ``[lowest, highest]``; None in files
    #: written before it was recorded (then the clip is ``2^(2 u_range)`` around the training scale)
    scale_range: list | None = None
    #: how the features were pooled (:func:`size_features`); files written before it was recorded: "image"
    pooling: str = "image"

    def log2_factor(self, features: np.ndarray) -> float:
        """Predicted ``u``: the image's cells look ``2^u`` x ``target`` px at the scale the features were taken."""
        z = (np.asarray(features, np.float64) - np.asarray(self.mean)) / np.asarray(self.std)
        return float(z @ np.asarray(self.weights) + self.bias)

    def save(self, path) -> Path:
        from .data.writers import atomic_write_text

        path = Path(path)
        atomic_write_text(json.dumps(asdict(self)), path)
        return path

    @classmethod
    def load(cls, path) -> "SizeModel":
        try:
            d = json.loads(Path(path).read_text())
            return cls(**d)
        except (OSError, ValueError, TypeError) as e:
            raise CksDataError(f"{path}: not a readable cks size model ({type(e).__name__}); delete it and re-fit "
                               "(it is re-fitted when `cks train --resume` finds a finished run without one)") from None


def _ridge(z: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
    """Ridge weights on standardised ``z`` [n, F] in the dual form ``z^T (z z^T + lam I)^-1 y``."""
    k = z @ z.T
    return z.T @ np.linalg.solve(k + lam * np.eye(len(z)), y)


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return x.mean(0), x.std(0) + 1e-6


def fit_size_model(model, images, diameters, per_image: int = PER_IMAGE, side: int = SIDE,
                   u_range: float = U_RANGE, seed: int = 0, progress: bool = False,
                   pooling: str = "detections") -> SizeModel:
    """Fit the size regressor (module docstring, steps 1-3).

    Args:
        model: the trained principal model (``model.cfg.size.diameter`` is the target size).
        images: ``N >= 2`` arrays ``[C, H, W]`` or ``[H, W]`` at native resolution.
        diameters: ``N`` cell sizes (median equivalent diameter, px of each image).
        per_image / side / u_range / seed: sampling (module docstring, step 1).
        pooling: of the features (:func:`size_features`), recorded in the model and used at prediction.
    Returns:
        a :class:`SizeModel` (not saved; see :meth:`SizeModel.save`).
    Raises:
        CksDataError: fewer than 2 images, mismatched lengths, or a diameter that is not a positive number.
    """
    images = [np.asarray(im)[None] if np.asarray(im).ndim == 2 else np.asarray(im) for im in images]
    d = np.asarray(diameters, np.float64).reshape(-1)
    if len(images) < 2 or len(images) != len(d):
        raise CksDataError(f"fit_size_model: needs >= 2 images and one diameter each, got {len(images)} / {len(d)}")
    if not (np.isfinite(d).all() and (d > 0).all()):
        raise CksDataError(f"fit_size_model: cell diameters must be positive numbers of px, got {d.tolist()}")
    target = float(model.cfg.size.diameter)
    rng = np.random.default_rng(seed)
    feats, u, group = [], [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(images) * per_image, desc="size model", dynamic_ncols=True)
    was_training = model.training
    model.eval()
    for g, (im, di) in enumerate(zip(images, d)):
        h, w = im.shape[-2:]
        for _ in range(per_image):
            ui = float(rng.uniform(-u_range, u_range))
            sc = target / di * 2.0 ** ui
            n = int(max(8, min(side / sc, h, w)))
            y0, x0 = int(rng.integers(0, h - min(n, h) + 1)), int(rng.integers(0, w - min(n, w) + 1))
            feats.append(size_features(model, im, sc, (y0, x0, n, n), pooling=pooling))
            u.append(ui)
            group.append(g)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    model.train(was_training)
    x, y, group = np.stack(feats), np.asarray(u), np.asarray(group)
    err = {lam: [] for lam in LAMBDAS}
    for g in np.unique(group):  # leave one image out; each fold standardised once for every lambda
        tr, te = group != g, group == g
        mu, sd = _standardise(x[tr])
        z_tr, z_te, y_mean = (x[tr] - mu) / sd, (x[te] - mu) / sd, y[tr].mean()
        for lam in LAMBDAS:
            err[lam].append(np.abs(z_te @ _ridge(z_tr, y[tr] - y_mean, lam) + y_mean - y[te]))
    best = min((float(np.mean(np.concatenate(e))), lam) for lam, e in err.items())
    mu, sd = _standardise(x)
    w = _ridge((x - mu) / sd, y - y.mean(), best[1])
    scale_range = [target / float(d.max()) * 2.0 ** -u_range, target / float(d.min()) * 2.0 ** u_range]
    return SizeModel(mean=mu.tolist(), std=sd.tolist(), weights=w.tolist(), bias=float(y.mean()), lam=best[1],
                     target=target, cv_log2_error=best[0], n_images=len(images), n_samples=len(y), u_range=u_range,
                     scale_range=scale_range, pooling=pooling)


def estimate_diameter_learned(model, size_model: SizeModel, image, passes: int = 2) -> tuple[float, float]:
    """``(diameter px of image, scale = target / diameter)`` from the regressor (module docstring, step 4).

    Each pass measures a central crop of at most ``PREDICT_SIDE`` model px. The regressor is not asked to
    extrapolate: each pass's ``u`` is clipped to the range it was fitted on (``+-u_range``), and the answer to
    the scales the fitting crops were shown at (``SizeModel.scale_range``: the training images' own scales
    ``+-u_range``). Files written before ``scale_range`` was recorded keep the older, wider clip of
    ``2^(2 u_range)`` around the training scale ``model.scale``, which let one DeepCell test field run to 6x
    (issue #9, session 5 closing note).
    """
    scale = pass_scales(model, size_model, image, passes)[-1]
    return size_model.target / scale, scale


def pass_scales(model, size_model: SizeModel, image, passes: int = 2, contrast: float = 1.0) -> list[float]:
    """The scale after each pass of :func:`estimate_diameter_learned` (``passes`` floats, the last one its answer).

    ``contrast`` multiplies the standardised image before the features are read (:func:`size_features`; 1 = as
    ``predict`` sees it): a probe of what the regressor reads as size (``benchmarks/size_probe.py``)."""
    img = np.asarray(image)
    img = img[None] if img.ndim == 2 else img
    if img.ndim != 3 or min(img.shape[-2:]) < 2:
        raise CksDataError(f"estimate_diameter_learned: image must be [H, W] or [C, H, W], got shape {np.shape(image)}")
    h, w = img.shape[-2:]
    s0 = float(getattr(model, "scale", 1.0))
    lo, hi = scale_limits(model, size_model)
    scale, out = s0, []
    for _ in range(max(1, int(passes))):
        n = int(min(PREDICT_SIDE / scale, h, w))
        box = ((h - min(n, h)) // 2, (w - min(n, w)) // 2, min(n, h), min(n, w))
        feats = size_features(model, img, scale, box, contrast=contrast,
                              pooling=getattr(size_model, "pooling", "image"))
        u = size_model.log2_factor(feats)
        if not math.isfinite(u):
            raise CksDataError("estimate_diameter_learned: the size regressor gave no finite answer (NaN or inf "
                               "pixels in the image?); fix the image or give the cell diameter")
        u = float(np.clip(u, -size_model.u_range, size_model.u_range)) if size_model.scale_range else u
        scale = float(np.clip(scale / 2.0 ** u, lo, hi))
        out.append(scale)
    return out


def scale_limits(model, size_model: SizeModel) -> tuple[float, float]:
    """The scales :func:`estimate_diameter_learned` can answer: ``size_model.scale_range`` (the training images'
    own scales +- ``u_range``), or for files written before it was recorded ``model.scale * 2^(+-2 u_range)``."""
    if size_model.scale_range:
        lo, hi = (float(v) for v in size_model.scale_range)
        return lo, hi
    s0 = float(getattr(model, "scale", 1.0))
    return s0 * 2.0 ** (-2 * size_model.u_range), s0 * 2.0 ** (2 * size_model.u_range)


def find_size_model(path) -> SizeModel | None:
    """The :data:`FILE_NAME` of a run folder (or next to a checkpoint file), or None."""
    p = Path(path)
    p = p if p.is_dir() else p.parent
    f = p / FILE_NAME
    return SizeModel.load(f) if f.exists() else None


# ----------------------------------------------------------------------------- command line
def add_parser(subparsers):
    """Register ``cks size-model RUN --data SPEC [--labels masks|points|nuclei] [--diameter D] [--crops N]``."""
    import argparse

    text = "fit (or re-fit) a run's cell-size regressor, size_model.json, that cks predict uses to find cell sizes"
    p = subparsers.add_parser("size-model", help=text, description=text,
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="example:\n  cks size-model runs/cks --data usiigaci_nih3t3_phase/train:set1-16 "
                                     "--labels points")
    p.add_argument("run", help="run folder written by `cks train` (size-normalised)")
    p.add_argument("--data", required=True, help="the run's training data spec, PATH[:SELECTOR] (see cks.data.spec)")
    p.add_argument("--labels", choices=["points", "masks", "nuclei"], default="points",
                   help="where each image's cell size comes from, as in training: masks, or estimated from the "
                        "points (mask centroids or the spec's point files) or from nuclei (default points)")
    p.add_argument("--diameter", type=float, help="the training images' cell size in px (instead of measuring it)")
    p.add_argument("--crops", type=int, help=f"crops per image (default: the run's size.regressor_crops, else {PER_IMAGE})")
    p.add_argument("--pooling", choices=POOLINGS, default="detections",
                   help="pool the features where the detector sees cells (default) or over the whole image")
    return p


def refit(run, data: str, labels: str = "points", diameter: float | None = None, crops: int | None = None,
          pooling: str = "detections", progress: bool = False) -> SizeModel:
    """Fit a run's size regressor as ``cks train`` does at its end (same images, cell sizes, crops and seed), with
    ``pooling``; not saved. ``data``: the run's training spec; ``labels``: where its cell sizes come from."""
    from .checkpoint import load_checkpoint, load_model
    from .data.normalize import normalize_cell_size
    from .data.spec import load_dataset
    from .errors import CksError

    run = Path(run)
    if not run.is_dir():
        raise CksError(f"{run}: not a run folder; pass the folder `cks train --out` wrote")
    model = load_model(run)
    if not model.cfg.size.normalize:
        raise CksError(f"{run}: a fixed-scale model (size.normalize = false) predicts at its training scale; "
                       "it has no use for a size regressor")
    samples = load_dataset(data, scale=1.0, points="nuclei" if labels == "nuclei" else "auto")
    source = "given" if diameter is not None else "masks" if labels == "masks" else "points"
    samples = normalize_cell_size(samples, model.cfg.size.diameter, source, diameter, use_masks=labels == "masks")
    sm = fit_size_model(model, [s["native_image"] for s in samples], [s["cell_diameter"] for s in samples],
                        per_image=crops or model.cfg.size.regressor_crops or PER_IMAGE, seed=model.cfg.train.seed,
                        progress=progress, pooling=pooling)
    sm.step = int(load_checkpoint(run).get("step", -1))
    return sm


def run_cli(args) -> dict:
    run = Path(args.run)
    sm = refit(run, args.data, args.labels, args.diameter, args.crops, args.pooling, progress=True)
    sm.save(run / FILE_NAME)
    print(f"size model: {sm.n_samples} crops of {sm.n_images} images, lambda {sm.lam:g}, leave-one-image-out error "
          f"x{2 ** sm.cv_log2_error:.2f} per crop, {sm.pooling} pooling -> {run / FILE_NAME}")
    return {"lam": sm.lam, "cv_log2_error": sm.cv_log2_error}

"""Configuration: frozen dataclasses, the paper's base preset and one preset per ablation.

Rule for every default: the paper (Yu, TMI 2023) where it specifies; the author's code
(``lacss``) where the paper is silent; where the two differ, both are options here, the
paper's value is the default and the field's comment says what the author's code does.
The anchor notes' difference table is cited as "diff #k".

One exception, measured (issue #9): everything that depends on cell size is size-relative by default.
Images are rescaled so their cells have ``size.diameter`` px, the prior width d (Eq. 4) is a fraction of
that diameter and the collapse term (Eq. 6, L_MC) sets a minimum area relative to the cell's. The
paper's absolute forms (fixed scale, d = 20 px, delta = 0.01) are the ``paper_absolute`` preset and the
Table VI presets.

A second exception, measured (issue #9): :data:`BASE` adds our image-affinity term ``L_PW``
(``loss.pairwise_weight=1``, :mod:`cks.losses.pairwise`; not in the paper). :class:`LossConfig` itself keeps
the paper's objective (weight 0), so a config written before the term existed still means what it meant,
and the ``author``, ``paper_absolute`` and ``nuclear_points`` presets switch it off again.

A preset is a small, visible diff from :data:`BASE` (see :data:`PRESETS`); use
:func:`get_preset` and :func:`with_overrides` (``"loss.prior_scale=0"`` style keys) to
derive configurations. The presets are written in :mod:`cks.presets` and can be imported from either module.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .errors import CksConfigError

#: default random resize range of the training crops (on top of size normalisation); the one place it is written
SCALE_RANGE = (0.85, 1.15)


@dataclass(frozen=True)
class BackboneConfig:
    """ConvNeXt backbone (timm, ``features_only``, strides 4/8/16/32) + FPN (Sec. III-A)."""

    name: str = "convnext_small"  # paper: ConvNeXt "small", patch 4. "convnext_atto" = CPU size; "test" = tiny
    in_channels: int = 3  # 1-channel inputs are repeated, 2-channel ones zero-padded (author's code)
    init: str = "he"  # paper CKS-1: He init. "timm": timm's default (trunc-normal)
    pretrained: bool = False  # True downloads ImageNet weights (needs network)
    fpn_channels: int = 256  # author's small json: 256
    drop_path_rate: float = 0.0  # author's experiments: 0.2-0.4


@dataclass(frozen=True)
class DetectorConfig:
    """Detection head ("LPN"), its targets (Eq. 3) and decoding / point-distance NMS."""

    strides: tuple[int, ...] = (4, 8, 16, 32)  # paper; author: (4, 8, 16) (diff #1)
    channels: int = 256
    n_layers: int = 4  # 4 x [3x3 conv -> GroupNorm -> ReLU], shared over strides
    smoothing_radius: float = 8.0  # label smoothing radius in image px (author; paper: "small threshold")
    always_positive_own_cell: bool = True  # the grid cell containing a point is positive even beyond the radius
    focal_gamma: float = 2.0  # author: gamma 2, no alpha (diff #3)
    offset_loss: str = "l2"  # paper: L2; author: "huber" (delta 1) (diff #2)
    nms_radius: float = 8.0  # px; author 8
    min_score: float = 0.2  # decoding threshold (author eval 0.2)
    max_output: int = 4096  # at least 4096 detections per image
    train_match_radius: float = 0.0  # >0: replace GT training locations by matched predictions (author 12 px, diff #5)


@dataclass(frozen=True)
class SegmentorConfig:
    """Windowed segmentation head with a location encoding (Sec. III-A, Fig. 3)."""

    window: int = 96  # px; the paper's "maximum segmentation area" (96 x 96)
    channels: int = 256  # trunk width (author small json 256)
    n_layers: int = 3  # 3 x [3x3 conv -> GN -> ReLU] then a 3x3 conv to `patch_channels`
    patch_channels: int = 64
    encoding: str = "learned"  # "learned" (MLP) | "cosine" (paper's Table II constant) | "linear" (author's constant)
    encoding_hidden: int = 256  # author: 3-layer MLP of width 256
    encoding_shape: tuple[int, int, int] = (8, 8, 4)  # MLP output reshaped to (h, w, c), then resized to the window


@dataclass(frozen=True)
class CollaboratorConfig:
    """Collaborator (Sec. III-B, Fig. 6): foreground U-Net + border net; sees the raw image."""

    foreground: tuple[int, ...] = (16, 32, 64)  # a1; a2 = (16,32,64,128); a3 = (16,...,256)
    border: str = "cnn"  # b1: "cnn"; b2: "unet"
    border_channels: tuple[int, ...] = (32, 32, 32)  # b1: three 3x3 layers of 32; b2 U-Net: (16, 32, 64, 128)
    in_channels: int = 1
    n_cell_types: int = 1  # >1: one output channel per cell type, selected per image (author, diff #10)


@dataclass(frozen=True)
class LossConfig:
    """CKS losses (Sec. III-C..E). All lambda weights are 1 in the paper."""

    mode: str = "cks"  # "cks" (points only) | "supervised" (masks, BCE)
    prior_scale: float = 2.0  # pi in Eq. 4 (paper 2.0); 0 disables the prior (Table VI "not used")
    prior_d: tuple[float, ...] = (20.0,)  # d in Eq. 4 per cell type, px (paper: 20/15/10 by size group); used when prior_d_rel is ()
    prior_d_rel: tuple[float, ...] = (0.7,)  # d as a fraction of size.diameter (0.7: the d = 20 px of our v1 runs at 28-px cells; 0.4 gave masks of 1/2 a cell, issue #9); () = absolute prior_d
    prior_until: float = 0.5  # the prior of Eq. 4 has pi = prior_scale for this fraction of train.steps (paper: 1, the whole run; preset prior_throughout) ...
    prior_scale_after: float = 0.0  # ... and pi = this after it
    prior_zero: float = 0.0  # 0: the paper's prior (>= 0); k > 0: the prior crosses 0 at r = k d (negative beyond)
    prior_center: str = "point"  # paper: Gaussian centred on the point; author: "window" centre (diff #7)
    prior_shape: str = "disk"  # paper: r = Euclidean distance; "geodesic" (ours): r along the image (geodesic.py)
    prior_geodesic_beta: float = 3.0  # "geodesic": a px z image std above the mean costs 1 + beta z per px of path
    force_point_foreground: bool = False  # author: M_p = 1 at the rounded GT point pixels (diff #7)
    foreground_from: str = "collaborator"  # what L_S (Eq. 8) pulls the masks toward: the collaborator's M_c (CKS), or "masks": the TRUE foreground (label > 0; a diagnostic upper bound, the author's point + image-mask mode)
    consistency_principal: str = "linear"  # L_S (Eq. 8) linear; "entropy": BCE vs M_c >= 0.5 (Table V); "geodesic" (ours): linear, but M_c is 0 where the flood fill of M_c >= 0.5 from the points gives the pixel to another cell
    geodesic_reach: float = 1.5  # "geodesic": the flood fill reaches this many size.diameter from each point
    collaborator_target: str = "principal"  # L_M's target: the paper's M_p (Eq. 4); "geodesic" (ours): while the prior is on (loss.prior_until), the union of geodesic regions of a cell's area around the points (prior_geodesic_beta)
    consistency_collaborator: str = "linear"  # L_M (Eq. 6); "entropy": L_CE (Eq. 5) (Table V); "soft_entropy": BCE against the soft M_p (ours)
    overlap: str = "soft"  # L_S overlap term m_i * sum_j m_j (Eq. 8); "softplus" (author's warm-up)
    border_magnitude: str = "author"  # Sobel magnitude sqrt(clip((Sy^2+Sx^2)/8, 1e-8, 1)) (paper silent)
    border_loss_factor: float = 1.0  # L_B = factor * mean (B_c - B_p)^2; author: 0.5 (diff #9)
    collapse_delta: float = 0.01  # delta in Eq. 6 (L_MC); used when collapse_min_area is 0
    collapse_exponent: float = 0.5  # paper: (mean m_i)^-1; author: 0.5 (diff #8), measured to work here (issue #9)
    collapse_min_area: float = 0.45  # >0: delta is set so L_MC outweighs L_S only below this fraction of the target cell area
    collapse_min_area_after: float = 0.0  # >0 (ours, issue #9): that floor drops to this fraction after loss.prior_until of the run (with the prior); 0 = unchanged
    collapse_form: str = "power"  # L_MC: "power" = Eq. 6, delta (mean m_i)^-e; "hinge" (ours): collapse_hinge_weight * max(0, floor - mean m_i), the same minimum area, no push above it
    collapse_hinge_weight: float = 2.0  # "hinge": the push below the floor, in units of L_S's largest pull
    collapse_spacing: float = 0.0  # >0: each cell's L_MC minimum area shrinks with r^2, r = min(1, this * nearest-point distance / size.diameter)
    prior_spacing: float = 0.0  # >0: each cell's prior width d is scaled by the same r (see collapse_spacing; only narrows it)
    spacing_from: float = 0.0  # the spacing terms start after this fraction of train.steps (the collaborator first learns the cells at the image-wide floor)
    pairwise_weight: float = 0.0  # ours (issue #9), not the paper: weight of L_PW, an image-affinity pairwise term on the collaborator's foreground (cks.losses.pairwise, after BoxInst); 0 = off
    pairwise_theta: float = 0.3  # L_PW: neighbours whose intensities differ by theta image standard deviations have pair weight 1/e
    pairwise_dilation: int = 1  # L_PW: pair offsets of this many px
    pairwise_on: str = "collaborator"  # L_PW acts on the collaborator's M_c, the principal's windows, or "both" (the sum)
    spacing_diameter: float = 32.0  # px: the cell diameter collapse_spacing and prior_spacing compare with (set from size.diameter by effective_loss_config)
    lambda_det: float = 1.0
    lambda_s: float = 1.0
    lambda_b: float = 1.0
    lambda_mc: float = 1.0
    lambda_m: float = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (Sec. IV-B-1) and bookkeeping."""

    steps: int = 90_000  # paper: 9e4 steps, one image per step
    batch_size: int = 1
    lr: float = 1e-3  # paper: Adam 1e-3 ...
    finetune_lr: float = 2e-4  # ... and a "finetune rate" of 2e-4 (author's scripts: constant 1e-3, diff #12)
    finetune_from: float = 0.9  # fraction of steps after which finetune_lr applies (paper silent)
    optimizer: str = "adam"  # "adam" (paper) | "adamw" (author, wd 1e-4)
    weight_decay: float = 0.0
    warmup_steps: int = 0  # author: 9000 of 90000 with sigma 100, pi 1, hard-label L_S (diff #11); wins over warmup_fraction
    warmup_fraction: float = 0.0  # warm-up as a fraction of ``steps`` (author: 0.1), so it ends in a run of any length
    crop_size: int = 512
    scale_range: tuple[float, float] = SCALE_RANGE  # each crop is resized by a random factor in this range (on top of size normalisation); wider: a model that tolerates a wrong cell-size estimate at prediction (issue #9)
    seed: int = 0
    checkpoint_every: int = 200
    val_every: int = 500
    init_principal: str = ""  # CKS-2: path of a principal checkpoint to start from
    snapshots: int = 4  # keep this many evenly spaced weight snapshots (run/snapshots/) for `cks diagnose`; 0 = none
    ema: float = 0.0  # ours: >0 keeps a moving average of the principal's weights with this decay (0.999: ~1,000 steps), saved and used as the model (cks.ema); 0 = the last weights (paper)


@dataclass(frozen=True)
class SizeConfig:
    """Cell-size normalisation. "Cell size" = an image's median equivalent diameter sqrt(4 A / pi) of its cells.

    With ``normalize``, every training image is rescaled so its cells have ``diameter`` px (sizes from the
    masks, from ``--diameter`` or estimated from the points, :mod:`cks.size`), and ``predict`` rescales
    each image to the same size (an automatic estimate unless a diameter is given). The author's code does
    the same with ``CELL_SZ = 32`` (mean longer bounding-box side; LIVECell pre-scaled to ~35 px in 0.4.4).
    The size-relative losses (``loss.prior_d_rel``, ``loss.collapse_min_area``) are in units of ``diameter``.
    """

    normalize: bool = True  # False: one fixed scale for all images (the paper's setting and cks < 0.2)
    diameter: float = 32.0  # target median equivalent cell diameter, px at model resolution
    regressor_crops: int = 24  # after training, fit the learned size regressor (cks.size_model) on this many crops per training image; 0 = none (predict falls back to its scale search)


@dataclass(frozen=True)
class Config:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    segmentor: SegmentorConfig = field(default_factory=SegmentorConfig)
    collaborator: CollaboratorConfig = field(default_factory=CollaboratorConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    size: SizeConfig = field(default_factory=SizeConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`CksConfigError`."""
        kw = {}
        d = _upgrade(d)
        for f in fields(cls):
            sub = d.get(f.name, {})
            sub_cls = f.default_factory  # the section's dataclass
            known = {g.name: g for g in fields(sub_cls)}
            bad = sorted(set(sub) - set(known))
            if bad:
                raise CksConfigError(f"unknown config key(s) {f.name}.{bad[0]}; valid keys: {sorted(known)}")
            conv = {k: (tuple(v) if isinstance(v, list) else v) for k, v in sub.items()}
            kw[f.name] = sub_cls(**conv)
        bad = sorted(set(d) - {f.name for f in fields(cls)})
        if bad:
            raise CksConfigError(f"unknown config section {bad[0]!r}; valid: {[f.name for f in fields(cls)]}")
        return validate(cls(**kw))


def _upgrade(d: dict) -> dict:
    """Configs written by older versions mean what they meant then.

    Before ``loss.prior_until`` existed the prior was on for the whole run; before cell-size normalisation
    (no ``size`` section): fixed scale, absolute prior d and delta, no snapshots.
    """
    d = {k: dict(v) if isinstance(v, dict) else v for k, v in d.items()}
    if "loss" in d:
        d["loss"].setdefault("prior_until", 1.0)
    if "size" in d:
        return d
    d["size"] = {"normalize": False}
    d.setdefault("loss", {}).setdefault("prior_d_rel", ())
    d["loss"].setdefault("collapse_min_area", 0.0)
    d.setdefault("train", {}).setdefault("snapshots", 0)
    return d


def _parse_value(text: str, current: Any) -> Any:
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise CksConfigError(f"expected true/false, got {text!r}")
    if isinstance(current, int):
        return int(text)
    if isinstance(current, float):
        return float(text)
    if isinstance(current, tuple):
        items = [t for t in text.strip("()[] ").split(",") if t.strip()]
        kind = type(current[0]) if current else float
        return tuple(kind(t) for t in items)
    return text


def with_overrides(cfg: Config, overrides: dict[str, Any] | list[str] | None) -> Config:
    """Return ``cfg`` with ``{"section.key": value}`` or ``["section.key=value", ...]`` applied.

    Setting ``loss.prior_d`` (px) or ``loss.collapse_delta`` selects the paper's absolute form of that term
    (``loss.prior_d_rel = ()``, ``loss.collapse_min_area = 0``) unless the same call sets the relative field.

        >>> cfg = with_overrides(Config(), ["train.steps=100", "loss.prior_d=15,10"])
        >>> cfg.train.steps, cfg.loss.prior_d, cfg.loss.prior_d_rel
        (100, (15.0, 10.0), ())
    """
    if not overrides:
        return cfg
    if isinstance(overrides, (list, tuple)):
        pairs = {}
        for item in overrides:
            if "=" not in item:
                raise CksConfigError(f"override {item!r} must look like section.key=value, e.g. train.steps=100")
            k, v = item.split("=", 1)
            pairs[k.strip()] = v.strip()
        overrides = pairs
    # giving an absolute value selects the absolute (paper) form, unless the same call sets the relative one
    implied = {"loss.prior_d": ("loss.prior_d_rel", ()), "loss.collapse_delta": ("loss.collapse_min_area", 0.0)}
    for key, (rel_key, off) in implied.items():
        if key in overrides and rel_key not in overrides:
            overrides = {**overrides, rel_key: off}
    for key, value in overrides.items():
        if "." not in key:
            raise CksConfigError(f"config key {key!r} must be section.key, e.g. loss.prior_scale")
        sec, name = key.split(".", 1)
        if not hasattr(cfg, sec):
            raise CksConfigError(f"unknown config section {sec!r} in {key!r}; valid: {[f.name for f in fields(cfg)]}")
        sub = getattr(cfg, sec)
        if not hasattr(sub, name):
            raise CksConfigError(f"unknown config key {key!r}; valid: {[f.name for f in fields(sub)]}")
        cur = getattr(sub, name)
        if isinstance(value, str) and not isinstance(cur, str):
            try:
                value = _parse_value(value, cur)
            except ValueError as e:
                raise CksConfigError(f"bad value for {key}: {e}") from None
        cfg = replace(cfg, **{sec: replace(sub, **{name: value})})
    return validate(cfg)


def _positive(v) -> bool:
    return v > 0


def _non_negative(v) -> bool:
    return v >= 0


def _fraction(v) -> bool:
    return 0 <= v <= 1


def _ema_decay(v) -> bool:
    return 0 <= v < 1


_ema_decay.text = "in [0, 1) (0 = off)"


def _choice(*options):
    def check(v):
        return v in options
    check.text = "one of " + ", ".join(repr(o) for o in options)
    return check


_positive.text, _non_negative.text, _fraction.text = "> 0", ">= 0", "in [0, 1]"

#: allowed values, checked once whenever a configuration is built (``--set``, presets, config.json)
RULES: dict[str, Any] = {
    "train.steps": _non_negative, "train.batch_size": _positive, "train.crop_size": _positive, "train.lr": _positive,
    "train.finetune_lr": _positive, "train.finetune_from": _fraction, "train.weight_decay": _non_negative,
    "train.warmup_steps": _non_negative, "train.warmup_fraction": _fraction, "train.checkpoint_every": _positive,
    "train.val_every": _positive, "train.snapshots": _non_negative, "train.ema": _ema_decay, "train.optimizer": _choice("adam", "adamw"),
    "loss.mode": _choice("cks", "supervised"), "loss.prior_scale": _non_negative,
    "loss.prior_center": _choice("point", "window"), "loss.prior_zero": _non_negative,
    "loss.prior_shape": _choice("disk", "geodesic"), "loss.prior_geodesic_beta": _non_negative,
    "loss.consistency_principal": _choice("linear", "entropy", "geodesic"), "loss.geodesic_reach": _positive, "loss.foreground_from": _choice("collaborator", "masks"),
    "loss.consistency_collaborator": _choice("linear", "entropy", "soft_entropy"),
    "loss.collaborator_target": _choice("principal", "geodesic"), "loss.overlap": _choice("soft", "softplus"),
    "loss.collapse_delta": _non_negative, "loss.collapse_exponent": _positive, "loss.collapse_min_area": _fraction,
    "loss.collapse_min_area_after": _fraction,
    "loss.collapse_form": _choice("power", "hinge"), "loss.collapse_hinge_weight": _positive,
    "loss.collapse_spacing": _non_negative, "loss.prior_spacing": _non_negative,
    "loss.pairwise_weight": _non_negative, "loss.pairwise_theta": _positive, "loss.pairwise_dilation": _positive,
    "loss.pairwise_on": _choice("collaborator", "principal", "both"),
    "loss.spacing_from": _fraction, "loss.prior_until": _fraction, "loss.prior_scale_after": _non_negative, "loss.spacing_diameter": _positive,
    "loss.border_loss_factor": _non_negative,
    "segmentor.window": _positive, "segmentor.channels": _positive, "segmentor.encoding": _choice("learned", "cosine", "linear"),
    "detector.nms_radius": _non_negative, "detector.min_score": _fraction, "detector.max_output": _positive,
    "detector.offset_loss": _choice("l2", "huber"), "detector.channels": _positive,
    "collaborator.border": _choice("cnn", "unet"), "size.diameter": _positive, "size.regressor_crops": _non_negative,
}


def validate(cfg: Config) -> Config:
    """Check every value against :data:`RULES` (and tuples of px widths > 0); returns ``cfg``.

    Raises :class:`CksConfigError` with one line naming the key, its value and the allowed range.
    """
    for key, rule in RULES.items():
        sec, name = key.split(".")
        v = getattr(getattr(cfg, sec), name)
        ok = rule(v) if not isinstance(v, (int, float)) or isinstance(v, bool) or v == v else False
        if not ok:
            raise CksConfigError(f"{key}={v!r} is out of range: it must be {rule.text}")
    if cfg.loss.prior_shape == "geodesic" and cfg.loss.prior_center != "point":
        raise CksConfigError("loss.prior_shape='geodesic' measures r from each cell's point; it cannot be combined "
                             f"with loss.prior_center={cfg.loss.prior_center!r} (use loss.prior_center=point)")
    lo_hi = cfg.train.scale_range
    if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
        raise CksConfigError(f"train.scale_range={lo_hi!r} is out of range: it must be two factors 0 < low <= high, "
                             "e.g. train.scale_range=0.85,1.15")
    for key in ("loss.prior_d", "loss.prior_d_rel", "detector.strides"):
        sec, name = key.split(".")
        v = getattr(getattr(cfg, sec), name)
        if any(not (x > 0) for x in v):
            raise CksConfigError(f"{key}={v!r} is out of range: every entry must be > 0")
    return cfg


#: names that live in :mod:`cks.presets` and are still read from here (``from cks.config import get_preset``)
_PRESET_NAMES = ("OURS", "BASE", "SIZES", "PRESETS", "get_preset", "preset_diff", "_PAPER_SIZE")


def __getattr__(name: str):
    """PEP 562: the presets are built in :mod:`cks.presets` (on top of this module) and answer here too."""
    if name in _PRESET_NAMES:
        from . import presets

        return getattr(presets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

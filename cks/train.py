"""Training: fully supervised, CKS from points (the paper's method) and every ablation preset.

``train(cfg, train_samples, val_samples, out_dir)`` is the one entry point. Per step (Sec. III-E):

* principal forward at the (GT or matched) training locations, ``L_det`` (Eq. 3);
* supervised mode: ``+ BCE(m_i, GT window)``;
* CKS mode: collaborator forward on the same image, ``L_S + L_MC + L_M + L_B``
  (:func:`cks.losses.cks.cks_loss_terms`), gradient routing by detaching; one Adam(W) optimiser
  over both models, so L_B enters the summed objective once.

With ``train.ema`` (ours) a moving average of the principal's weights is kept (:mod:`cks.ema`); it is what the
run saves as its model, validates as ``val_*`` (the training weights as ``val_raw_*``) and returns.

Warm-up (author, diff #11; ``train.warmup_steps``): prior d = 100, pi = 1 and the softplus
overlap variant of L_S. Learning rate: ``lr`` then ``finetune_lr`` after ``finetune_from`` of the
steps (the paper's "fine-tune rate"). Data order and augmentation are pure functions of
(seed, step), and every RNG state is checkpointed, so ``resume=True`` continues a killed run
exactly where its last checkpoint left it. Multi-process (``torchrun``) runs use
DistributedDataParallel; each rank takes its share of every global batch.
"""
from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import load_checkpoint
from .config import SCALE_RANGE, Config
from .data.writers import atomic_write_text
from . import run_folder
from .run_folder import EXTENDABLE, config_changes, read_history  # noqa: F401  (part of this module's API)
from .data.dataset import TrainingDataset, collate  # noqa: F401  (collate is part of this module's API)
from .losses.cks import cks_loss_terms
from .losses.detection import detection_loss
from .losses.supervised import supervised_loss, window_targets
from .models.collaborator import Collaborator
from .models.principal import Principal
from .schedule import (finetune_start, loss_config_at, lr_at, make_optimizer, prior_end,  # noqa: F401  (part of this API)
                       snapshot_steps, spacing_start, warmup_steps)


class TrainSet:
    """Training crops indexed by a *global* sample counter, so data order is a pure function of (seed, i).

    ``get(i)``: epoch ``e = i // n``, sample ``perm_e[i % n]`` with ``perm_e`` a seeded permutation;
    the crop itself is :class:`cks.data.dataset.TrainingDataset` item ``perm_e[i % n]`` of epoch ``e``
    (augmented with ``default_rng([seed, e, sample])``), with its cell type clipped to >= 0.
    """

    def __init__(self, samples: list[dict], crop_size: int = 512, seed: int = 0, augment: bool = True,
                 scale_range: tuple[float, float] = SCALE_RANGE):
        self.dataset = TrainingDataset(samples, size=crop_size, augment=augment, seed=seed,
                                       scale_range=tuple(scale_range))
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def get(self, i: int) -> dict:
        n = len(self.dataset)
        epoch, k = divmod(int(i), n)
        idx = int(np.random.default_rng([self.seed, epoch]).permutation(n)[k])
        self.dataset.set_epoch(epoch)
        item = self.dataset[idx]
        item["cell_type"] = max(item["cell_type"], 0)
        return item


def _given_foreground(batch: dict, lc) -> torch.Tensor | None:
    """``loss.foreground_from``: None (L_S follows the collaborator) or the true foreground ``[B, H, W]`` of the crops."""
    if lc.foreground_from == "collaborator":  # the only other value, "masks", is checked by cks.config.validate
        return None
    if batch.get("label") is None:
        from .errors import CksConfigError
        raise CksConfigError("loss.foreground_from='masks' needs masks in the training data (a label image per "
                             "image); use loss.foreground_from=collaborator for points only")
    return (batch["label"] > 0).float()


class CKSModule(nn.Module):
    """Principal + collaborator; ``forward(batch, step)`` returns the loss terms and the total."""

    def __init__(self, cfg: Config, scale: float = 1.0):
        super().__init__()
        self.cfg = cfg
        self.principal = Principal(cfg, scale)
        self.collaborator = Collaborator(cfg.collaborator) if cfg.loss.mode == "cks" else None

    def loss_config(self, step: int):
        """The loss settings in px at ``step`` (size-relative values resolved; the warm-up while it lasts)."""
        return loss_config_at(self.cfg, step)

    def forward(self, batch: dict, step: int = 0) -> dict:
        cfg = self.cfg
        image, points, valid = batch["image"], batch["points"], batch["points_valid"]
        out = self.principal(image, points, valid)
        d = cfg.detector
        terms = detection_loss(out["det_logits"], out["det_offsets"], points, valid, d.smoothing_radius,
                               d.always_positive_own_cell, d.focal_gamma, d.offset_loss)
        total = cfg.loss.lambda_det * terms["L_det"]
        shape = (image.shape[0], image.shape[-2], image.shape[-1])
        if cfg.loss.mode == "supervised":
            ids = batch["ids"].reshape(-1)[out["seg_index"]]
            tgt = window_targets(batch["label"], out["seg_batch"], out["seg_origin"], ids, cfg.segmentor.window)
            terms["L_sup"] = supervised_loss(out["seg_logits"], tgt) if len(ids) else total * 0
            total = total + terms["L_sup"]
        elif cfg.loss.mode == "cks":
            collab = self.collaborator(image, batch.get("cell_type"))
            seg = {"logits": out["seg_logits"], "batch": out["seg_batch"], "origin": out["seg_origin"],
                   "points": out["seg_points"]}
            lc = self.loss_config(step)
            ck = cks_loss_terms(seg, collab, shape, batch.get("cell_type"), lc.prior_d, lc, _given_foreground(batch, lc),
                                image)
            terms.update({k: v for k, v in ck.items() if k != "total"})
            total = total + ck["total"]
        else:
            raise ValueError(f"loss.mode must be 'cks' or 'supervised', got {cfg.loss.mode!r}")
        terms["total"] = total
        return terms


#: after this many steps the progress bar says what a step costs and what the budget buys
TIMING_STEPS = 10


def _budget_text(seconds: float, done: int, left: int, max_minutes, max_cpu_minutes) -> str:
    """One line: time per step so far, the time the remaining steps need, where a budget will stop the run."""
    per = seconds / max(done, 1)
    text = f"train: {per:.2f} s per step here; the remaining {left} steps need ~{per * left / 60:.0f} min"
    if max_minutes is not None and per * left / 60 > max_minutes:
        text += f"; --minutes {max_minutes:g} stops it after ~{int(max_minutes * 60 / per)} more steps"
    if max_cpu_minutes is not None:
        text += f" (--cpu-minutes {max_cpu_minutes:g} counts CPU time over all segments)"
    return text


def _expanded(path: str) -> str:
    """``path`` with ``$VARS`` and ``~`` expanded (a config may name ``$CKS_RUNS_DIR/...`` so that it records no
    machine path); CksConfigError if a variable is not set."""
    from .errors import CksConfigError

    out = os.path.expanduser(os.path.expandvars(str(path)))
    if "$" in out:
        raise CksConfigError(f"train.init_principal={path}: an environment variable in it is not set; set it or "
                             "give the checkpoint's path")
    return out


def _check_cells(samples: list[dict]) -> None:
    """No cell in any training image is an error (every loss would be 0); images without cells get a warning."""
    if not samples:
        return
    counts = [0 if s.get("points") is None else len(s["points"]) for s in samples]
    if sum(counts) == 0:
        from .errors import CksDataError
        raise CksDataError(f"none of the {len(samples)} training images has a cell (no points, empty masks): "
                           "nothing to learn; check the labels (masks all 0? points file empty?)")
    empty = [str(s.get("name", i)) for i, (s, c) in enumerate(zip(samples, counts)) if c == 0]
    if empty:
        import warnings
        warnings.warn(f"{len(empty)} of {len(samples)} training images have no cell ({', '.join(empty[:3])}"
                      f"{', ...' if len(empty) > 3 else ''}); they only teach background", stacklevel=3)


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def validate(principal: Principal, val_samples: list[dict], scale: float | None = 1.0,
             max_images: int | None = None) -> dict:
    """AP50 / AP75 / mAP / Dice of the principal model on ``val_samples`` (native resolution).

    ``scale=None`` with a size-normalised model: each image is predicted at its true cell size (median
    equivalent diameter of its masks), so the curve tracks segmentation quality alone; the automatic size
    estimate of :func:`cks.predict.predict` is measured separately (``benchmarks/protocol.py`` records it).
    """
    from .evaluation import evaluate_model

    was = principal.training
    principal.eval()
    samples = list(val_samples[:max_images])
    if scale is None:  # the true cell size (a size-normalised model) or the training scale (a fixed-scale one)
        r = evaluate_model(principal, samples, size="true")
    else:  # an explicit scale wins over every size setting of predict
        r = evaluate_model(principal, samples, scale=scale)
    principal.train(was)
    return {"val_ap50": r["ap50"], "val_ap75": r["ap75"], "val_map": r["map"], "val_dice": r["dice"],
            "val_n_pred": r["n_pred"], "val_n_gt": r["n_gt"]}


def _validate_both(principal: Principal, ema, val_samples: list[dict], scale: float | None) -> dict:
    """:func:`validate` of the run's model: the weights' average with ``train.ema`` (``val_*``), and then the
    training weights too (``val_raw_*``); without it, the training weights as ``val_*``."""
    if ema is None:
        return validate(principal, val_samples, scale=scale)
    raw = validate(principal, val_samples, scale=scale)
    return {**validate(ema.model, val_samples, scale=scale), **{k.replace("val_", "val_raw_", 1): v for k, v in raw.items()}}


def train_step(ddp, opt, batch: dict, step: int, cfg: Config, device) -> dict:
    """One optimiser step at ``step`` (learning rate from :func:`lr_at`); returns the loss terms.

    Raises ``FloatingPointError`` when the loss is not finite (the checkpoint on disk stays intact).
    """
    for g in opt.param_groups:
        g["lr"] = lr_at(step, cfg)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    terms = ddp(batch, step)
    loss = terms["total"]
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower train.lr or check the data")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return terms


def prepare_sizes(cfg: Config, samples: list[dict], scale: float = 1.0) -> tuple[list[dict], float]:
    """Cell-size normalisation before training: ``(samples, training scale)``.

    With ``cfg.size.normalize`` every image is rescaled so its cells have ``cfg.size.diameter`` px (sizes from
    the masks for supervised runs, estimated from the points for CKS, which never uses the masks) and the
    training scale is the median of the per-image factors; samples normalised by the caller (they carry
    ``cell_diameter``) are only measured. Without it the samples and ``scale`` pass through unchanged.
    """
    if not (cfg.size.normalize and samples):
        return samples, scale
    from .data.normalize import median_scale, normalize_cell_size

    if "cell_diameter" not in samples[0]:
        samples = normalize_cell_size(samples, cfg.size.diameter, "auto", use_masks=cfg.loss.mode == "supervised")
    return samples, median_scale(samples)


def fit_run_size_model(cfg: Config, principal, samples: list[dict], out: Path | None, step: int,
                       progress: bool = False):
    """The run's learned size regressor (:mod:`cks.size_model`), fitted when training stops.

    Only for size-normalised runs with ``size.regressor_crops > 0`` whose samples were normalised by
    :func:`cks.data.normalize.normalize_cell_size`: it fits on each sample's ``native_image`` with the cell
    size training used (``cell_diameter``). Saved as ``out/size_model.json``; a saved one fitted at the same ``step`` is reused
    (a resumed, finished run), one from another step is re-fitted. Returns the
    :class:`cks.size_model.SizeModel` or None (``predict`` then falls back to its scale search).
    """
    from .size_model import FILE_NAME, SizeModel, fit_size_model

    if not (cfg.size.normalize and cfg.size.regressor_crops > 0 and len(samples) >= 2):
        return None
    if any("native_image" not in s for s in samples):
        return None
    if out is not None and (out / FILE_NAME).exists():
        old = SizeModel.load(out / FILE_NAME)
        if old.step == step:
            return old
    sm = fit_size_model(principal, [s["native_image"] for s in samples], [s["cell_diameter"] for s in samples],
                        per_image=cfg.size.regressor_crops, seed=cfg.train.seed, progress=progress)
    sm.step = int(step)
    if out is not None:
        sm.save(out / FILE_NAME)
    return sm


class RunClock:
    """Wall and CPU seconds of a run, cumulative over resumed segments, and its stopping rules."""

    def __init__(self, wall_offset: float = 0.0, cpu_offset: float = 0.0):
        self.wall_offset, self.cpu_offset = wall_offset, cpu_offset
        self.t0, self.c0 = time.time(), time.process_time()

    def segment_s(self) -> float:
        """Wall seconds of this segment only."""
        return time.time() - self.t0

    def wall(self) -> float:
        return round(self.wall_offset + self.segment_s(), 2)

    def cpu(self) -> float:
        return round(self.cpu_offset + time.process_time() - self.c0, 2)

    def over_budget(self, step: int, max_minutes=None, max_cpu_minutes=None, stop_at=None) -> bool:
        """True when this segment's wall budget, the run's CPU budget or ``stop_at`` is reached."""
        return ((max_minutes is not None and self.segment_s() / 60 > max_minutes)
                or (max_cpu_minutes is not None and self.cpu() / 60 >= max_cpu_minutes)
                or (stop_at is not None and step >= stop_at))


def train(cfg: Config, train_samples: list[dict], val_samples: list[dict] | None = None,
          out_dir: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
          max_minutes: float | None = None, scale: float = 1.0, log_every: int = 10,
          stop_at: int | None = None, device: str | None = None, max_cpu_minutes: float | None = None) -> dict:
    """Train and return ``{"model": principal, "collaborator": ..., "history": [...], "step": n}``.

    Args:
        cfg: configuration (``cfg.train.steps`` steps of ``cfg.train.batch_size`` crops).
        train_samples / val_samples: sample dicts (``cks.data``), already at model scale
            (``scale`` is recorded in the checkpoint so ``predict`` maps results back).
        out_dir: run folder: ``config.json``, ``checkpoint.pt`` (atomic), ``metrics.jsonl``.
        resume: continue from ``out_dir/checkpoint.pt`` (same config required).
        max_minutes: stop (and save) after this wall time even if steps remain.
        max_cpu_minutes: stop (and save) when the run's cumulative CPU time (all segments, this process's
            threads) reaches this budget — a fair "same budget" on a shared machine.
        stop_at: stop (and save) once this step is reached (simulates an interruption in tests).
        device: "cuda"/"cpu" (default: cuda when available; under torchrun, cuda:LOCAL_RANK).
    """
    rank, world = _dist_info()
    t_cfg = cfg.train
    _check_cells(train_samples)
    train_samples, scale = prepare_sizes(cfg, train_samples, scale)
    torch.manual_seed(t_cfg.seed + rank)
    np.random.seed(t_cfg.seed + rank)
    random.seed(t_cfg.seed + rank)  # unused by cks; seeded so a checkpoint's saved random states are a run's own
    if device is None:
        device = (f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    module = CKSModule(cfg, scale)  # the training scale: predict's first pass of a size-normalised model
    if t_cfg.init_principal:
        module.principal.load_state_dict(load_checkpoint(_expanded(t_cfg.init_principal))["principal"])
    module.to(device)
    opt = make_optimizer(module, cfg)  # before the average exists: it is never optimised
    ema = None
    if t_cfg.ema > 0:
        from .ema import WeightAverage

        ema = WeightAverage(module.principal, t_cfg.ema)
    start, history = 0, []
    t_offset, cpu_offset = 0.0, 0.0  # wall / CPU seconds of earlier segments of a resumed run
    out = Path(out_dir) if out_dir else None
    if resume and out is not None and (out / "checkpoint.pt").exists():
        start, t_offset, cpu_offset = run_folder.restore(out / "checkpoint.pt", cfg, module, opt, device,
                                                         out if rank == 0 else None, ema)
    if out and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cfg.to_json(), out / "config.json")
        if not resume and (out / "metrics.jsonl").exists():
            (out / "metrics.jsonl").unlink()
    ddp = module
    if world > 1:
        ddp = nn.parallel.DistributedDataParallel(
            module, device_ids=[torch.device(device).index] if str(device).startswith("cuda") else None,
            find_unused_parameters=True)
        if ema is not None and start == 0:  # DDP has broadcast rank 0's weights: every rank's average starts from them
            ema.load_state_dict(module.principal.state_dict())
    train_set = TrainSet(train_samples, crop_size=t_cfg.crop_size, seed=t_cfg.seed, scale_range=t_cfg.scale_range)
    bar = None
    if progress and rank == 0:
        from tqdm.auto import tqdm
        bar = tqdm(total=t_cfg.steps, initial=start, desc=f"train[{cfg.loss.mode}]", dynamic_ncols=True)

    snap_at = snapshot_steps(cfg)
    val_scale = None if cfg.size.normalize else scale  # None: validate() predicts each image at its true cell size

    def save(step: int):
        if out is not None and rank == 0:
            run_folder.save(out, cfg, module, opt, step, scale, wall(), cpu(), snapshot=step in snap_at, ema=ema)

    clock = RunClock(t_offset, cpu_offset)
    wall, cpu = clock.wall, clock.cpu
    step = start
    module.train()
    running: dict[str, float] = {}
    while step < t_cfg.steps and not clock.over_budget(step, max_minutes, max_cpu_minutes, stop_at):
        items = [train_set.get(step * t_cfg.batch_size * world + rank * t_cfg.batch_size + j)
                 for j in range(t_cfg.batch_size)]
        terms = train_step(ddp, opt, collate(items), step, cfg, device)
        step += 1
        if ema is not None:
            ema.update(module.principal, step)
        if bar is not None and step == start + TIMING_STEPS:
            bar.write(_budget_text(clock.segment_s(), step - start, t_cfg.steps - step, max_minutes, max_cpu_minutes))
        for k, v in terms.items():
            running[k] = 0.9 * running.get(k, float(v.detach())) + 0.1 * float(v.detach())
        rec = None
        if step % log_every == 0 or step == t_cfg.steps:
            rec = {"step": step, "time_s": wall(), "cpu_s": cpu(), "lr": lr_at(step - 1, cfg),
                   **{k: float(v.detach()) for k, v in terms.items()}}
        if val_samples and rank == 0 and (step % t_cfg.val_every == 0 or step == t_cfg.steps):
            rec = rec or {"step": step, "time_s": wall(), "cpu_s": cpu()}
            rec.update(_validate_both(module.principal, ema, val_samples, val_scale))
        if rec is not None:
            history.append(rec)
            run_folder.append_row(out if rank == 0 else None, rec)
        if bar is not None:
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in running.items() if k in ("total", "L_det", "L_S", "L_M",
                                                                                  "L_B", "L_MC", "L_PW", "L_sup")})
        if step % t_cfg.checkpoint_every == 0 or step in snap_at:
            save(step)
    save(step)
    if bar is not None:
        bar.close()
    model = module.principal if ema is None else ema.model  # the average, with train.ema, is the run's model
    if rank == 0 and (stop_at is None or step >= t_cfg.steps):  # not a planned pause (stop_at) mid-run
        model.size_model = fit_run_size_model(cfg, model, train_samples, out, step, progress=progress)
    if val_samples and rank == 0 and step > start and (not history or "val_ap50" not in history[-1]):
        rec = {"step": step, "time_s": wall(), "cpu_s": cpu(), **_validate_both(module.principal, ema, val_samples, val_scale)}
        history.append(rec)
        run_folder.append_row(out, rec)
    return {"model": model.eval(), "collaborator": module.collaborator, "history": history, "step": step}

"""The run's schedule: optimiser, learning rate, warm-up, the prior's and the spacing terms' switch steps, snapshots.

Each is a pure function of the :class:`~cks.config.Config` (and the step), so training, resuming a run with a
longer budget (:mod:`cks.run_folder`), the loss trace (:mod:`cks.trace`) and the map viewer (:mod:`cks.run_maps`)
agree on what the run did at any step. Sec. III-E of the paper: Adam, lr 1e-3 then a "fine-tune rate"; the prior
of Eq. 4 for the whole run (ours: ``loss.prior_until`` of it).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .config import Config
from .losses.cks import effective_loss_config


def make_optimizer(module: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(module.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    if t.optimizer == "adamw":
        return torch.optim.AdamW(module.parameters(), lr=t.lr, weight_decay=t.weight_decay or 1e-4)
    raise ValueError(f"train.optimizer must be 'adam' or 'adamw', got {t.optimizer!r}")


def warmup_steps(cfg: Config) -> int:
    """Warm-up length: ``train.warmup_steps`` if set, else ``floor(train.warmup_fraction * train.steps)``."""
    t = cfg.train
    return int(t.warmup_steps) if t.warmup_steps > 0 else int(math.floor(t.warmup_fraction * t.steps))


def spacing_start(cfg: Config) -> int:
    """First step of ``loss.collapse_spacing`` / ``loss.prior_spacing``: ``floor(loss.spacing_from * train.steps)``."""
    return int(math.floor(cfg.loss.spacing_from * cfg.train.steps))


def prior_end(cfg: Config) -> int:
    """First step at ``pi = loss.prior_scale_after`` (Eq. 4): ``ceil(loss.prior_until * train.steps)``; = steps by default."""
    return int(math.ceil(cfg.loss.prior_until * cfg.train.steps))


def loss_config_at(cfg: Config, step: int):
    """The loss settings in px that training uses at ``step``: warm-up, the spacing terms, the prior's schedule."""
    return effective_loss_config(cfg, warmup=step < warmup_steps(cfg), spacing=step >= spacing_start(cfg),
                                 prior=step < prior_end(cfg))


def snapshot_steps(cfg: Config) -> set[int]:
    """Steps whose weights are kept in ``run/snapshots/`` (``train.snapshots`` evenly spaced, the last = the end)."""
    n, steps = int(cfg.train.snapshots), int(cfg.train.steps)
    return {max(1, round(steps * (k + 1) / n)) for k in range(n)} if n > 0 and steps > 0 else set()


def finetune_start(cfg: Config) -> int:
    """First step at ``train.finetune_lr``: ``floor(train.finetune_from * train.steps)``."""
    return int(math.floor(cfg.train.finetune_from * cfg.train.steps))


def lr_at(step: int, cfg: Config) -> float:
    """Learning rate at ``step``: ``train.lr``, then ``train.finetune_lr`` from :func:`finetune_start` on."""
    return cfg.train.finetune_lr if step >= finetune_start(cfg) else cfg.train.lr

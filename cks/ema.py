"""An exponential moving average of the principal model's weights (``train.ema``; ours, not in the paper).

Why: on a CPU we train with one 256-px crop per step, so consecutive weights differ by a noisy step; the
average over the last ~``1 / (1 - decay)`` steps is a smoother model at no extra forward cost (as in the
training recipes of timm and of many detection libraries). The paper trains with plain Adam and uses the
last weights.

After every optimiser step ``t`` (1, 2, ...) every floating-point tensor of the state dict is updated as

    ema <- ema + (1 - beta_t) (w - ema),    beta_t = min(decay, (1 + t) / (10 + t))

(the ramp keeps the first steps from dragging the random initial weights along; integer buffers are copied).
Only the principal is averaged: it is the model that predicts, while the collaborator only teaches during
training and keeps its last weights. A run folder then holds the average as ``principal`` (what
:func:`cks.checkpoint.load_model`, ``cks predict`` and ``cks diagnose`` load) and the training weights as
``principal_raw`` (what a resumed run continues from); validation rows score both (``val_*`` the average,
``val_raw_*`` the training weights), a paired comparison on one trajectory.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay(decay: float, step: int) -> float:
    """``beta_t = min(decay, (1 + t) / (10 + t))`` for the update after optimiser step ``t >= 1``."""
    return min(float(decay), (1.0 + step) / (10.0 + step))


class WeightAverage:
    """The moving average of a module's state dict; ``model`` is a frozen copy holding it (eval mode).

    Args:
        module: the model being trained (its current weights start the average).
        decay: ``train.ema`` in (0, 1), e.g. 0.999 (an average over ~1,000 steps).
    """

    def __init__(self, module: nn.Module, decay: float):
        if not 0.0 < float(decay) < 1.0:
            raise ValueError(f"train.ema must be in (0, 1) to average (0 = off), got {decay}")
        self.decay = float(decay)
        self.model = copy.deepcopy(module).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        """Fold ``module``'s weights after optimiser step ``step`` (>= 1) into the average."""
        beta = ema_decay(self.decay, step)
        src = module.state_dict()
        for k, v in self.model.state_dict().items():
            if v.is_floating_point():
                v.lerp_(src[k].detach().to(v.dtype), 1.0 - beta)
            else:
                v.copy_(src[k])

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)


__all__ = ["WeightAverage", "ema_decay"]

"""cks.schedule: each switch step is a closed-form function of the config, checked at its boundary."""
import pytest
import torch

from cks.config import get_preset
from cks.schedule import (finetune_start, loss_config_at, lr_at, make_optimizer, prior_end, snapshot_steps,
                          spacing_start, warmup_steps)


def _cfg(**over):
    return get_preset("base", overrides=over)


def test_learning_rate_switches_at_the_finetune_step():
    cfg = _cfg(**{"train.steps": 1000, "train.finetune_from": 0.9, "train.lr": 1e-3, "train.finetune_lr": 2e-4})
    assert finetune_start(cfg) == 900
    assert lr_at(899, cfg) == 1e-3 and lr_at(900, cfg) == 2e-4 and lr_at(999, cfg) == 2e-4


def test_prior_end_rounds_up_and_the_loss_config_follows_it():
    cfg = _cfg(**{"train.steps": 7, "loss.prior_until": 0.5, "loss.prior_scale_after": 0.25})
    assert prior_end(cfg) == 4  # ceil(3.5)
    assert loss_config_at(cfg, 3).prior_scale == cfg.loss.prior_scale
    assert loss_config_at(cfg, 4).prior_scale == 0.25


def test_warmup_and_spacing_steps():
    cfg = _cfg(**{"train.steps": 999, "train.warmup_fraction": 0.1, "loss.spacing_from": 0.5})
    assert warmup_steps(cfg) == 99 and spacing_start(cfg) == 499  # floors
    assert warmup_steps(_cfg(**{"train.steps": 999, "train.warmup_steps": 7, "train.warmup_fraction": 0.1})) == 7


def test_snapshots_are_evenly_spaced_and_end_at_the_last_step():
    assert snapshot_steps(_cfg(**{"train.steps": 10, "train.snapshots": 3})) == {3, 7, 10}


@pytest.mark.parametrize("name,cls", [("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)])
def test_optimiser_choice(name, cls):
    opt = make_optimizer(torch.nn.Linear(2, 2), _cfg(**{"train.optimizer": name, "train.weight_decay": 0.0}))
    assert type(opt) is cls and opt.param_groups[0]["lr"] == _cfg().train.lr
    assert opt.param_groups[0]["weight_decay"] == (1e-4 if name == "adamw" else 0.0)  # AdamW without one gets 1e-4


def test_unknown_optimiser_is_refused():
    with pytest.raises(ValueError, match="adam"):
        make_optimizer(torch.nn.Linear(2, 2), _cfg(**{"train.optimizer": "sgd"}))

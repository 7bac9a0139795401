"""Eq. 6 (L_MC): delta / n * sum_i (mean m_i)^(-exponent)."""
import math

import pytest
import torch

from cks.losses.collapse import collapse_loss

SHAPE = (1, 20, 20)


def _loss(logits, origin, exponent=1.0, delta=0.01):
    k = logits.shape[0]
    return collapse_loss(logits, torch.zeros(k, dtype=torch.long), origin, SHAPE, delta, exponent).item()


@pytest.mark.parametrize("exponent", [1.0, 0.5])
def test_closed_form_constant_mask(exponent):
    p = 0.3
    logits = torch.full((2, 6, 6), math.log(p / (1 - p)))
    origin = torch.tensor([[0, 0], [10, 10]])
    assert _loss(logits, origin, exponent) == pytest.approx(0.01 * p ** (-exponent), rel=1e-5)


def test_off_image_counts_as_zero_and_author_form():
    p = 0.4
    logits = torch.full((1, 6, 6), math.log(p / (1 - p)))
    origin = torch.tensor([[-3, 0]])  # half the window above the image -> mean p / 2
    assert _loss(logits, origin, 1.0) == pytest.approx(0.01 / (p / 2), rel=1e-5)
    # author: delta * S / sqrt(sum of in-image m_i)
    assert _loss(logits, origin, 0.5) == pytest.approx(0.01 * 6 / math.sqrt(18 * p), rel=1e-5)


def test_smaller_masks_cost_more_and_stay_finite():
    origin = torch.tensor([[5, 5]])
    big = torch.full((1, 8, 8), -5.0)
    big[:, 1:7, 1:7] = 5.0
    small = torch.full((1, 8, 8), -5.0)
    small[:, 3:5, 3:5] = 5.0
    assert _loss(small, origin) > _loss(big, origin)
    dead = _loss(torch.full((1, 8, 8), -1e4), origin)
    assert math.isfinite(dead) and dead == pytest.approx(0.01 / 1e-6)


def test_gradient_increases_mask_and_empty():
    logits = torch.zeros(1, 4, 4, requires_grad=True)
    collapse_loss(logits, torch.tensor([0]), torch.tensor([[0, 0]]), SHAPE).backward()
    assert (logits.grad < 0).all()
    empty = torch.zeros(0, 4, 4, requires_grad=True)
    out = collapse_loss(empty, torch.zeros(0, dtype=torch.long), torch.zeros(0, 2, dtype=torch.long), SHAPE)
    assert out.item() == 0.0


# --- the hinge form (ours, issue #9): the same minimum area, no push above it -------------------------------

from cks.losses.collapse import collapse_hinge_loss, hinge_floor, push_pull_ratio  # noqa: E402
from cks.losses.consistency import instance_consistency_loss  # noqa: E402


def _hinge(logits, origin, floor, weight=2.0):
    k = logits.shape[0]
    return collapse_hinge_loss(logits, torch.zeros(k, dtype=torch.long), origin, SHAPE, floor, weight)


def test_hinge_closed_form_below_and_above_the_floor():
    origin = torch.tensor([[0, 0], [10, 10]])
    logits = torch.stack([torch.full((6, 6), math.log(0.3 / 0.7)), torch.full((6, 6), math.log(0.8 / 0.2))])
    # window 0 (mean 0.3) is below the floor 0.5 by 0.2; window 1 (mean 0.8) is above it -> w * 0.2 / 2 windows
    assert _hinge(logits, origin, 0.5, weight=3.0).item() == pytest.approx(3.0 * 0.2 / 2, rel=1e-5)
    # a per-window floor; off-image pixels count as 0 (half the window above the image: mean 0.4)
    half = _hinge(torch.full((1, 6, 6), math.log(0.8 / 0.2)), torch.tensor([[-3, 0]]), torch.tensor([0.5]))
    assert half.item() == pytest.approx(2.0 * 0.1, rel=1e-5)


def test_hinge_has_no_gradient_above_the_floor():
    logits = torch.full((1, 6, 6), 2.0, requires_grad=True)  # mean 0.88
    _hinge(logits, torch.tensor([[0, 0]]), 0.5).backward()
    assert (logits.grad == 0).all()


def test_hinge_push_is_weight_times_the_largest_l_s_pull():
    """Below the floor, d L_MC / d m = -w / (S^2 n): w times L_S's pull where M_c = 0 (Eq. 8, K = S^2 n)."""
    s, origin, batch = 6, torch.tensor([[2, 2]]), torch.tensor([0])
    logits = torch.full((1, s, s), -1.0, requires_grad=True)  # mean 0.27, one window: no overlap term
    collapse_hinge_loss(logits, batch, origin, SHAPE, 0.5, 2.5).backward()
    push = logits.grad.clone()
    logits.grad = None
    instance_consistency_loss(logits, batch, origin, torch.zeros(SHAPE), SHAPE).backward()
    torch.testing.assert_close(push, -2.5 * logits.grad)


@pytest.mark.parametrize("exponent", [1.0, 0.5])
def test_hinge_floor_is_where_the_power_form_push_equals_the_pull(exponent):
    s, delta = 96, 0.004
    floor = hinge_floor(delta, exponent)
    assert push_pull_ratio(floor * s * s, s, delta, exponent) == pytest.approx(1.0)
    ratio = push_pull_ratio([0.9 * floor * s * s, 1.1 * floor * s * s], s, delta, exponent, form="hinge", weight=2.0)
    assert list(ratio) == [2.0, 0.0]

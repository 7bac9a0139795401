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

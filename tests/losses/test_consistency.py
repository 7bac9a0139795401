"""Eq. 4 (M_p), Eq. 5 (L_CE), Eq. 6/7 (L_M) and Eq. 8 (L_S) against direct loop implementations."""
import math

import pytest
import torch
import torch.nn.functional as F

from cks.errors import CksConfigError
from cks.losses.consistency import (collaborator_entropy_loss, collaborator_linear_loss, collaborator_soft_entropy_loss,
                                    instance_consistency_loss, linear_consistency, principal_foreground,
                                    prior_logits)


def brute_m_p(logits, batch, origin, points, shape, d, pi, center):
    """Eq. 4 pixel by pixel: max over windows of sigmoid(logit + pi * exp(-r^2 / 2d^2)); uncovered -> 0."""
    b, h, w = shape
    s = logits.shape[-1]
    best = torch.full((b, h, w), -math.inf)
    for k in range(logits.shape[0]):
        y0, x0 = origin[k].tolist()
        cy, cx = points[k].tolist() if center == "point" else (y0 + (s - 1) / 2, x0 + (s - 1) / 2)
        for a in range(s):
            for c in range(s):
                y, x = y0 + a, x0 + c
                if 0 <= y < h and 0 <= x < w:
                    z = logits[k, a, c].item() + pi * math.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * d[k] ** 2))
                    best[batch[k], y, x] = max(best[batch[k], y, x].item(), z)
    return torch.sigmoid(best)


def brute_l_s(logits, batch, origin, m_c, shape, variant="linear", overlap="soft"):
    """Eq. 8 window pixel by window pixel, with other windows' values looked up by absolute position
    (also off the image, where M_c reads 0); normalised by S^2 * N."""
    s = logits.shape[-1]
    b, h, w = shape
    m = torch.sigmoid(logits)
    v = m if overlap == "soft" else F.softplus(logits)
    total = 0.0
    for i in range(logits.shape[0]):
        yi, xi = origin[i].tolist()
        for a in range(s):
            for c in range(s):
                y, x = yi + a, xi + c
                mc = m_c[batch[i], y, x].item() if (0 <= y < h and 0 <= x < w) else 0.0
                mi = m[i, a, c].item()
                if variant == "linear":
                    first = (1 - mc) * mi + mc * (1 - mi)
                else:
                    t = 1.0 if mc >= 0.5 else 0.0
                    first = -(t * math.log(mi) + (1 - t) * math.log(1 - mi))
                others = 0.0
                for j in range(logits.shape[0]):
                    yj, xj = origin[j].tolist()
                    if j != i and batch[j] == batch[i] and 0 <= y - yj < s and 0 <= x - xj < s:
                        others += v[j, y - yj, x - xj].item()
                total += first + mi * others
    return total / (s * s * logits.shape[0])


def test_prior_logits_values():
    origin = torch.tensor([[10, 20]])
    points = torch.tensor([[13.0, 22.0]])
    p = prior_logits(points, origin, 6, torch.tensor([2.0]), "point")
    assert p.shape == (1, 6, 6)
    assert p[0, 3, 2] == pytest.approx(1.0)  # the point's own pixel
    assert p[0, 0, 0] == pytest.approx(math.exp(-(9 + 4) / 8))
    q = prior_logits(points, origin, 6, torch.tensor([2.0]), "window")  # centre (2.5, 2.5)
    assert q[0, 0, 5] == pytest.approx(math.exp(-(2.5 ** 2 + 2.5 ** 2) / 8))
    torch.testing.assert_close(q[0], q[0].flip(0).flip(1))
    with pytest.raises(CksConfigError):
        prior_logits(points, origin, 6, torch.tensor([2.0]), "corner")


@pytest.mark.parametrize("center", ["point", "window"])
@pytest.mark.parametrize("pi", [0.0, 2.0])
def test_principal_foreground_matches_loop(windows, center, pi):
    w = windows
    d = torch.tensor([3.0, 5.0, 4.0, 2.0])
    logits = w["logits"].clone().requires_grad_(True)
    m_p = principal_foreground(logits, w["batch"], w["origin"], w["points"], w["shape"], d, pi, center)
    assert not m_p.requires_grad
    expect = brute_m_p(w["logits"], w["batch"], w["origin"], w["points"], w["shape"], d.tolist(), pi, center)
    torch.testing.assert_close(m_p, expect, atol=1e-6, rtol=1e-5)
    assert m_p[0, 11, 0] == 0 and m_p[1, 11, 13] == 0  # covered by no window


def test_force_points(windows):
    w = windows
    d = torch.full((4,), 3.0)
    logits = torch.full_like(w["logits"], -20.0)
    m_p = principal_foreground(logits, w["batch"], w["origin"], w["points"], w["shape"], d, 0.0, "point", True)
    # points (3.5, 4.0) -> pixel (4, 4); (7.0, 7.2) -> (7, 7); (10.0, 12.6) -> (10, 13); image 1: (1.1, 1.0)
    ones = {(0, 4, 4), (0, 7, 7), (0, 10, 13), (1, 1, 1)}
    for b, y, x in ones:
        assert m_p[b, y, x] == 1.0
    assert int((m_p > 0.5).sum()) == len(ones)


def test_eq7_gradient():
    torch.manual_seed(3)
    h, w = 5, 7
    m_p = torch.rand(1, h, w)
    m_c = torch.rand(1, h, w, requires_grad=True)
    (g,) = torch.autograd.grad(linear_consistency(m_c, m_p), m_c)
    torch.testing.assert_close(g, (1 - 2 * m_p) / (h * w))
    # the logit-level loss is the same function of sigmoid(fg_logits)
    fg = torch.logit(m_c.detach())
    torch.testing.assert_close(collaborator_linear_loss(fg, m_p), linear_consistency(m_c.detach(), m_p))


def test_entropy_loss_is_bce_on_hard_labels():
    m_p = torch.tensor([[[0.2, 0.5, 0.9]]])
    fg = torch.tensor([[[0.3, -1.0, 2.0]]])
    q = torch.sigmoid(fg)
    expect = -(torch.log(1 - q[0, 0, 0]) + torch.log(q[0, 0, 1]) + torch.log(q[0, 0, 2])) / 3
    torch.testing.assert_close(collaborator_entropy_loss(fg, m_p), expect)


def test_soft_entropy_value_and_gradient():
    """BCE against the soft M_p: value by hand, gradient (M_c - M_p) / N in closed form."""
    torch.manual_seed(4)
    h, w = 4, 6
    m_p = torch.rand(1, h, w)
    fg = torch.randn(1, h, w, requires_grad=True)
    q = torch.sigmoid(fg.detach())
    expect = (-(m_p * torch.log(q) + (1 - m_p) * torch.log(1 - q))).mean()
    loss = collaborator_soft_entropy_loss(fg, m_p)
    torch.testing.assert_close(loss, expect)
    (g,) = torch.autograd.grad(loss, fg)
    torch.testing.assert_close(g, (q - m_p) / (h * w))
    # with a hard target it is L_CE (Eq. 5)
    hard = (m_p >= 0.5).float()
    torch.testing.assert_close(collaborator_soft_entropy_loss(fg.detach(), hard), collaborator_entropy_loss(fg.detach(), hard))


def test_linear_l_m_vanishes_where_the_collaborator_is_confidently_wrong():
    """Why soft_entropy exists: at logit +15 against M_p = 0.1 the linear L_M (Eq. 6) barely moves the logit."""
    m_p = torch.tensor([[[0.1]]])
    fg = torch.tensor([[[15.0]]], requires_grad=True)
    (g_lin,) = torch.autograd.grad(collaborator_linear_loss(fg, m_p), fg)
    (g_soft,) = torch.autograd.grad(collaborator_soft_entropy_loss(fg, m_p), fg)
    q = torch.sigmoid(torch.tensor(15.0))
    torch.testing.assert_close(g_lin[0, 0, 0], (1 - 2 * 0.1) * q * (1 - q))  # ~2.5e-7
    torch.testing.assert_close(g_soft[0, 0, 0], q - 0.1)
    assert g_soft.item() > 1e5 * g_lin.item()


def test_l_m_does_not_train_principal(windows):
    w = windows
    logits = w["logits"].clone().requires_grad_(True)
    fg = torch.randn(w["shape"], requires_grad=True)
    m_p = principal_foreground(logits, w["batch"], w["origin"], w["points"], w["shape"],
                               torch.full((4,), 3.0), 2.0)
    collaborator_linear_loss(fg, m_p).backward()
    assert logits.grad is None or not logits.grad.any()
    assert fg.grad is not None and fg.grad.abs().sum() > 0


@pytest.mark.parametrize("variant,overlap", [("linear", "soft"), ("entropy", "soft"), ("linear", "softplus")])
def test_l_s_matches_loop(windows, variant, overlap):
    w = windows
    m_c = torch.rand(w["shape"])
    got = instance_consistency_loss(w["logits"], w["batch"], w["origin"], m_c, w["shape"], variant, overlap)
    expect = brute_l_s(w["logits"], w["batch"], w["origin"], m_c, w["shape"], variant, overlap)
    assert got.item() == pytest.approx(expect, rel=1e-5)


def test_l_s_overlap_term_zero_for_disjoint_positive_for_overlap():
    torch.manual_seed(4)
    s, shape = 4, (1, 10, 10)
    batch = torch.tensor([0, 0])
    m_c = torch.rand(shape)
    logits = torch.randn(2, s, s)

    def single(k, origin):
        return instance_consistency_loss(logits[k:k + 1], batch[:1], origin[k:k + 1], m_c, shape)

    disjoint = torch.tensor([[0, 0], [5, 5]])
    both = instance_consistency_loss(logits, batch, disjoint, m_c, shape)
    assert both.item() == (single(0, disjoint) + single(1, disjoint)).item() / 2  # overlap term exactly 0
    overlapping = torch.tensor([[0, 0], [2, 1]])
    both = instance_consistency_loss(logits, batch, overlapping, m_c, shape)
    assert both > (single(0, overlapping) + single(1, overlapping)) / 2
    # same positions in different images do not overlap
    two_images = instance_consistency_loss(logits, torch.tensor([0, 1]), overlapping, m_c.expand(2, 10, 10),
                                           (2, 10, 10))
    assert two_images.item() == pytest.approx((single(0, overlapping) + single(1, overlapping)).item() / 2)


def test_l_s_does_not_train_collaborator(windows):
    w = windows
    fg = torch.randn(w["shape"], requires_grad=True)
    logits = w["logits"].clone().requires_grad_(True)
    instance_consistency_loss(logits, w["batch"], w["origin"], torch.sigmoid(fg), w["shape"]).backward()
    assert fg.grad is None or not fg.grad.any()
    assert logits.grad.abs().sum() > 0


def test_l_s_pushes_off_image_pixels_to_zero():
    # a window half off the image, M_c = 1 on the image: the gradient lowers m_i off-image, raises it inside
    logits = torch.zeros(1, 4, 4, requires_grad=True)
    instance_consistency_loss(logits, torch.tensor([0]), torch.tensor([[-2, 0]]), torch.ones(1, 6, 6),
                              (1, 6, 6)).backward()
    assert (logits.grad[0, :2] > 0).all() and (logits.grad[0, 2:] < 0).all()


def test_l_s_empty_and_bad_options(windows):
    w = windows
    empty = torch.zeros(0, 8, 8, requires_grad=True)
    out = instance_consistency_loss(empty, w["batch"][:0], w["origin"][:0], torch.rand(w["shape"]), w["shape"])
    assert out.item() == 0.0 and out.requires_grad
    with pytest.raises(CksConfigError):
        instance_consistency_loss(w["logits"], w["batch"], w["origin"], torch.rand(w["shape"]), w["shape"], "hinge")
    with pytest.raises(CksConfigError):
        instance_consistency_loss(w["logits"], w["batch"], w["origin"], torch.rand(w["shape"]), w["shape"],
                                  overlap="hard")

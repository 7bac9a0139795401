"""The summed CKS objective (Sec. III-E): weights, d per window, and gradient routing by detaching."""
from dataclasses import replace

import pytest
import torch

from cks.config import LossConfig
from cks.errors import CksConfigError
from cks.losses import (border_loss, cks_loss_terms, collaborator_linear_loss, collapse_loss,
                        instance_consistency_loss, principal_border, principal_foreground, prior_d_per_window)


def _inputs(w):
    seg = dict(logits=w["logits"].clone().requires_grad_(True), batch=w["batch"], origin=w["origin"],
               points=w["points"])
    torch.manual_seed(5)
    collab = dict(fg_logits=torch.randn(w["shape"], requires_grad=True),
                  border_logits=torch.randn(w["shape"], requires_grad=True))
    return seg, collab


ZERO = dict(lambda_s=0.0, lambda_m=0.0, lambda_b=0.0, lambda_mc=0.0)


def test_terms_and_total(windows):
    seg, collab = _inputs(windows)
    cfg = LossConfig(lambda_s=0.5, lambda_m=2.0, lambda_b=3.0, lambda_mc=4.0)
    out = cks_loss_terms(seg, collab, windows["shape"], torch.tensor([0, 0]), None, cfg)
    assert set(out) == {"L_S", "L_M", "L_B", "L_MC", "total"}
    assert all(v.dim() == 0 for v in out.values())
    expect = 0.5 * out["L_S"] + 2 * out["L_M"] + 3 * out["L_B"] + 4 * out["L_MC"]
    torch.testing.assert_close(out["total"], expect)
    # each term equals its own function
    shape, lg = windows["shape"], seg["logits"]
    d = torch.full((4,), 20.0)
    m_p = principal_foreground(lg, seg["batch"], seg["origin"], seg["points"], shape, d, 2.0)
    torch.testing.assert_close(out["L_M"], collaborator_linear_loss(collab["fg_logits"], m_p))
    torch.testing.assert_close(out["L_S"], instance_consistency_loss(
        lg, seg["batch"], seg["origin"], torch.sigmoid(collab["fg_logits"]), shape))
    torch.testing.assert_close(out["L_MC"], collapse_loss(lg, seg["batch"], seg["origin"], shape, 0.01, LossConfig().collapse_exponent))


def test_border_term_enters_once(windows):
    seg, collab = _inputs(windows)
    cfg = LossConfig(**{**ZERO, "lambda_b": 1.0})
    out = cks_loss_terms(seg, collab, windows["shape"], None, None, cfg)
    torch.testing.assert_close(out["total"], out["L_B"])
    g_total = torch.autograd.grad(out["total"], collab["border_logits"])[0]
    alone = border_loss(collab["border_logits"],
                        principal_border(seg["logits"], seg["batch"], seg["origin"], windows["shape"]))
    g_alone = torch.autograd.grad(alone, collab["border_logits"])[0]
    torch.testing.assert_close(g_total, g_alone)
    # with every weight 1 the border logits still see exactly one L_B
    seg, collab = _inputs(windows)
    out = cks_loss_terms(seg, collab, windows["shape"], None, None, LossConfig())
    torch.testing.assert_close(torch.autograd.grad(out["total"], collab["border_logits"])[0], g_alone)


def test_gradient_routing(windows):
    """Collaborator learns from L_M + L_B only (Eq. 8 (L_co)); principal from L_S + L_B + L_MC (Eq. 7 (L_pr))."""
    shape = windows["shape"]
    seg, collab = _inputs(windows)
    out = cks_loss_terms(seg, collab, shape, None, None, LossConfig())
    g_seg, g_fg = torch.autograd.grad(out["total"], [seg["logits"], collab["fg_logits"]])

    seg2, collab2 = _inputs(windows)
    only_m = cks_loss_terms(seg2, collab2, shape, None, None, LossConfig(**{**ZERO, "lambda_m": 1.0}))
    torch.testing.assert_close(g_fg, torch.autograd.grad(only_m["total"], collab2["fg_logits"])[0])

    seg3, collab3 = _inputs(windows)
    principal = cks_loss_terms(seg3, collab3, shape, None, None, LossConfig(lambda_m=0.0))
    torch.testing.assert_close(g_seg, torch.autograd.grad(principal["total"], seg3["logits"])[0])

    seg4, collab4 = _inputs(windows)
    l_m = cks_loss_terms(seg4, collab4, shape, None, None, LossConfig(**{**ZERO, "lambda_m": 1.0}))["total"]
    l_m.backward()
    assert seg4["logits"].grad is None or not seg4["logits"].grad.any()
    seg5, collab5 = _inputs(windows)
    cks_loss_terms(seg5, collab5, shape, None, None, LossConfig(**{**ZERO, "lambda_s": 1.0, "lambda_mc": 1.0}))[
        "total"].backward()
    assert collab5["fg_logits"].grad is None or not collab5["fg_logits"].grad.any()
    assert collab5["border_logits"].grad is None or not collab5["border_logits"].grad.any()


def test_prior_d_per_window():
    batch = torch.tensor([0, 1, 1, 2])
    types = torch.tensor([2, 0, 1])
    torch.testing.assert_close(prior_d_per_window(types, batch, (20.0, 15.0, 10.0)),
                               torch.tensor([10.0, 20.0, 20.0, 15.0]))
    torch.testing.assert_close(prior_d_per_window(types, batch, (12.0,)), torch.full((4,), 12.0))
    with pytest.raises(CksConfigError, match="prior_d"):
        prior_d_per_window(types, batch, (20.0, 15.0))


def test_d_table_changes_m_p(windows):
    seg, collab = _inputs(windows)
    shape = windows["shape"]
    a = cks_loss_terms(seg, collab, shape, torch.tensor([0, 1]), (20.0, 15.0), LossConfig())["L_M"]
    b = cks_loss_terms(seg, collab, shape, torch.tensor([0, 1]), (100.0,), LossConfig())["L_M"]
    assert a.item() != b.item()
    with pytest.raises(CksConfigError):
        cks_loss_terms(seg, collab, shape, torch.tensor([0, 3]), None, LossConfig(prior_d=(20.0, 15.0)))


@pytest.mark.parametrize("change", [
    dict(consistency_principal="entropy"), dict(consistency_collaborator="entropy"),
    dict(consistency_collaborator="soft_entropy"), dict(overlap="softplus"),
    dict(prior_center="window", force_point_foreground=True, collapse_exponent=0.5, border_loss_factor=0.5),
    dict(prior_scale=0.0), dict(collapse_form="hinge"),
])
def test_options_run(windows, change):
    seg, collab = _inputs(windows)
    out = cks_loss_terms(seg, collab, windows["shape"], None, None, replace(LossConfig(), **change))
    assert torch.isfinite(out["total"])
    out["total"].backward()


def test_bad_options(windows):
    seg, collab = _inputs(windows)
    for change in (dict(mode="supervised"), dict(consistency_collaborator="dice"), dict(collapse_form="relu")):
        with pytest.raises(CksConfigError):
            cks_loss_terms(seg, collab, windows["shape"], None, None, replace(LossConfig(), **change))


def test_with_collaborator_module(windows):
    """Every collaborator parameter is trained by the total: fg net through L_M, border net through L_B."""
    from cks.config import CollaboratorConfig
    from cks.models.collaborator import Collaborator

    net = Collaborator(CollaboratorConfig(foreground=(4, 8), border_channels=(4,)))
    b, h, w = windows["shape"]
    seg, _ = _inputs(windows)
    out = cks_loss_terms(seg, net(torch.randn(b, 1, h, w)), windows["shape"], None, None, LossConfig())
    out["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


def test_given_foreground_replaces_m_c_in_l_s_only(windows):
    """``foreground=``: L_S pulls the masks toward it (not M_c); L_M, L_B, L_MC are unchanged."""
    shape = windows["shape"]
    seg, collab = _inputs(windows)
    fg = (torch.rand(shape, generator=torch.Generator().manual_seed(3)) > 0.5).float()
    out = cks_loss_terms(seg, collab, shape, None, None, LossConfig(), foreground=fg)
    ref = cks_loss_terms(seg, collab, shape, None, None, LossConfig())
    torch.testing.assert_close(out["L_S"], instance_consistency_loss(seg["logits"], seg["batch"], seg["origin"], fg, shape))
    assert not torch.allclose(out["L_S"], ref["L_S"])
    for k in ("L_M", "L_B", "L_MC"):
        torch.testing.assert_close(out[k], ref[k])
    # L_S then sends no gradient to the collaborator's foreground logits (only L_M does)
    g_given = torch.autograd.grad(out["total"], collab["fg_logits"], retain_graph=True)[0]
    g_ref = torch.autograd.grad(cks_loss_terms(seg, collab, shape, None, None, LossConfig(**{**ZERO, "lambda_m": 1.0}),
                                               foreground=fg)["total"], collab["fg_logits"])[0]
    torch.testing.assert_close(g_given, g_ref)
    with pytest.raises(CksConfigError, match="shape"):
        cks_loss_terms(seg, collab, shape, None, None, LossConfig(), foreground=fg[:, :-1])


def test_hinge_collapse_form_uses_the_power_forms_minimum_area(windows):
    """``collapse_form="hinge"``: L_MC = w * mean_i max(0, (e delta)^(1/(e+1)) - mean m_i), off-image pixels 0."""
    seg, collab = _inputs(windows)
    cfg = replace(LossConfig(), collapse_form="hinge", collapse_delta=0.16, collapse_exponent=1.0,
                  collapse_hinge_weight=3.0)
    out = cks_loss_terms(seg, collab, windows["shape"], None, None, cfg)
    floor = (1.0 * 0.16) ** 0.5  # 0.4
    m = torch.sigmoid(windows["logits"])
    _, h, w = windows["shape"]
    means = []
    for k, (y, x) in enumerate(windows["origin"].tolist()):  # in-image part of each window, by slicing
        ys, xs = slice(max(0, -y), min(8, h - y)), slice(max(0, -x), min(8, w - x))
        means.append(m[k, ys, xs].sum() / 64)
    means = torch.stack(means)
    assert (means < floor).any() and (means > floor).any()  # both sides of the hinge are exercised
    torch.testing.assert_close(out["L_MC"], (3.0 * (floor - means).clamp_min(0)).mean())

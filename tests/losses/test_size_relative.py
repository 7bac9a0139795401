"""Size-relative CKS losses (issue #9): prior d and the L_MC minimum area follow ``size.diameter``."""
import math
from dataclasses import replace

import pytest
import torch

from cks.config import get_preset, with_overrides
from cks.losses.cks import WARMUP_D_REL, effective_collapse_delta, effective_loss_config, effective_prior_d
from cks.losses.collapse import collapse_loss
from cks.losses.consistency import instance_consistency_loss


def test_prior_d_follows_the_target_diameter():
    cfg = get_preset("base")
    assert effective_prior_d(cfg) == pytest.approx((cfg.loss.prior_d_rel[0] * 32.0,))
    big = with_overrides(cfg, {"size.diameter": 50.0})
    assert effective_prior_d(big) == pytest.approx((cfg.loss.prior_d_rel[0] * 50.0,))
    # the paper's absolute form is untouched by the target size
    for name in ("table6_constant_d", "paper_absolute"):
        p = with_overrides(get_preset(name), {"size.diameter": 50.0})
        assert effective_prior_d(p) == (20.0,)
    assert effective_prior_d(get_preset("table6_per_type_d")) == (20.0, 15.0, 10.0)


def _window_grads(p: float, s: int, delta: float, exponent: float) -> tuple[float, float]:
    """d/dlogit of L_MC and of L_S (M_c = 0) at one pixel of a single S x S window of uniform probability p."""
    logits = torch.full((1, s, s), math.log(p / (1 - p)), dtype=torch.float64, requires_grad=True)
    batch, origin, shape = torch.tensor([0]), torch.tensor([[0, 0]]), (1, s, s)
    g_mc = torch.autograd.grad(collapse_loss(logits, batch, origin, shape, delta, exponent), logits)[0]
    m_c = torch.zeros(1, s, s, dtype=torch.float64)
    g_s = torch.autograd.grad(instance_consistency_loss(logits, batch, origin, m_c, shape), logits)[0]
    return float(g_mc[0, 0, 0]), float(g_s[0, 0, 0])


@pytest.mark.parametrize("exponent", [1.0, 0.5])
@pytest.mark.parametrize("diameter", [20.0, 32.0, 48.0])
def test_collapse_push_equals_ls_pull_at_the_minimum_area(exponent, diameter):
    """Autograd: where M_c = 0, L_S pulls a saturated pixel down with 1/(S^2 n); L_MC pushes it up with the same
    magnitude exactly when the mask's area is f * pi D^2 / 4 (f = loss.collapse_min_area)."""
    cfg = with_overrides(get_preset("base"), {"size.diameter": diameter, "loss.collapse_exponent": exponent})
    s = cfg.segmentor.window
    delta = effective_collapse_delta(cfg)
    a_min = cfg.loss.collapse_min_area * math.pi * diameter ** 2 / 4
    # a window whose probabilities sum to a_min: uniform value p = a_min / S^2 (interior, no overlap partner)
    p = a_min / s ** 2
    g_mc, g_s = _window_grads(p, s, delta, exponent)
    # both gradients are w.r.t. logits: the sigmoid' factor is common, so compare them directly
    assert g_mc == pytest.approx(-g_s, rel=1e-6)
    # a mask 3x the minimum: L_S wins by the factor 3^(e+1)
    g2, g2s = _window_grads(3 * p, s, delta, exponent)
    assert -g2 / g2s == pytest.approx(3.0 ** -(exponent + 1), rel=1e-6)


def test_absolute_delta_when_min_area_is_zero():
    cfg = get_preset("paper_absolute")
    assert effective_collapse_delta(cfg) == 0.01
    # the author's absolute L_MC (delta 0.01, e 0.5) is a_min = S^2 (e delta)^(2/3), about 1/3 of a 32-px cell
    a_min = 96 ** 2 * (0.5 * 0.01) ** (2 / 3)
    assert a_min / (math.pi * 32 ** 2 / 4) == pytest.approx(1 / 3, abs=0.01)


def test_effective_loss_config_and_warmup():
    cfg = get_preset("author")
    lc = effective_loss_config(cfg)
    assert lc.prior_d == pytest.approx((cfg.loss.prior_d_rel[0] * 32.0,)) and lc.prior_d_rel == ()
    assert lc.collapse_min_area == 0 and lc.collapse_delta == pytest.approx(0.01, rel=0.02)  # the author's, at 32 px
    w = effective_loss_config(cfg, warmup=True)
    assert w.prior_d == pytest.approx((WARMUP_D_REL * 32.0,)) and w.prior_scale == 1.0 and w.overlap == "softplus"
    assert effective_loss_config(get_preset("paper_absolute"), warmup=True).prior_d == (100.0,)


def test_signed_prior_crosses_zero_at_k_d():
    from cks.losses.consistency import prior_logits

    d, k = 8.0, 1.5
    pts = torch.tensor([[20.0, 20.0]])
    origin = torch.tensor([[0, 0]])
    g = prior_logits(pts, origin, 48, torch.tensor([d]), "point", zero_at=k)[0]
    assert float(g[20, 20]) == pytest.approx(1.0)
    assert float(g[20, 32]) == pytest.approx(0.0, abs=1e-6)  # r = 12 = k d
    far = math.exp(-k * k / 2) / (1 - math.exp(-k * k / 2))
    assert float(g[20, 47]) < 0 and float(g.min()) >= -far - 1e-6
    paper = prior_logits(pts, origin, 48, torch.tensor([d]), "point")[0]
    assert float(paper.min()) > 0  # the paper's prior only ever adds foreground


def test_setting_absolute_values_selects_the_absolute_form():
    cfg = with_overrides(get_preset("base"), {"loss.prior_d": (9.0,), "loss.collapse_delta": 0.02})
    assert effective_prior_d(cfg) == (9.0,) and effective_collapse_delta(cfg) == 0.02
    both = with_overrides(get_preset("base"), ["loss.prior_d=9", "loss.prior_d_rel=0.3"])
    assert effective_prior_d(both) == pytest.approx((9.6,))  # the relative form given in the same call wins


def test_spacing_ratio_closed_form():
    """r_i = clip(spacing * nearest-neighbour distance / D, floor, 1); neighbours only in the same image."""
    from cks.losses.collapse import spacing_ratio

    pts = torch.tensor([[0.0, 0.0], [0.0, 10.0], [0.0, 30.0], [0.0, 5.0]])
    batch = torch.tensor([0, 0, 0, 1])  # the last point is alone in image 1 (5 px from the first, not counted)
    r = spacing_ratio(pts, batch, 1.0, 32.0)
    torch.testing.assert_close(r, torch.tensor([10 / 32, 10 / 32, 20 / 32, 1.0]))
    torch.testing.assert_close(spacing_ratio(pts, batch, 2.0, 32.0), torch.tensor([20 / 32, 20 / 32, 1.0, 1.0]))
    # duplicates are held at the floor; spacing 0 or one window switches it off
    dup = spacing_ratio(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), 1.0, 32.0)
    torch.testing.assert_close(dup, torch.full((2,), 0.25))
    assert spacing_ratio(pts, batch, 0.0, 32.0).tolist() == [1.0] * 4
    assert spacing_ratio(pts[:1], batch[:1], 1.0, 32.0).tolist() == [1.0]


@pytest.mark.parametrize("exponent", [1.0, 0.5])
def test_spacing_scales_each_windows_minimum_area_by_r_squared(exponent):
    """Autograd: with ``loss.collapse_spacing`` the push of L_MC equals the L_S pull (M_c = 0) at ``r^2 a_min`` for a
    cell whose nearest neighbour is ``r D / spacing`` away, where a_min is the image-wide minimum area."""
    from cks.losses.cks import cks_loss_terms

    d, s = 32.0, 96
    cfg = with_overrides(get_preset("base"), {"size.diameter": d, "loss.collapse_exponent": exponent,
                                              "loss.collapse_spacing": 1.0})
    lc = effective_loss_config(cfg)
    assert lc.spacing_diameter == d
    a_min = cfg.loss.collapse_min_area * math.pi * d ** 2 / 4
    r = 0.5
    # two fully on-image windows whose points are r * D = 16 px apart; L_MC alone (the other weights 0) is
    # compared with the L_S pull on one isolated window where M_c = 0
    p = r * r * a_min / s ** 2
    logits = torch.full((2, s, s), math.log(p / (1 - p)), dtype=torch.float64, requires_grad=True)
    batch = torch.tensor([0, 0])
    origin = torch.tensor([[0, 0], [0, 16]])
    points = origin.double() + 47.5
    shape = (1, s, s + 16)
    collab = {"fg_logits": torch.full(shape, -50.0, dtype=torch.float64),
              "border_logits": torch.zeros(shape, dtype=torch.float64)}
    only_mc = replace(lc, lambda_s=0.0, lambda_m=0.0, lambda_b=0.0, lambda_mc=1.0, pairwise_weight=0.0)
    seg = {"logits": logits, "batch": batch, "origin": origin, "points": points}
    g_mc = torch.autograd.grad(cks_loss_terms(seg, collab, shape, None, None, only_mc)["total"], logits)[0]
    one = logits[:1].detach().clone().requires_grad_(True)
    g_s = torch.autograd.grad(instance_consistency_loss(one, batch[:1], origin[:1], torch.zeros(1, s, s, dtype=torch.float64),
                                                        (1, s, s)), one)[0]
    # L_MC is a mean over the 2 windows, L_S (one window) over 1: the per-window push is g_mc * 2
    assert 2 * float(g_mc[0, 40, 40]) == pytest.approx(-float(g_s[0, 40, 40]), rel=1e-6)
    # without spacing the same mask is below the image-wide minimum by r^2 and L_MC pushes r^-2(e+1) harder
    plain = replace(only_mc, collapse_spacing=0.0)
    g0 = torch.autograd.grad(cks_loss_terms(seg, collab, shape, None, None, plain)["total"], logits)[0]
    assert float(g0[0, 40, 40]) / float(g_mc[0, 40, 40]) == pytest.approx(r ** (-2 * (exponent + 1)), rel=1e-6)
    # points farther apart than D / spacing keep the image-wide minimum area exactly
    far = {**seg, "points": torch.tensor([[47.5, 47.5], [47.5, 47.5 + 2 * d]], dtype=torch.float64)}
    g_far = torch.autograd.grad(cks_loss_terms(far, collab, shape, None, None, only_mc)["total"], logits)[0]
    torch.testing.assert_close(g_far, g0)


def test_prior_spacing_narrows_each_windows_prior(windows):
    """``loss.prior_spacing``: M_p (Eq. 4) is built with d_i = d * r_i; the warm-up keeps its wide prior for all."""
    from cks.config import LossConfig
    from cks.losses.cks import cks_loss_terms
    from cks.losses.collapse import spacing_ratio
    from cks.losses.consistency import principal_foreground

    seg = {"logits": windows["logits"], "batch": windows["batch"], "origin": windows["origin"],
           "points": windows["points"]}
    shape = windows["shape"]
    torch.manual_seed(3)
    collab = {"fg_logits": torch.randn(shape), "border_logits": torch.randn(shape)}
    cfg = LossConfig(prior_d=(12.0,), prior_spacing=1.0, spacing_diameter=8.0, lambda_s=0.0, lambda_b=0.0,
                     lambda_mc=0.0)
    r = spacing_ratio(seg["points"], seg["batch"], 1.0, 8.0)
    assert (r < 1).any() and (r == 1).any()  # close points in image 0, a lone one in image 1
    m_p = principal_foreground(seg["logits"], seg["batch"], seg["origin"], seg["points"], shape, 12.0 * r, 2.0)
    from cks.losses.consistency import collaborator_linear_loss
    out = cks_loss_terms(seg, collab, shape, None, None, cfg)
    torch.testing.assert_close(out["L_M"], collaborator_linear_loss(collab["fg_logits"], m_p))
    plain = cks_loss_terms(seg, collab, shape, None, None, replace(cfg, prior_spacing=0.0))
    assert float((out["L_M"] - plain["L_M"]).abs()) > 1e-4
    warm = effective_loss_config(with_overrides(get_preset("base"), {"loss.prior_spacing": 1.0}), warmup=True)
    assert warm.prior_spacing == 0.0


def test_spacing_starts_after_its_fraction_of_the_run():
    """``loss.spacing_from``: the spacing terms are off before ``floor(spacing_from * steps)``, on from there."""
    from cks.train import CKSModule, spacing_start

    cfg = with_overrides(get_preset("texture_collaborator"), {"loss.collapse_spacing": 1.0, "loss.prior_spacing": 0.5,
                                                              "loss.spacing_from": 0.5, "train.steps": 700})
    assert spacing_start(cfg) == 350
    module = CKSModule(cfg)
    before, after = module.loss_config(349), module.loss_config(350)
    assert (before.collapse_spacing, before.prior_spacing) == (0.0, 0.0)
    assert (after.collapse_spacing, after.prior_spacing) == (1.0, 0.5)
    assert before.collapse_delta == after.collapse_delta  # the image-wide floor itself is unchanged


def test_prior_until_switches_the_prior_off():
    """``loss.prior_until``: pi of Eq. 4 is the preset's before ``ceil(prior_until * steps)`` and 0 from there on."""
    from cks.train import loss_config_at, prior_end

    cfg = with_overrides(get_preset("base"), {"loss.prior_until": 0.5, "train.steps": 701})
    assert prior_end(cfg) == 351
    assert loss_config_at(cfg, 350).prior_scale == cfg.loss.prior_scale == 2.0
    assert loss_config_at(cfg, 351).prior_scale == 0.0
    assert prior_end(with_overrides(get_preset("base"), {"train.steps": 701})) == 351  # the default: half the run
    full = with_overrides(get_preset("prior_throughout"), {"train.steps": 700})
    assert prior_end(full) == 700 and loss_config_at(full, 699).prior_scale == 2.0  # the paper: the whole run
    weaker = with_overrides(cfg, {"loss.prior_scale_after": 0.75})
    assert loss_config_at(weaker, 350).prior_scale == 2.0 and loss_config_at(weaker, 351).prior_scale == 0.75


def test_late_floor_moves_the_balance_point_after_the_prior_ends():
    """loss.collapse_min_area_after: from ceil(prior_until * steps) on, L_MC's push equals L_S's pull at the late floor
    f' * pi D^2 / 4 (autograd, as above); before that step, and with the key at 0, the floor is collapse_min_area."""
    from cks.schedule import loss_config_at, prior_end

    cfg = with_overrides(get_preset("base"), {"loss.collapse_min_area_after": 0.2, "train.steps": 100})
    end = prior_end(cfg)
    early, late = loss_config_at(cfg, end - 1), loss_config_at(cfg, end)
    assert early.collapse_delta == pytest.approx(effective_collapse_delta(get_preset("base")))
    assert loss_config_at(get_preset("base"), end).collapse_delta == early.collapse_delta  # 0 = unchanged
    s, e, d = cfg.segmentor.window, cfg.loss.collapse_exponent, cfg.size.diameter
    p = 0.2 * math.pi * d ** 2 / 4 / s ** 2  # a mask whose area is the late floor
    g_mc, g_s = _window_grads(p, s, late.collapse_delta, e)
    assert g_mc == pytest.approx(-g_s, rel=1e-6)
    # the early delta pushes harder than L_S pulls at that area (its floor, 0.45, is above it)
    g_early, _ = _window_grads(p, s, early.collapse_delta, e)
    assert -g_early > g_s * 2

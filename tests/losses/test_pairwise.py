"""L_PW, the image-affinity pairwise term on the collaborator's foreground (ours, issue #9)."""
import math

import pytest
import torch

from cks.config import Config, LossConfig, get_preset, validate, with_overrides
from cks.errors import CksConfigError
from cks.losses import cks_loss_terms
from cks.losses.pairwise import (pair_offsets, pair_weights, pairwise_loss, same_label_nll,
                                 window_pairwise_loss)


def _step_image(h=12, w=16, edge=8, low=0.0, high=1.0):
    """[1, 1, H, W]: ``low`` left of column ``edge``, ``high`` from it on."""
    x = torch.full((1, 1, h, w), low)
    x[..., edge:] = high
    return x


def test_same_label_nll_matches_the_probability_formula():
    a = torch.linspace(-6, 6, 13, dtype=torch.float64).repeat(13)
    b = torch.linspace(-6, 6, 13, dtype=torch.float64).repeat_interleave(13)
    pa, pb = torch.sigmoid(a), torch.sigmoid(b)
    torch.testing.assert_close(same_label_nll(a, b), -torch.log(pa * pb + (1 - pa) * (1 - pb)))
    # finite where probabilities saturate (one pixel sure fg, the other sure bg): -log(2 e^-60) = 60 - log 2
    far = same_label_nll(torch.tensor([60.0]), torch.tensor([-60.0]))
    assert torch.isfinite(far).all() and abs(float(far) - (60.0 - math.log(2.0))) < 1e-3


def test_offsets_cover_each_neighbour_pair_once():
    assert pair_offsets(1) == ((0, 1), (1, 0), (1, 1), (1, -1))
    assert pair_offsets(2) == ((0, 2), (2, 0), (2, 2), (2, -2))
    with pytest.raises(CksConfigError):
        pair_offsets(0)


def test_pair_weights_of_a_step_edge():
    img = _step_image()
    # standardised by the std of the image (the median only shifts it): the step becomes 1 / std
    flat = img.flatten()
    jump = 1.0 / float(flat.std())
    w_right, w_down, w_dr, w_dl = pair_weights(img, theta=0.3)
    assert w_right.shape == (1, 12, 15) and w_down.shape == (1, 11, 16) and w_dl.shape == (1, 11, 15)
    expect = math.exp(-jump / 0.3)
    # horizontal pairs across the edge (columns 7 -> 8) have the edge's weight, all others 1
    torch.testing.assert_close(w_right[0, :, 7], torch.full((12,), expect))
    assert torch.all(w_right[0, :, :7] == 1) and torch.all(w_right[0, :, 8:] == 1)
    assert torch.all(w_down == 1)  # vertical pairs never cross a vertical edge
    # down-right pair (y, x) -> (y+1, x+1) crosses at x = 7; down-left (y, x) -> (y+1, x-1) at x = 8
    torch.testing.assert_close(w_dr[0, :, 7], torch.full((11,), expect))
    torch.testing.assert_close(w_dl[0, :, 7], torch.full((11,), expect))  # column 7 of the cropped map is x = 8
    with pytest.raises(CksConfigError):
        pair_weights(img, theta=0.0)
    with pytest.raises(CksConfigError):
        pair_weights(img[0], theta=0.3)


def test_weights_do_not_depend_on_brightness_or_contrast():
    img = _step_image() + 0.05 * torch.randn(1, 1, 12, 16, generator=torch.Generator().manual_seed(0))
    for a, b in zip(pair_weights(img), pair_weights(3.0 * img + 7.0)):
        torch.testing.assert_close(a, b)


def test_constant_map_has_the_closed_form_loss():
    img = torch.rand(2, 1, 10, 11, generator=torch.Generator().manual_seed(1))
    for logit in (-3.0, 0.0, 2.0):
        p = torch.sigmoid(torch.tensor(logit, dtype=torch.float64))
        got = pairwise_loss(torch.full((2, 10, 11), logit, dtype=torch.float64), img.double())
        torch.testing.assert_close(got, -torch.log(p * p + (1 - p) * (1 - p)))
    assert float(pairwise_loss(torch.full((2, 10, 11), 40.0), img)) < 1e-12


def test_an_edge_on_the_image_edge_costs_less_than_one_in_a_flat_region():
    """The reason for the term: a foreground boundary placed where the image has none is penalised."""
    img = _step_image(h=12, w=20, edge=8)
    on_edge = torch.full((1, 12, 20), -8.0)
    on_edge[..., 8:] = 8.0
    off_edge = torch.full((1, 12, 20), -8.0)
    off_edge[..., 11:] = 8.0  # the same-size cut 3 px into the flat region
    assert float(pairwise_loss(on_edge, img)) < 0.2 * float(pairwise_loss(off_edge, img))


def test_gradient_reaches_the_logits_not_the_image():
    img = torch.rand(1, 1, 9, 9, requires_grad=True)
    lg = torch.randn(1, 9, 9, requires_grad=True)
    pairwise_loss(lg, img).backward()
    assert lg.grad is not None and torch.isfinite(lg.grad).all() and lg.grad.abs().sum() > 0
    assert img.grad is None


def test_gradient_matches_finite_differences():
    img = torch.rand(1, 2, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    lg = torch.randn(1, 6, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: pairwise_loss(t, img, 0.5, 1), (lg,))


def test_shape_mismatch_is_an_error():
    with pytest.raises(CksConfigError, match="same pixels"):
        pairwise_loss(torch.zeros(1, 8, 8), torch.zeros(1, 1, 8, 9))


def test_cks_loss_terms_adds_it_only_when_weighted(windows):
    shape = windows["shape"]
    torch.manual_seed(5)
    seg = dict(logits=windows["logits"], batch=windows["batch"], origin=windows["origin"], points=windows["points"])
    fg = torch.randn(shape, requires_grad=True)
    collab = dict(fg_logits=fg, border_logits=torch.randn(shape))
    img = torch.rand(shape[0], 1, shape[1], shape[2])
    off = cks_loss_terms(seg, collab, shape, None, None, LossConfig())
    assert "L_PW" not in off
    on = cks_loss_terms(seg, collab, shape, None, None, LossConfig(pairwise_weight=2.5), image=img)
    torch.testing.assert_close(on["L_PW"], pairwise_loss(fg, img))
    torch.testing.assert_close(on["total"], off["total"] + 2.5 * on["L_PW"])
    with pytest.raises(CksConfigError, match="needs the image"):
        cks_loss_terms(seg, collab, shape, None, None, LossConfig(pairwise_weight=1.0))


def test_config_rules():
    # ours, in the base since issue #9's 3,600-step runs; the paper's objective (LossConfig's own default, what old
    # configs without the key mean) and the presets that stand for the paper or the author's code have no such term
    assert get_preset("base").loss.pairwise_weight == 1.0
    assert get_preset("table6_constant_d").loss.pairwise_weight == 1.0  # the ablations inherit the base's
    assert get_preset("nuclear_points").loss.pairwise_weight == 0.0  # measured not to help on nuclear points
    assert LossConfig().pairwise_weight == 0.0
    assert get_preset("author").loss.pairwise_weight == 0.0
    assert get_preset("paper_absolute").loss.pairwise_weight == 0.0
    old = get_preset("base").to_dict()
    del old["loss"]["pairwise_weight"]
    assert Config.from_dict(old).loss.pairwise_weight == 0.0
    with pytest.raises(CksConfigError):
        validate(with_overrides(get_preset("base"), {"loss.pairwise_weight": -1.0}))
    with pytest.raises(CksConfigError):
        validate(with_overrides(get_preset("base"), {"loss.pairwise_theta": 0.0}))


def test_full_weights_are_indexed_by_the_first_pixel():
    img = torch.rand(2, 2, 7, 9, generator=torch.Generator().manual_seed(6))
    for (dy, dx), crop, full in zip(pair_offsets(1), pair_weights(img), pair_weights(img, full=True)):
        assert full.shape == (2, 7, 9)
        for y in range(7):
            for x in range(9):
                inside = 0 <= y + dy < 7 and 0 <= x + dx < 9
                want = float(torch.exp(-(_std(img)[:, :, y, x] - _std(img)[:, :, y + dy, x + dx]).abs().amax(1)[0]
                                       / 0.3)) if inside else 0.0
                assert abs(float(full[0, y, x]) - want) < 1e-5
        assert full.sum() == pytest.approx(float(crop.sum()), rel=1e-5)


def _std(img):
    flat = img.flatten(2)
    return (img - flat.median(2).values[..., None, None]) / flat.std(2)[..., None, None]


def test_window_version_counts_the_pairs_inside_each_window_and_the_image(windows):
    """Brute force: loop over every window, pixel and offset; pairs leaving the window or the image are skipped."""
    img = torch.rand(2, 1, 12, 14, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    lg = windows["logits"].double()
    got = window_pairwise_loss(lg, windows["batch"], windows["origin"], img, 0.4, 1)
    std = _std(img)
    num = den = 0.0
    s = windows["s"]
    for k in range(lg.shape[0]):
        b = int(windows["batch"][k])
        oy, ox = (int(v) for v in windows["origin"][k])
        for dy, dx in pair_offsets(1):
            for y in range(s):
                for x in range(s):
                    y2, x2 = y + dy, x + dx
                    if not (0 <= y2 < s and 0 <= x2 < s):
                        continue
                    iy, ix, jy, jx = oy + y, ox + x, oy + y2, ox + x2
                    if not (0 <= iy < 12 and 0 <= ix < 14 and 0 <= jy < 12 and 0 <= jx < 14):
                        continue
                    w = math.exp(-abs(float(std[b, 0, iy, ix] - std[b, 0, jy, jx])) / 0.4)
                    num += w * float(same_label_nll(lg[k, y, x], lg[k, y2, x2]))
                    den += w
    assert float(got) == pytest.approx(num / den, rel=1e-9)
    assert float(window_pairwise_loss(lg[:0], windows["batch"][:0], windows["origin"][:0], img)) == 0.0


@pytest.mark.parametrize("on", ["principal", "both"])
def test_pairwise_on_the_principal_trains_the_principal(windows, on):
    shape = windows["shape"]
    seg = dict(logits=windows["logits"].clone().requires_grad_(True), batch=windows["batch"],
               origin=windows["origin"], points=windows["points"])
    fg = torch.randn(shape, requires_grad=True)
    collab = dict(fg_logits=fg, border_logits=torch.randn(shape))
    img = torch.rand(shape[0], 1, shape[1], shape[2])
    zero = dict(lambda_s=0.0, lambda_m=0.0, lambda_b=0.0, lambda_mc=0.0)
    out = cks_loss_terms(seg, collab, shape, None, None, LossConfig(**zero, pairwise_weight=1.0, pairwise_on=on),
                         image=img)
    expect = window_pairwise_loss(seg["logits"], seg["batch"], seg["origin"], img)
    if on == "both":
        expect = expect + pairwise_loss(fg, img)
    torch.testing.assert_close(out["L_PW"], expect)
    g_seg, g_fg = torch.autograd.grad(out["total"], [seg["logits"], fg], allow_unused=True)
    assert g_seg is not None and g_seg.abs().sum() > 0
    assert (g_fg is not None and g_fg.abs().sum() > 0) == (on == "both")
    with pytest.raises(CksConfigError):
        validate(with_overrides(get_preset("base"), {"loss.pairwise_on": "everything"}))


@pytest.mark.parametrize("dilation", [1, 2])
def test_precomputed_first_pixel_weights_give_the_same_losses(windows, dilation):
    """``full_weights`` (what ``pairwise_on=both`` computes once) changes nothing but the work done."""
    img = torch.rand(2, 1, 12, 14, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    fg = torch.randn(2, 12, 14, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    full = pair_weights(img, 0.4, dilation, full=True)
    assert float(pairwise_loss(fg, img, 0.4, dilation, full)) == pytest.approx(float(pairwise_loss(fg, img, 0.4, dilation)),
                                                                             rel=1e-12)
    lg = windows["logits"].double()
    args = (lg, windows["batch"], windows["origin"], img, 0.4, dilation)
    assert float(window_pairwise_loss(*args, full)) == pytest.approx(float(window_pairwise_loss(*args)), rel=1e-12)

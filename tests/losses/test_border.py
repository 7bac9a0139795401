"""Eq. 9 (B_p, Sobel + tanh) and Eq. 10 (L_B)."""
import math

import pytest
import torch

from cks.errors import CksConfigError
from cks.losses.border import border_loss, principal_border, sobel_magnitude


def brute_sobel(m):
    """Sobel magnitude of one [S, S] window by explicit sums, reflect-padded (index -1 -> 1, S -> S-2)."""
    s = m.shape[0]

    def at(i, j):
        i = -i if i < 0 else (2 * (s - 1) - i if i >= s else i)
        j = -j if j < 0 else (2 * (s - 1) - j if j >= s else j)
        return m[i, j].item()

    out = torch.zeros(s, s)
    for i in range(s):
        for j in range(s):
            gy = sum(wt * (at(i + 1, j + dj) - at(i - 1, j + dj)) for dj, wt in ((-1, 1), (0, 2), (1, 1)))
            gx = sum(wt * (at(i + di, j + 1) - at(i + di, j - 1)) for di, wt in ((-1, 1), (0, 2), (1, 1)))
            out[i, j] = math.sqrt(min(max((gy * gy + gx * gx) / 8, 1e-8), 1.0))
    return out


def test_sobel_constant_and_step():
    const = torch.full((1, 6, 6), 0.7)
    torch.testing.assert_close(sobel_magnitude(const), torch.full((1, 6, 6), 1e-4))
    step = torch.zeros(1, 8, 8)
    step[:, 4:] = 1.0  # 0/1 step between rows 3 and 4
    e = sobel_magnitude(step)[0]
    assert torch.allclose(e[3:5], torch.ones(2, 8))  # maximal (clipped to 1) along the step
    assert torch.allclose(e[:3], torch.full((3, 8), 1e-4)) and torch.allclose(e[5:], torch.full((3, 8), 1e-4))
    soft = step * 0.25  # S_y = 0.25 * 4 = 1 -> sqrt(1 / 8)
    assert sobel_magnitude(soft)[0, 3, 2].item() == pytest.approx(math.sqrt(1 / 8))
    with pytest.raises(CksConfigError):
        sobel_magnitude(step, mode="canny")


def test_sobel_matches_loop():
    torch.manual_seed(0)
    m = torch.rand(2, 6, 6)
    got = sobel_magnitude(m)
    for k in range(2):
        torch.testing.assert_close(got[k], brute_sobel(m[k]), atol=1e-6, rtol=1e-5)


def test_principal_border_matches_loop(windows):
    w = windows
    got = principal_border(w["logits"], w["batch"], w["origin"], w["shape"])
    b, h, wd = w["shape"]
    acc = torch.zeros(b, h, wd)
    m = torch.sigmoid(w["logits"])
    for k in range(m.shape[0]):
        e = brute_sobel(m[k])
        y0, x0 = w["origin"][k].tolist()
        for a in range(w["s"]):
            for c in range(w["s"]):
                if 0 <= y0 + a < h and 0 <= x0 + c < wd:
                    acc[w["batch"][k], y0 + a, x0 + c] += e[a, c]
    torch.testing.assert_close(got, torch.tanh(acc), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("scale", [1.0, 50.0])
def test_b_p_range(windows, scale):
    w = windows
    b_p = principal_border(w["logits"] * scale, w["batch"], w["origin"], w["shape"])
    assert (b_p >= 0).all() and (b_p < 1).all()


def test_border_loss_value_and_gradient_to_both(windows):
    w = windows
    bl = torch.zeros(w["shape"])
    b_p = torch.full(w["shape"], 0.25)
    assert border_loss(bl, b_p).item() == pytest.approx(0.0625)  # (0.5 - 0.25)^2
    assert border_loss(bl, b_p, 0.5).item() == pytest.approx(0.03125)
    logits = w["logits"].clone().requires_grad_(True)
    bl = torch.randn(w["shape"], requires_grad=True)
    border_loss(bl, principal_border(logits, w["batch"], w["origin"], w["shape"])).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert bl.grad is not None and bl.grad.abs().sum() > 0


def test_no_windows_gives_zero_map():
    logits = torch.zeros(0, 8, 8, requires_grad=True)
    b_p = principal_border(logits, torch.zeros(0, dtype=torch.long), torch.zeros(0, 2, dtype=torch.long), (1, 5, 6))
    assert b_p.shape == (1, 5, 6) and not b_p.any()

"""Collaborator (Sec. III-B): shapes for odd sizes, capacities of the Table VII presets, cell-type heads."""
import pytest
import torch

from cks.config import CollaboratorConfig
from cks.errors import CksConfigError, CksDataError
from cks.models.collaborator import BorderCNN, Collaborator, ShiftGroupNorm, UNet, param_count

A1, A2, A3 = (16, 32, 64), (16, 32, 64, 128), (16, 32, 64, 128, 256)
B1 = ("cnn", (32, 32, 32))
B2 = ("unet", (16, 32, 64, 128))


@pytest.mark.parametrize("fg", [A1, A2, A3])
@pytest.mark.parametrize("border", [B1, B2])
def test_output_shapes_odd_size(fg, border):
    torch.manual_seed(0)
    cfg = CollaboratorConfig(foreground=fg, border=border[0], border_channels=border[1])
    out = Collaborator(cfg)(torch.randn(2, 1, 37, 53))
    assert set(out) == {"fg_logits", "border_logits"}
    assert out["fg_logits"].shape == (2, 37, 53)
    assert out["border_logits"].shape == (2, 37, 53)
    assert torch.isfinite(out["fg_logits"]).all() and torch.isfinite(out["border_logits"]).all()


def test_shift_group_norm_is_per_channel_standardisation():
    """ShiftGroupNorm = (x - mean) / sqrt(var + eps) + shift per image and channel (biased variance), values and
    gradients, written out here independently; on 1-pixel maps (its second code path) too."""
    torch.manual_seed(0)
    norm = ShiftGroupNorm(5)
    with torch.no_grad():
        norm.bias.copy_(torch.linspace(-1, 1, 5))
    for shape in [(2, 5, 7, 9), (3, 5, 1, 1)]:
        x = (3 * torch.randn(shape, dtype=torch.float64) + 2).requires_grad_()
        w = torch.randn(shape, dtype=torch.float64)
        n = shape[2] * shape[3]
        mean = x.sum(dim=(2, 3), keepdim=True) / n
        var = ((x - mean) ** 2).sum(dim=(2, 3), keepdim=True) / n
        ref = (x - mean) / torch.sqrt(var + norm.eps) + norm.bias.double()[None, :, None, None]
        (g_ref,) = torch.autograd.grad((ref * w).sum(), x)
        got = norm.double()(x)
        (g_got,) = torch.autograd.grad((got * w).sum(), x)
        torch.testing.assert_close(got, ref)
        torch.testing.assert_close(g_got, g_ref)
        norm.float()


def test_unet_tiny_and_odd_inputs():
    net = UNet(2, (4, 8, 8), 3)
    for h, w in [(1, 1), (5, 3), (17, 9)]:
        assert net(torch.randn(1, 2, h, w)).shape == (1, 3, h, w)


def test_author_parameter_counts():
    # By hand, a1 with 8 heads, 1 input channel (3x3 convs without bias, GroupNorm shift only):
    # encoder 9*(1*16 + 16*16 + 16*32 + 32*32 + 32*64 + 64*64) = 71,568
    # decoder 9*((64+32)*32 + 32*32 + (32+16)*16 + 16*16) = 46,080
    # GN shifts 2*(16+32+64) + 2*(32+16) = 320; head 9*16*8 + 8 = 1,160 -> 119,128 (anchor notes Sec. 2)
    assert param_count(UNet(1, A1, 8)) == 119_128
    # author's b1 conv_spec (32, 32): 9*(1*32 + 32*32) + 2*32 + 9*32*8 + 8 = 11,880
    assert param_count(BorderCNN(1, (32, 32), 8)) == 11_880


def test_capacity_ordering():
    a1, a2, a3 = (param_count(UNet(1, c, 1)) for c in (A1, A2, A3))
    b1 = param_count(BorderCNN(1, B1[1], 1))
    b2 = param_count(UNet(1, B2[1], 1))
    assert a3 > a2 > a1 > b1
    assert b2 > b1


def test_cell_type_selects_its_channel():
    torch.manual_seed(1)
    cfg = CollaboratorConfig(n_cell_types=3)
    net = Collaborator(cfg).eval()
    x = torch.randn(3, 1, 21, 19)
    types = torch.tensor([2, 0, 1])
    out = net(x, types)
    fg_all = net.foreground(x)  # [3, 3, H, W]
    bd_all = net.border(x)
    for i, t in enumerate(types.tolist()):
        torch.testing.assert_close(out["fg_logits"][i], fg_all[i, t])
        torch.testing.assert_close(out["border_logits"][i], bd_all[i, t])
    with pytest.raises(CksDataError):
        net(x)
    with pytest.raises(CksConfigError):
        net(x, torch.tensor([0, 3, 1]))


def test_uses_first_in_channels_and_gets_gradients(capsys):
    torch.manual_seed(2)
    net = Collaborator(CollaboratorConfig(in_channels=1))
    x1 = torch.randn(1, 1, 16, 16)
    x3 = torch.cat([x1, torch.randn(1, 2, 16, 16)], 1)
    out3 = net(x3)
    torch.testing.assert_close(out3["fg_logits"], net(x1)["fg_logits"])
    (out3["fg_logits"].sum() + out3["border_logits"].sum()).backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(CksDataError):
        Collaborator(CollaboratorConfig(in_channels=2))(x1)
    assert capsys.readouterr().out == ""


def test_bad_border_kind():
    with pytest.raises(CksConfigError):
        Collaborator(CollaboratorConfig(border="mlp"))

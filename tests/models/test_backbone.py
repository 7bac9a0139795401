"""Backbone + FPN: strides, any input size, He init, channel handling."""
import dataclasses

import pytest
import torch

from cks.config import get_preset
from cks.models.backbone import Backbone, match_channels, pad_to_multiple


@pytest.mark.parametrize("hw", [(520, 704), (64, 96), (33, 47)])
def test_fpn_shapes_any_size(hw):
    cfg = get_preset("base", size="test")
    bb = Backbone(cfg.backbone)
    x = pad_to_multiple(torch.randn(1, 3, *hw))
    assert x.shape[-2] % 32 == 0 and x.shape[-1] % 32 == 0
    feats = bb(x)
    assert sorted(feats) == [4, 8, 16, 32]
    for s, f in feats.items():
        assert f.shape == (1, cfg.backbone.fpn_channels, x.shape[-2] // s, x.shape[-1] // s)


def test_padding_keeps_coordinates():
    x = torch.arange(520 * 704, dtype=torch.float32).reshape(1, 1, 520, 704)
    p = pad_to_multiple(x)
    assert p.shape[-2:] == (544, 704)
    assert torch.equal(p[..., :520, :], x) and float(p[..., 520:, :].abs().sum()) == 0


def test_match_channels():
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(match_channels(x, 3)[:, 2], x[:, 0])
    y = match_channels(torch.randn(2, 2, 8, 8), 3)
    assert float(y[:, 2].abs().sum()) == 0
    with pytest.raises(ValueError, match="channels"):
        match_channels(torch.randn(1, 4, 8, 8), 3)


def test_he_init_std():
    cfg = get_preset("base", size="test")
    bb = Backbone(cfg.backbone)
    w = bb.fpn.lateral[0].weight  # 1x1 conv, fan_out = out channels
    expected = (2.0 / w.shape[0]) ** 0.5
    assert abs(float(w.detach().std()) - expected) / expected < 0.25


def test_named_sizes_exist():
    for size in ("convnext_small", "convnext_atto", "convnext_femto", "convnext_pico", "convnext_nano", "test"):
        cfg = get_preset("base", size=size)
        assert cfg.backbone.name == size


@pytest.mark.parametrize("size", ["convnext_femto", "convnext_pico", "convnext_nano"])
def test_larger_cpu_sizes_differ_from_atto_only_in_the_encoder(size):
    """--size convnext_pico trains what --size convnext_atto --set backbone.name=convnext_pico trains."""
    atto = get_preset("base", size="convnext_atto")
    assert get_preset("base", size=size) == dataclasses.replace(
        atto, backbone=dataclasses.replace(atto.backbone, name=size))


@pytest.mark.parametrize("name,stage_channels", [("convnext_femto", [48, 96, 192, 384]),
                                                 ("convnext_pico", [64, 128, 256, 512]),
                                                 ("convnext_nano", [80, 160, 320, 640])])
def test_small_convnexts_between_atto_and_tiny(name, stage_channels):
    """The backbones that may replace atto on a CPU budget build with timm's stage widths and feed the same FPN."""
    bb = Backbone(dataclasses.replace(get_preset("base", size="convnext_atto").backbone, name=name))
    assert list(bb.encoder.feature_info.channels()) == stage_channels  # timm's published widths for each
    feats = bb(torch.randn(1, 3, 64, 64))
    assert {s: tuple(f.shape) for s, f in feats.items()} == {s: (1, 128, 64 // s, 64 // s) for s in (4, 8, 16, 32)}


def test_unknown_backbone_is_refused_with_the_names():
    with pytest.raises(ValueError, match="convnext_pico"):
        Backbone(dataclasses.replace(get_preset("base", size="test").backbone, name="convnext_huge"))

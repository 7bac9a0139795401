"""ConvNeXt encoder + feature pyramid network (Sec. III-A, Fig. 1).

The paper uses a ConvNeXt "small" backbone with patch size 4 and an FPN that does *not* add
extra coarse levels (no P6/P7). We take the ConvNeXt from timm (``features_only``, strides
4/8/16/32) and build the FPN ourselves:

* lateral: 1x1 conv to ``fpn_channels`` + ReLU on each stage (author's code),
* top-down: nearest resize of the coarser level *to the finer level's size* (so any input
  size works), add, 3x3 conv + ReLU. The coarsest level is just its lateral.

Inputs are padded (bottom/right, zeros) to a multiple of 32 by :func:`pad_to_multiple` before
the backbone, so point coordinates stay exact: pixel (i, j) of the input is pixel (i, j) of the
padded image, and feature cell (u, v) at stride s covers pixels [s*u, s*u+s) x [s*v, s*v+s).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import BackboneConfig

#: Named backbones: timm model name + keyword overrides. "test" is a tiny net for unit tests.
BACKBONES = {
    "convnext_small": ("convnext_small", {}),
    "convnext_tiny": ("convnext_tiny", {}),
    "convnext_atto": ("convnext_atto", {}),
    # timm's other small ConvNeXts (no paper counterpart): between atto (3.4 M encoder parameters) and tiny
    "convnext_femto": ("convnext_femto", {}),
    "convnext_pico": ("convnext_pico", {}),
    "convnext_nano": ("convnext_nano", {}),
    "test": ("convnext_atto", {"depths": (1, 1, 1, 1), "dims": (16, 32, 64, 128)}),
}


def pad_to_multiple(image: Tensor, multiple: int = 32) -> Tensor:
    """Zero-pad ``[B, C, H, W]`` at the bottom/right so H and W are multiples of ``multiple``."""
    h, w = image.shape[-2:]
    ph = (multiple - h % multiple) % multiple
    pw = (multiple - w % multiple) % multiple
    if ph == 0 and pw == 0:
        return image
    return F.pad(image, (0, pw, 0, ph))


def match_channels(image: Tensor, channels: int) -> Tensor:
    """Repeat a 1-channel image / zero-pad a 2-channel one to ``channels`` (author's convention)."""
    c = image.shape[1]
    if c == channels:
        return image
    if c == 1:
        return image.expand(-1, channels, -1, -1)
    if c < channels:
        return F.pad(image, (0, 0, 0, 0, 0, channels - c))
    raise ValueError(f"image has {c} channels but the model takes at most {channels}; "
                     f"select channels first or build the model with backbone.in_channels={c}")


def conv_norm_stack(in_channels: int, channels: int, n_layers: int) -> list[nn.Module]:
    """``n_layers`` x [3x3 conv (no bias) -> GroupNorm(C groups, i.e. per-channel) -> ReLU], as a layer list
    (the trunks of the detection and segmentation heads; author's design)."""
    layers: list[nn.Module] = []
    c = in_channels
    for _ in range(n_layers):
        layers += [nn.Conv2d(c, channels, 3, padding=1, bias=False), nn.GroupNorm(channels, channels),
                   nn.ReLU(inplace=True)]
        c = channels
    return layers


def he_init_(module: nn.Module) -> None:
    """He (Kaiming-normal, fan-out) initialisation of every conv / linear weight (paper's CKS-1)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class FPN(nn.Module):
    """Feature pyramid without extra levels.

    Args:
        in_channels: channels of the backbone stages (fine to coarse). out_channels: C.
    Forward: list of ``[B, C_k, H/s_k, W/s_k]`` -> list of ``[B, C, H/s_k, W/s_k]`` (same order).
    """

    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1)
                                    for _ in in_channels[:-1])

    def forward(self, feats: list[Tensor]) -> list[Tensor]:
        lat = [F.relu(l(f)) for l, f in zip(self.lateral, feats)]
        out = [lat[-1]]
        for k in range(len(lat) - 2, -1, -1):
            up = F.interpolate(out[0], size=lat[k].shape[-2:], mode="nearest")
            out.insert(0, F.relu(self.smooth[k](lat[k] + up)))
        return out


class Backbone(nn.Module):
    """ConvNeXt (timm) + FPN. Forward: image ``[B, C, H, W]`` (H, W multiples of 32) ->
    dict ``{stride: [B, fpn_channels, H/stride, W/stride]}`` for strides 4, 8, 16, 32."""

    def __init__(self, cfg: BackboneConfig):
        super().__init__()
        import timm  # imported lazily: keeps `import cks` light

        if cfg.name not in BACKBONES:
            raise ValueError(f"unknown backbone {cfg.name!r}; choose one of {sorted(BACKBONES)}")
        timm_name, kw = BACKBONES[cfg.name]
        self.encoder = timm.create_model(timm_name, pretrained=cfg.pretrained, features_only=True,
                                         in_chans=cfg.in_channels, drop_path_rate=cfg.drop_path_rate, **kw)
        self.strides = tuple(self.encoder.feature_info.reduction())
        self.fpn = FPN(list(self.encoder.feature_info.channels()), cfg.fpn_channels)
        self.in_channels = cfg.in_channels
        if cfg.init == "he" and not cfg.pretrained:
            he_init_(self.encoder)
        elif cfg.init not in ("he", "timm"):
            raise ValueError(f"backbone.init must be 'he' or 'timm', got {cfg.init!r}")
        he_init_(self.fpn)

    def forward_encoder(self, image: Tensor) -> list[Tensor]:
        return self.encoder(image)

    def forward(self, image: Tensor) -> dict[int, Tensor]:
        feats = self.fpn(self.forward_encoder(image))
        return dict(zip(self.strides, feats))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def stride_size(size: int, stride: int) -> int:
    """Feature-map size at ``stride`` for an input of ``size`` padded to a multiple of 32."""
    return math.ceil(size / 32) * 32 // stride

"""Collaborator model (Sec. III-B, Fig. 6): a light pixel-level net that predicts the image-level
foreground ``M_c`` and the cell-border map ``B_c`` from the raw image.

The collaborator exists only during CKS training and is discarded afterwards. Its job is not to be
good at segmentation but to offer a different view of the problem (paper, Sec. III-B), so it is
deliberately small:

* foreground net: a U-Net with 16/32/64 channels and two down-scalings (preset a1); the ablation
  (Table VII) also uses a2 = 16..128 and a3 = 16..256 (``CollaboratorConfig.foreground``);
* border net: b1 = a plain CNN of 32-channel 3x3 layers (``border="cnn"``), b2 = a U-Net
  (``border="unet"``, ``border_channels``).

Building blocks follow the author's code (``lacss/modules/unet.py``, ``auxiliary.py``):
3x3 convolutions without bias, each followed by a GroupNorm with one channel per group and no scale
(a learned shift only), then ReLU; the output head is a 3x3 convolution with bias. The author's
GroupNorm is applied to unbatched maps and so normalises per image *row* (anchor notes Sec. 2);
here it normalises per image and channel, as a PyTorch port naturally would.

Differences from the author's code, all configurable or documented:

* per-cell-type output channel (diff #10): with ``n_cell_types > 1`` both heads have one channel per
  type and the channel of each image's ``cell_type`` is used; the paper's collaborator is
  unconditioned (``n_cell_types = 1``, the default);
* the author's [P] collaborator flips its input randomly during training; this one does not (the
  data pipeline already flips);
* the author's b1 is ``conv_spec=(32, 32)``: two hidden layers plus the head, "three layers" in the
  paper's words. ``border_channels=(32, 32)`` reproduces it exactly (11,880 parameters with 8
  types); the default ``(32, 32, 32)`` reads the paper as three hidden 32-channel layers.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import CollaboratorConfig
from ..errors import CksConfigError, CksDataError


class ShiftGroupNorm(nn.Module):
    """GroupNorm with one channel per group (per-channel instance statistics), no scale, a learned shift.

    Matches the author's ``nn.GroupNorm(num_groups=ch, use_scale=False)``. Input/output ``[B, C, H, W]``.
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-2] * x.shape[-1] > 1:  # torch's fused kernel, much faster on full-resolution maps (CPU)
            return F.group_norm(x, self.channels, None, self.bias, self.eps)
        # written out for 1-pixel maps (tiny inputs at deep levels), which F.group_norm refuses in training
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
        return (x - mean) * torch.rsqrt(var + self.eps) + self.bias[None, :, None, None]


def conv_block(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias, optional stride) -> :class:`ShiftGroupNorm` -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
        ShiftGroupNorm(out_ch),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net for pixel-level predictions of any input size.

    Encoder level k: conv block (stride 2 for k > 0) -> conv block, with ``channels[k]`` channels;
    so ``len(channels) - 1`` down-scalings (a1 = (16, 32, 64): two). Decoder: bilinear resize to the
    skip's size (so odd sizes work, no padding to multiples of 2^k) -> concatenate with the skip ->
    two conv blocks with the skip's channel count. Head: 3x3 conv (with bias) to ``out_ch``.

    Args:
        in_ch: input channels. channels: encoder widths, one per scale. out_ch: output channels.
    Shapes:
        ``[B, in_ch, H, W] -> [B, out_ch, H, W]`` (logits).
    """

    def __init__(self, in_ch: int, channels: Sequence[int] = (16, 32, 64), out_ch: int = 1):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels:
            raise CksConfigError("UNet needs at least one channel width, e.g. collaborator.foreground=16,32,64")
        self.channels = channels
        enc = []
        prev = in_ch
        for k, c in enumerate(channels):
            enc.append(nn.Sequential(conv_block(prev, c, stride=2 if k > 0 else 1), conv_block(c, c)))
            prev = c
        self.encoder = nn.ModuleList(enc)
        # decoder[j] merges the level-(k+1) output into the level-k skip, k = n-2 .. 0
        dec = []
        for k in reversed(range(len(channels) - 1)):
            dec.append(nn.Sequential(conv_block(channels[k + 1] + channels[k], channels[k]),
                                     conv_block(channels[k], channels[k])))
        self.decoder = nn.ModuleList(dec)
        self.head = nn.Conv2d(channels[0], out_ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.decoder, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class BorderCNN(nn.Module):
    """Plain CNN for the border map (paper's b1: "a three-layer CNN with 32 channels each").

    ``len(channels)`` conv blocks at full resolution, then a 3x3 conv head (with bias) to ``out_ch``.

    Shapes:
        ``[B, in_ch, H, W] -> [B, out_ch, H, W]`` (logits).
    """

    def __init__(self, in_ch: int, channels: Sequence[int] = (32, 32, 32), out_ch: int = 1):
        super().__init__()
        layers = []
        prev = in_ch
        for c in channels:
            layers.append(conv_block(prev, int(c)))
            prev = int(c)
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(prev, out_ch, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def param_count(module: nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class Collaborator(nn.Module):
    """Foreground net + border net with no shared weights (Sec. III-B).

    Args:
        cfg: :class:`~cks.config.CollaboratorConfig` (``foreground``, ``border``, ``border_channels``,
            ``in_channels``, ``n_cell_types``).

    ``forward(image [B, C, H, W], cell_type [B] long or None)`` returns a dict with

    * ``fg_logits [B, H, W]``: logits of ``M_c`` (``M_c = sigmoid(fg_logits)``),
    * ``border_logits [B, H, W]``: logits of ``B_c``.

    The collaborator sees the raw (normalised) image, not the principal's 3-channel copy. If the image
    has more than ``cfg.in_channels`` channels, the first ``in_channels`` are used (e.g. a greyscale
    image replicated to RGB reads as its first copy); fewer channels raise :class:`CksDataError`.
    ``cell_type`` is needed only when ``cfg.n_cell_types > 1``.
    """

    def __init__(self, cfg: CollaboratorConfig = CollaboratorConfig()):
        super().__init__()
        self.cfg = cfg
        n = int(cfg.n_cell_types)
        if n < 1:
            raise CksConfigError(f"collaborator.n_cell_types must be >= 1, got {n}")
        self.foreground = UNet(cfg.in_channels, cfg.foreground, n)
        if cfg.border == "cnn":
            self.border = BorderCNN(cfg.in_channels, cfg.border_channels, n)
        elif cfg.border == "unet":
            self.border = UNet(cfg.in_channels, cfg.border_channels, n)
        else:
            raise CksConfigError(f"collaborator.border must be 'cnn' (b1) or 'unet' (b2), got {cfg.border!r}")

    def _select(self, logits: Tensor, cell_type: Tensor | None) -> Tensor:
        """``[B, n, H, W] -> [B, H, W]``: the channel of each image's cell type (channel 0 if n == 1)."""
        n = logits.shape[1]
        if n == 1:
            return logits[:, 0]
        if cell_type is None:
            raise CksDataError(f"the collaborator has {n} cell-type heads (collaborator.n_cell_types); "
                               "pass cell_type [B]")
        cell_type = cell_type.to(device=logits.device, dtype=torch.long).reshape(-1)
        if cell_type.numel() != logits.shape[0]:
            raise CksDataError(f"cell_type has {cell_type.numel()} entries for a batch of {logits.shape[0]}")
        if bool(((cell_type < 0) | (cell_type >= n)).any()):
            raise CksConfigError(f"cell_type {cell_type.tolist()} out of range for collaborator.n_cell_types={n}")
        idx = cell_type[:, None, None, None].expand(-1, 1, *logits.shape[-2:])
        return logits.gather(1, idx)[:, 0]

    def forward(self, image: Tensor, cell_type: Tensor | None = None) -> dict[str, Tensor]:
        if image.dim() != 4:
            raise CksDataError(f"collaborator expects an image batch [B, C, H, W], got shape {tuple(image.shape)}")
        c = self.cfg.in_channels
        if image.shape[1] < c:
            raise CksDataError(f"collaborator.in_channels={c} but the image has {image.shape[1]} channel(s)")
        x = image[:, :c]
        return {
            "fg_logits": self._select(self.foreground(x), cell_type),
            "border_logits": self._select(self.border(x), cell_type),
        }

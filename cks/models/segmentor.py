"""Windowed segmentation head with a location encoding (Sec. III-A, Fig. 3).

For every cell location r_i = (y_i, x_i) the head predicts logits ``l(m_i)`` in a fixed
S x S pixel window (S = 96; ``m_i`` is 0 outside it), all cells in parallel:

1. trunk on the stride-4 FPN map: ``n_layers`` x [3x3 conv -> GroupNorm -> ReLU] then a 3x3
   conv to ``patch_channels`` (P) channels;
2. crop a (S/4) x (S/4) feature window around the cell: its top-left feature cell is
   ``floor((r + 0.5)/4) - S/8``, so the window's pixel origin is 4x that and the cell sits
   within 4 px of the window centre. Features off the map read as zero;
3. location encoding ``E_i`` [c, S/4, S/4]:
   * ``"learned"`` (paper): an MLP on the FPN feature vector at the cell (bilinearly sampled at
     the exact location; the author averages the 2x2 neighbourhood), reshaped to
     ``encoding_shape`` (8 x 8 x 4) and bilinearly resized to S/4 x S/4;
   * ``"cosine"`` (paper's constant encoding, Table II): fixed sinusoids of the window coordinates;
   * ``"linear"`` (author's constant encoding): the (y/w - 0.5, x/w - 0.5) grid;
4. concatenate [crop, E_i] and apply a 1x1 conv + ReLU (the paper's "concatenated ... Conv";
   the author adds a projected encoding, which is the same function class);
5. 2x2 transposed conv (stride 2) to one channel, bilinear resize to S x S -> logits.

Shapes: features ``[B, C, H/4, W/4]``; cells ``points [K, 2]``, ``batch [K]`` ->
``logits [K, S, S]``, ``origin [K, 2]`` (absolute pixel of the window's top-left pixel).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import SegmentorConfig
from .backbone import conv_norm_stack
from ..windows import window_index

FEATURE_STRIDE = 4


def window_origin(points: Tensor, window: int) -> tuple[Tensor, Tensor]:
    """Feature-grid and pixel top-left corners of each cell's window.

    Returns ``(feat_origin [K, 2], pixel_origin [K, 2])`` (long); ``pixel = 4 * feat``.
    """
    own = torch.floor((points + 0.5) / FEATURE_STRIDE).long()
    feat = own - window // (2 * FEATURE_STRIDE)
    return feat, feat * FEATURE_STRIDE


def cosine_encoding(size: int, channels: int, device=None) -> Tensor:
    """Constant Transformer-style encoding of window coordinates, ``[channels, size, size]``.

    Half of the channels encode y, half x, as sin/cos pairs at frequencies pi * 2^k over the
    normalised coordinate in [-1, 1].
    """
    if channels % 4:
        raise ValueError(f"cosine encoding needs a multiple of 4 channels, got {channels}")
    t = torch.linspace(-1, 1, size, device=device)
    nf = channels // 4
    freqs = math.pi * 2.0 ** torch.arange(nf, device=device, dtype=torch.float32)
    ang = t[None, :] * freqs[:, None]  # [nf, size]
    enc_1d = torch.cat([torch.sin(ang), torch.cos(ang)])  # [2nf, size]
    ey = enc_1d[:, :, None].expand(-1, size, size)
    ex = enc_1d[:, None, :].expand(-1, size, size)
    return torch.cat([ey, ex])


def linear_encoding(size: int, device=None) -> Tensor:
    """The author's constant encoding: ``(y/size - 0.5, x/size - 0.5)``, ``[2, size, size]``."""
    t = torch.arange(size, device=device, dtype=torch.float32) / size - 0.5
    return torch.stack([t[:, None].expand(size, size), t[None, :].expand(size, size)])


class SegmentationHead(nn.Module):
    """See the module docstring. ``forward(feat4 [B,C,h,w], points [K,2], batch [K])`` ->
    ``(logits [K, S, S], origin [K, 2])``."""

    def __init__(self, in_channels: int, cfg: SegmentorConfig):
        super().__init__()
        if cfg.window % 8:
            raise ValueError(f"segmentor.window must be a multiple of 8, got {cfg.window}")
        self.window = cfg.window
        self.fw = cfg.window // FEATURE_STRIDE
        layers = conv_norm_stack(in_channels, cfg.channels, cfg.n_layers)
        c = cfg.channels if cfg.n_layers else in_channels
        layers.append(nn.Conv2d(c, cfg.patch_channels, 3, padding=1, bias=False))
        self.trunk = nn.Sequential(*layers)
        self.encoding = cfg.encoding
        eh, ew, ec = cfg.encoding_shape
        self.enc_shape = (ec, eh, ew)
        if cfg.encoding == "learned":
            hid = cfg.encoding_hidden
            self.mlp = nn.Sequential(nn.Linear(in_channels, hid), nn.ReLU(inplace=True),
                                     nn.Linear(hid, hid), nn.ReLU(inplace=True), nn.Linear(hid, eh * ew * ec))
            n_enc = ec
        elif cfg.encoding == "cosine":
            self.register_buffer("const_enc", cosine_encoding(self.fw, ec), persistent=False)
            n_enc = ec
        elif cfg.encoding == "linear":
            self.register_buffer("const_enc", linear_encoding(self.fw), persistent=False)
            n_enc = 2
        else:
            raise ValueError(f"segmentor.encoding must be learned|cosine|linear, got {cfg.encoding!r}")
        self.combine = nn.Conv2d(cfg.patch_channels + n_enc, cfg.patch_channels, 1)
        self.up = nn.ConvTranspose2d(cfg.patch_channels, 1, 2, stride=2)

    def crop(self, fmap: Tensor, batch: Tensor, feat_origin: Tensor) -> Tensor:
        """``[B, P, h, w]`` -> ``[K, P, fw, fw]`` windows (zeros off the map)."""
        b, p, h, w = fmap.shape
        index, valid = window_index(batch, feat_origin, self.fw, (h, w))
        flat = fmap.permute(0, 2, 3, 1).reshape(b * h * w, p)
        out = flat[index] * valid[..., None]  # [K, fw, fw, P]
        return out.permute(0, 3, 1, 2)

    def location_encoding(self, feat4: Tensor, points: Tensor, batch: Tensor) -> Tensor:
        """``[K, c, fw, fw]`` encoding for each cell."""
        k = points.shape[0]
        if self.encoding != "learned":
            return self.const_enc[None].expand(k, -1, -1, -1)
        b, c, h, w = feat4.shape
        # bilinear sample of the stride-4 FPN map at the exact location (feature cell u is
        # centred at pixel 4u + 1.5)
        g = (points - (FEATURE_STRIDE - 1) / 2) / FEATURE_STRIDE  # feature coords
        y0 = torch.floor(g[:, 0]).long()
        x0 = torch.floor(g[:, 1]).long()
        wy = (g[:, 0] - y0)[:, None]
        wx = (g[:, 1] - x0)[:, None]
        flat = feat4.permute(0, 2, 3, 1).reshape(b * h * w, c)

        def at(yy, xx):
            ok = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[:, None]
            return flat[batch * h * w + yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)] * ok

        vec = (at(y0, x0) * (1 - wy) * (1 - wx) + at(y0, x0 + 1) * (1 - wy) * wx
               + at(y0 + 1, x0) * wy * (1 - wx) + at(y0 + 1, x0 + 1) * wy * wx)
        enc = self.mlp(vec).reshape(k, *self.enc_shape)
        return F.interpolate(enc, size=(self.fw, self.fw), mode="bilinear", align_corners=False)

    def trunk_features(self, feat4: Tensor) -> Tensor:
        return self.trunk(feat4)

    def forward(self, feat4: Tensor, points: Tensor, batch: Tensor, trunk: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
        feat_origin, origin = window_origin(points, self.window)
        if trunk is None:
            trunk = self.trunk(feat4)
        if points.shape[0] == 0:
            return trunk.new_zeros(0, self.window, self.window), origin
        crop = self.crop(trunk, batch, feat_origin)
        enc = self.location_encoding(feat4, points, batch)
        x = F.relu(self.combine(torch.cat([crop, enc.to(crop.dtype)], 1)))
        x = self.up(x)  # [K, 1, fw*2, fw*2]
        x = F.interpolate(x, size=(self.window, self.window), mode="bilinear", align_corners=False)
        return x[:, 0], origin

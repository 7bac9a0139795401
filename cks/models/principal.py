"""The principal model X_p: x -> {r_i, m_i} (Eq. 1, Fig. 1).

ConvNeXt + FPN (:mod:`cks.models.backbone`), a multi-scale point detection head
(:mod:`cks.models.detector`) and a windowed segmentation head (:mod:`cks.models.segmentor`).

* Training (``points`` given): the segmentation head runs at the ground-truth locations (paper);
  with ``detector.train_match_radius > 0`` each GT point is replaced by its matched prediction
  within that radius (author's code, diff #5).
* Inference (no ``points``): detections are decoded (NMS, up to ``max_output`` per image) and
  segmented; the head runs over cells in chunks so memory stays bounded for thousands of cells.

Images are ``[B, C, H, W]`` of any size: they are zero-padded at the bottom/right to a multiple
of 32 internally, which leaves every point coordinate unchanged.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..config import Config
from .backbone import Backbone, match_channels, pad_to_multiple
from .detector import DetectionHead, decode, match_predictions
from .segmentor import SegmentationHead


class Principal(nn.Module):
    """Forward: ``image [B, C, H, W]``, optional ``points [B, N, 2]`` + ``valid [B, N]`` -> dict

    * ``det_logits`` ``{s: [B,1,h_s,w_s]}``, ``det_offsets`` ``{s: [B,2,h_s,w_s]}`` (padded grid),
    * ``seg_logits [K, S, S]``, ``seg_origin [K, 2]``, ``seg_batch [K]``, ``seg_points [K, 2]``,
    * training: ``seg_index [K]`` = flat index ``b * N + n`` of the GT point each window is for;
      inference: ``seg_scores [K]`` detection scores,
    * ``image_hw`` (H, W) of the unpadded input.

    ``scale``: the resize factor of its training images (their median, for size-normalised training);
    :func:`cks.predict.predict` starts from it. Saved in the checkpoint beside the weights.
    """

    def __init__(self, cfg: Config, scale: float = 1.0):
        super().__init__()
        self.cfg = cfg
        self.scale = float(scale)
        self.backbone = Backbone(cfg.backbone)
        c = cfg.backbone.fpn_channels
        bad = set(cfg.detector.strides) - set(self.backbone.strides)
        if bad:
            raise ValueError(f"detector.strides {sorted(bad)} not available; the backbone has {self.backbone.strides}")
        self.detector = DetectionHead(c, cfg.detector)
        self.segmentor = SegmentationHead(c, cfg.segmentor)
        from .backbone import he_init_
        he_init_(self.detector.trunk)
        he_init_(self.segmentor)
        self.inference_chunk = 1024
        self.size_model = None  # the learned cell-size regressor (cks.size_model), set after training / by load_model

    def features(self, image: Tensor) -> dict[int, Tensor]:
        x = match_channels(image, self.cfg.backbone.in_channels)
        return self.backbone(pad_to_multiple(x, 32))

    @torch.no_grad()
    def detections(self, det_logits, det_offsets, image_hw) -> list[tuple[Tensor, Tensor]]:
        d = self.cfg.detector
        return decode(det_logits, det_offsets, image_hw, d.min_score, d.nms_radius, d.max_output)

    def forward(self, image: Tensor, points: Tensor | None = None, valid: Tensor | None = None) -> dict:
        if image.ndim != 4:
            raise ValueError(f"image must be [B, C, H, W], got shape {tuple(image.shape)}")
        hw = tuple(image.shape[-2:])
        feats = self.features(image)
        det_logits, det_offsets = self.detector(feats)
        out = {"det_logits": det_logits, "det_offsets": det_offsets, "image_hw": hw}
        feat4 = feats[4]
        trunk = self.segmentor.trunk_features(feat4)
        if points is not None:
            b, n = points.shape[:2]
            if valid is None:
                valid = torch.ones(b, n, dtype=torch.bool, device=points.device)
            locs = points.float()
            if self.cfg.detector.train_match_radius > 0:
                dets = self.detections(det_logits, det_offsets, hw)
                locs = torch.stack([match_predictions(points[i], dets[i][0], dets[i][1],
                                                      self.cfg.detector.train_match_radius)
                                    for i in range(b)])  # loop over images
            bi, ni = torch.nonzero(valid, as_tuple=True)
            pts = locs[bi, ni].detach()
            logits, origin = self.segmentor(feat4, pts, bi, trunk=trunk)
            out.update(seg_logits=logits, seg_origin=origin, seg_batch=bi, seg_points=pts, seg_index=bi * n + ni)
            return out
        dets = self.detections(det_logits, det_offsets, hw)
        pts = torch.cat([d[0] for d in dets]) if dets else feat4.new_zeros(0, 2)
        scores = torch.cat([d[1] for d in dets]) if dets else feat4.new_zeros(0)
        bi = torch.cat([torch.full((len(d[0]),), i, dtype=torch.long, device=feat4.device)
                        for i, d in enumerate(dets)])
        logits, origin = self._windows(feat4, pts, bi, trunk)
        out.update(seg_logits=logits, seg_origin=origin, seg_batch=bi, seg_points=pts, seg_scores=scores)
        return out

    def _windows(self, feat4: Tensor, pts: Tensor, bi: Tensor, trunk: Tensor) -> tuple[Tensor, Tensor]:
        """The segmentation head at ``pts [K, 2]`` of images ``bi [K]``; without gradients in chunks of
        ``inference_chunk`` cells (bounded memory: a constant number of chunks per 1024 cells)."""
        if torch.is_grad_enabled() or pts.shape[0] <= self.inference_chunk:
            return self.segmentor(feat4, pts, bi, trunk=trunk)
        parts = [self.segmentor(feat4, pts[i:i + self.inference_chunk], bi[i:i + self.inference_chunk], trunk=trunk)
                 for i in range(0, pts.shape[0], self.inference_chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def windows_at(self, image: Tensor, points: Tensor) -> tuple[Tensor, Tensor]:
        """Window logits ``[K, S, S]`` and their top-left corners ``[K, 2]`` at exactly ``points [K, 2]`` (y, x) of
        one ``image [1, C, H, W]`` (no detection, no matching; :mod:`cks.tta` asks for flipped images' windows)."""
        feat4 = self.features(image)[4]
        bi = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
        return self._windows(feat4, points, bi, self.segmentor.trunk_features(feat4))


def build_principal(cfg: Config, scale: float = 1.0) -> Principal:
    return Principal(cfg, scale)

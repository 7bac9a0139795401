"""Detection loss L_det (Eq. 3): focal BCE in closed form, zero loss at the targets, offset normalisation."""
import pytest
import torch

from cks.grid import detection_targets
from cks.losses.detection import detection_loss, focal_bce


def test_focal_bce_closed_form():
    lg = torch.tensor([0.0, 2.0])
    t = torch.tensor([1.0, 0.0])
    p = torch.sigmoid(lg)
    expected = torch.stack([(1 - p[0]) ** 2 * -torch.log(p[0]), p[1] ** 2 * -torch.log(1 - p[1])])
    assert torch.allclose(focal_bce(lg, t), expected)


def test_detection_loss_zero_offset_error_and_positive():
    pts = torch.tensor([[[20.0, 20.0]]])
    valid = torch.ones(1, 1, dtype=torch.bool)
    tgt, off = detection_targets(pts, valid, 4, (16, 16), 8.0)
    out = detection_loss({4: tgt * 30 - 15}, {4: off}, pts, valid)
    assert float(out["L_off"]) == 0.0 and float(out["L_fce"]) < 1e-6
    out2 = detection_loss({4: torch.zeros(1, 1, 16, 16)}, {4: off + 0.5}, pts, valid)
    assert float(out2["L_off"]) == pytest.approx(0.5, abs=1e-6)  # 2 coords x 0.25, mean over positives

"""The detection grid (cks.grid): targets of Eq. 3 with label smoothing, invalid points ignored."""
import math

import torch

from cks.grid import cell_centers, detection_targets


def test_cell_centres():
    assert cell_centers(3, 4).tolist() == [1.5, 5.5, 9.5]  # pixels 0-3 -> centre 1.5


def test_label_smoothing_radius():
    pts = torch.tensor([[[41.5, 41.5]]])  # exactly a stride-4 cell centre (4*10 + 1.5)
    tgt, _ = detection_targets(pts, torch.ones(1, 1, dtype=torch.bool), 4, (32, 32), radius=8.0)
    n_expected = sum(1 for u in range(-3, 4) for v in range(-3, 4) if math.hypot(4 * u, 4 * v) < 8.0)
    assert int(tgt.sum()) == n_expected
    tgt32, _ = detection_targets(pts, torch.ones(1, 1, dtype=torch.bool), 32, (4, 4), radius=8.0)
    assert int(tgt32.sum()) == 1  # radius below the cell size: the own cell only


def test_ignores_invalid_points():
    pts = torch.tensor([[[10.0, 10.0], [50.0, 50.0]]])
    valid = torch.tensor([[True, False]])
    tgt, _ = detection_targets(pts, valid, 4, (16, 16), radius=8.0)
    tgt1, _ = detection_targets(pts[:, :1], valid[:, :1], 4, (16, 16), radius=8.0)
    assert torch.equal(tgt, tgt1)

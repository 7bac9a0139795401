"""Shared small window layouts for the CKS loss tests."""
import pytest
import torch


@pytest.fixture
def windows():
    """Three overlapping S=8 windows in image 0 of a 2 x 12 x 14 batch (one hangs off the bottom-right
    corner) and one window in image 1 that hangs off the top-left corner."""
    torch.manual_seed(0)
    s = 8
    origin = torch.tensor([[0, 0], [3, 4], [8, 10], [-3, -2]])
    batch = torch.tensor([0, 0, 0, 1])
    points = origin.float() + torch.tensor([[3.5, 4.0], [4.0, 3.2], [2.0, 2.6], [4.1, 3.0]])
    logits = torch.randn(4, s, s) * 2
    return dict(logits=logits, batch=batch, origin=origin, points=points, shape=(2, 12, 14), s=s)

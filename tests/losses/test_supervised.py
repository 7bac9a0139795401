"""Supervised window targets and BCE."""
import torch
import torch.nn.functional as F

from cks.losses.supervised import supervised_loss, window_targets


def test_window_targets_hand_made_label():
    label = torch.tensor([[
        [0, 1, 1, 0, 0],
        [0, 1, 1, 0, 2],
        [0, 0, 0, 2, 2],
        [3, 0, 0, 2, 2],
    ]])
    batch = torch.tensor([0, 0, 0])
    origin = torch.tensor([[-1, 0], [1, 2], [2, -1]])
    ids = torch.tensor([1, 2, 3])
    t = window_targets(label, batch, origin, ids, 3)
    assert t.dtype == torch.float32 and t.shape == (3, 3, 3)
    # window 0 covers rows -1..1 (row -1 off-image), cols 0..2
    assert t[0].tolist() == [[0, 0, 0], [0, 1, 1], [0, 1, 1]]
    # window 1 covers rows 1..3, cols 2..4
    assert t[1].tolist() == [[0, 0, 1], [0, 1, 1], [0, 1, 1]]
    # window 2 covers rows 2..4 (row 4 off), cols -1..1 (col -1 off)
    assert t[2].tolist() == [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    # a background id (0) gives an empty target even where the label is 0
    assert not window_targets(label, batch[:1], origin[:1], torch.tensor([0]), 3).any()


def test_supervised_loss_is_mean_bce():
    logits = torch.tensor([[[2.0, -1.0], [0.0, 3.0]]])
    targets = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    p = torch.sigmoid(logits)
    expect = -(torch.log(p[0, 0, 0]) + torch.log(1 - p[0, 0, 1])
               + torch.log(p[0, 1, 0]) + torch.log(1 - p[0, 1, 1])) / 4
    torch.testing.assert_close(supervised_loss(logits, targets), expect)
    assert supervised_loss(torch.zeros(0, 2, 2), torch.zeros(0, 2, 2)).item() == 0.0
    torch.testing.assert_close(supervised_loss(logits, targets), F.binary_cross_entropy(p, targets))

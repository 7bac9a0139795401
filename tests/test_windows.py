"""Window ops: gather/scatter with windows hanging off every edge, paste with overlaps."""
import torch

from cks.windows import gather_windows, paste_labels, scatter_windows


def brute_scatter(values, batch, origin, shape, reduce):
    b, h, w = shape
    out = torch.zeros(shape) if reduce == "sum" else torch.full(shape, float("-inf"))
    s = values.shape[-1]
    for k in range(values.shape[0]):
        for a in range(s):
            for c in range(s):
                y, x = int(origin[k, 0]) + a, int(origin[k, 1]) + c
                if 0 <= y < h and 0 <= x < w:
                    v = values[k, a, c]
                    out[batch[k], y, x] = out[batch[k], y, x] + v if reduce == "sum" else max(out[batch[k], y, x], v)
    if reduce == "amax":
        out[torch.isinf(out)] = 0
    return out


def edge_windows():
    # windows hanging off the top, bottom, left, right and all corners of a 10x12 image, size 6
    origin = torch.tensor([[-3, 4], [7, 4], [3, -4], [3, 9], [-2, -2], [8, 10], [2, 3]])
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 0])
    values = torch.randn(len(origin), 6, 6)
    return values, batch, origin, (2, 10, 12)


def test_scatter_matches_brute_force_off_edges():
    v, b, o, shape = edge_windows()
    for reduce in ("sum", "amax"):
        assert torch.allclose(scatter_windows(v, b, o, shape, reduce), brute_scatter(v, b, o, shape, reduce), atol=1e-6)


def test_gather_reads_zero_off_image():
    v, b, o, shape = edge_windows()
    maps = torch.randn(shape)
    g = gather_windows(maps, b, o, 6)
    for k in range(len(o)):
        for a in range(6):
            for c in range(6):
                y, x = int(o[k, 0]) + a, int(o[k, 1]) + c
                exp = maps[b[k], y, x] if (0 <= y < 10 and 0 <= x < 12) else 0.0
                assert float(g[k, a, c]) == float(exp)


def test_paste_highest_score_wins_and_no_wrap():
    logits = torch.full((3, 6, 6), 5.0)
    origin = torch.tensor([[0, 0], [3, 3], [-3, -3]])  # 0 and 1 overlap; 2 hangs off the corner
    scores = torch.tensor([0.6, 0.9, 0.7])
    lab, _, label_of = paste_labels(logits, scores, torch.zeros(3, dtype=torch.long), origin, (1, 10, 10))
    lab = lab[0]
    assert label_of.tolist() == [3, 1, 2]  # numbered by descending score
    assert int(lab[4, 4]) == 1  # overlap -> higher score (window 1)
    assert int(lab[0, 0]) == 2 and int(lab[1, 1]) == 2 and int(lab[3, 3]) == 1
    assert int(lab[9, 9]) == 0  # nothing wrapped around to the far corner
    assert int((lab == 2).sum()) == 9  # 3x3 visible part of the off-corner window
    # score threshold drops windows
    lab2, _, lo2 = paste_labels(logits, scores, torch.zeros(3, dtype=torch.long), origin, (1, 10, 10), score_threshold=0.65)
    assert lo2.tolist() == [0, 1, 2]


def test_paste_min_area_and_batches():
    logits = torch.full((2, 4, 4), -5.0)
    logits[0, :2, :2] = 5.0  # 4 px
    logits[1] = 5.0  # 16 px
    lab, _, lo = paste_labels(logits, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), torch.tensor([[0, 0], [0, 0]]),
                              (2, 5, 5), min_area=5)
    assert lo.tolist() == [0, 1] and int(lab[0].max()) == 0 and int((lab[1] == 1).sum()) == 16

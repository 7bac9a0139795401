"""Window ops: gather/scatter with windows hanging off every edge, paste with overlaps."""
import math

import numpy as np
import pytest
import torch

from cks.windows import gather_windows, native_windows, paste_labels, scatter_windows


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


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.mark.parametrize("factor", [1.0 / 0.6, 2.0, 0.75])
def test_native_windows_place_the_boundary_on_native_pixels(factor):
    """A disk sent to model resolution and back: bilinear resampling keeps its centre and its IoU (closed form)."""
    h = w = 120
    hs, ws = round(h / factor), round(w / factor)
    f = (h / hs, w / ws)
    true = _disk((h, w), 57.3, 61.8, 18.0)
    small = torch.nn.functional.interpolate(torch.from_numpy(true.astype(np.float32))[None, None], size=(hs, ws),
                                            mode="bilinear", align_corners=False, antialias=True)[0, 0]
    s = 48
    oy, ox = round(57.3 / f[0]) - s // 2, round(61.8 / f[1]) - s // 2
    win = small[oy:oy + s, ox:ox + s][None]  # [1, S, S] probabilities of one cell
    on, org = native_windows(win, torch.tensor([[oy, ox]]), f, 0.5)
    got = np.zeros((h, w), bool)
    ys, xs = np.nonzero(on[0].numpy())
    got[ys + int(org[0, 0]), xs + int(org[0, 1])] = True
    # the same as resizing the whole model-resolution map (zero outside the window) and thresholding it
    canvas = torch.zeros(hs, ws)
    canvas[oy:oy + s, ox:ox + s] = win[0]
    direct = torch.nn.functional.interpolate(canvas[None, None], size=(h, w), mode="bilinear",
                                             align_corners=False)[0, 0].numpy() >= 0.5
    assert (got != direct).sum() <= 2  # float rounding at the threshold only
    iou = (got & true).sum() / (got | true).sum()
    cy, cx = np.argwhere(got).mean(0)
    assert iou > 0.93 and abs(cy - 57.3) < 0.35 and abs(cx - 61.8) < 0.35
    # the label path (threshold at model resolution, nearest neighbour back) for comparison
    lab = torch.nn.functional.interpolate((canvas >= 0.5).float()[None, None], size=(h, w), mode="nearest")[0, 0]
    lab = lab.numpy() > 0
    assert iou >= (lab & true).sum() / (lab | true).sum() - 0.005



def _whole_map(probs, origin, model_hw, native_hw, thr):
    """Reference: each window alone on a zero model-resolution map, resized to native (bilinear), thresholded."""
    out = []
    for p, (oy, ox) in zip(probs, origin.tolist()):  # a loop over a handful of test windows
        canvas = torch.zeros(model_hw)
        s = p.shape[-1]
        ys, xs = slice(max(oy, 0), min(oy + s, model_hw[0])), slice(max(ox, 0), min(ox + s, model_hw[1]))
        canvas[ys, xs] = p[ys.start - oy:ys.stop - oy, xs.start - ox:xs.stop - ox]
        full = torch.nn.functional.interpolate(canvas[None, None], size=native_hw, mode="bilinear",
                                               align_corners=False)[0, 0]
        out.append((full >= thr).numpy())
    return out


def _pasted(on, org, native_hw):
    maps = []
    for w, (oy, ox) in zip(on.numpy().astype(bool), org.tolist()):
        m = np.zeros(native_hw, bool)
        ys, xs = np.nonzero(w)
        ys, xs = ys + oy, xs + ox
        inside = (ys >= 0) & (ys < native_hw[0]) & (xs >= 0) & (xs < native_hw[1])
        m[ys[inside], xs[inside]] = True
        maps.append(m)
    return maps


@pytest.mark.parametrize("model_hw,native_hw,thr", [((40, 50), (100, 90), 0.5), ((30, 30), (120, 120), 0.1),
                                                    ((60, 48), (45, 40), 0.3)])
def test_native_windows_equal_resizing_the_whole_map(model_hw, native_hw, thr, monkeypatch):
    """Unequal y/x factors, a low threshold at 4x (the interpolation reaches past the window's edge), downscaling;
    chunked or not."""
    import cks.windows as cw

    g = torch.Generator().manual_seed(0)
    probs = torch.nn.functional.avg_pool2d(torch.rand(4, 1, 20, 20, generator=g), 5, 1)[:, 0]  # smooth, 16 x 16
    origin = torch.tensor([[2, 3], [10, 20], [-4, 5], [model_hw[0] - 10, model_hw[1] - 12]])
    f = (native_hw[0] / model_hw[0], native_hw[1] / model_hw[1])
    ref = _whole_map(probs, origin, model_hw, native_hw, thr)
    for pixels in (cw.RESAMPLE_PIXELS, 1):  # one chunk; one window per chunk
        monkeypatch.setattr(cw, "RESAMPLE_PIXELS", pixels)
        on, org = cw.native_windows(probs, origin, f, thr)
        margin = math.ceil(max(f) / 2) + 1
        assert on.shape == (4, math.ceil(16 * max(f)) + 2 * margin, math.ceil(16 * max(f)) + 2 * margin)
        for got, want in zip(_pasted(on, org, native_hw), ref):
            assert (got != want).sum() <= 2  # float rounding at the threshold only

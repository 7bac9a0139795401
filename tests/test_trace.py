"""cks.trace: mask statistics on hand-made windows (closed form) and the trace over a tiny run's snapshots."""
import math

import numpy as np
import pytest
import torch

from cks.errors import CksDataError
from cks.trace import KEYS, consistency_trace, mask_statistics


def _two_cells():
    """Two 4x4 cells side by side in one 8x16 image; one 8x8 window on each, origin at the image's left / middle."""
    lab = np.zeros((1, 8, 16), np.int32)
    lab[0, 2:6, 2:6], lab[0, 2:6, 8:12] = 1, 2
    batch = torch.tensor([0, 0])
    origin = torch.tensor([[0, 0], [0, 6]])  # window 2 covers columns 6..13: cell 2 and no part of cell 1
    return lab, batch, origin


def test_perfect_masks():
    lab, batch, origin = _two_cells()
    masks = torch.from_numpy(np.stack([lab[0, 0:8, 0:8] == 1, lab[0, 0:8, 6:14] == 2]).astype(np.float32))
    m_c = (lab > 0).astype(np.float32)
    s = mask_statistics(masks, batch, origin, [1, 2], lab, m_c)
    assert s["mask_own"] == 1.0 and s["mask_own_confident"] == 1.0 and s["mask_peak"] == 1.0
    assert s["m_c_cells"] == 1.0 and s["m_c_background"] == 0.0
    assert math.isnan(s["mask_neighbours"])  # window 1 reaches columns 0..7: no pixel of cell 2 (columns 8..11)


def test_spread_and_soft_masks():
    lab, batch, _ = _two_cells()
    origin = torch.tensor([[0, 0], [0, 4]])  # window 1: columns 0..7 (cell 1 + none of 2), window 2: 4..11
    masks = torch.full((2, 8, 8), 0.4)
    masks[1] = 0.6
    s = mask_statistics(masks, batch, origin, torch.tensor([1, 2]), lab, None)
    # window 2 sees all 16 px of cell 2 (own, 0.6) and columns 4..5 of cell 1 (8 px, neighbour, 0.6)
    assert s["mask_own"] == pytest.approx((16 * 0.4 + 16 * 0.6) / 32)
    assert s["mask_own_confident"] == pytest.approx(0.5)
    assert s["mask_neighbours"] == pytest.approx(0.6)
    assert s["mask_peak"] == pytest.approx(0.4)  # torch's median of two values is the lower one
    assert all(math.isnan(s[k]) for k in ("m_c_cells", "m_c_background"))
    empty = mask_statistics(torch.zeros(0, 8, 8), torch.zeros(0, dtype=torch.long), torch.zeros(0, 2), [], lab,
                            np.zeros((1, 8, 16)))
    assert empty["m_c_cells"] == 0.0 and math.isnan(empty["mask_own"])
    with pytest.raises(CksDataError, match="masks"):
        mask_statistics(torch.zeros(8, 8), batch, origin, [1, 2], lab)


def test_trace_over_snapshots_matches_a_direct_computation(tmp_path):
    from cks.config import get_preset
    from cks.run_maps import _image_tensor
    from cks.models.principal import Principal
    from cks.points import centroids
    from cks.train import train
    from cks.data.synthetic import synthetic_sample

    torch.set_num_threads(1)
    samples = [synthetic_sample((128, 128), n_cells=10, radius=(7, 11), seed=i) for i in (1, 2)]
    cfg = get_preset("paper_absolute", size="test", overrides={"segmentor.window": 48, "train.crop_size": 96,
                                                                "train.steps": 2, "train.snapshots": 2,
                                                                "loss.prior_until": 0.5})
    run = tmp_path / "RUN"
    train(cfg, [dict(s, label=None) for s in samples], out_dir=run, progress=False)
    rows = consistency_trace(run, samples)
    # prior for the first half of 2 steps: on in step 0 (snapshot 1), off in step 1 (snapshot 2)
    assert [(r["step"], r["prior_on"]) for r in rows] == [(1, True), (2, False)]
    n = sum(len(np.unique(s["label"])) - 1 for s in samples)
    assert all(r["n_cells"] == n for r in rows)
    for r in rows:
        assert all(0.0 <= r[k] <= 1.0 for k in KEYS if not math.isnan(r[k]))
    # the last row, recomputed by hand from the final checkpoint (fixed-scale run: samples as given)
    ck = torch.load(run / "checkpoint.pt", weights_only=False)
    p = Principal(cfg)
    p.load_state_dict(ck["principal"])
    p.eval()
    own = []
    for s in samples[:1]:
        ids, pts = centroids(s["label"])
        with torch.no_grad():
            out = p(_image_tensor(s["image"])[None], torch.from_numpy(pts)[None])
        m = torch.sigmoid(out["seg_logits"]).numpy()
        for k, (o, i) in enumerate(zip(out["seg_origin"].numpy(), ids)):  # loop over cells: the slow, obvious way
            y, x = o
            win = np.zeros(m.shape[1:], np.int64)
            ys, xs = slice(max(y, 0), min(y + 48, s["label"].shape[0])), slice(max(x, 0), min(x + 48, s["label"].shape[1]))
            win[ys.start - y:ys.stop - y, xs.start - x:xs.stop - x] = s["label"][ys, xs]
            own.extend(m[k][win == i].tolist())
    one = consistency_trace(run, samples[:1])[-1]
    assert one["mask_own"] == pytest.approx(float(np.mean(own)), rel=1e-5)
    assert one["n_cells"] < rows[-1]["n_cells"]
    with pytest.raises(CksDataError, match="label"):
        consistency_trace(run, [dict(samples[0], label=None)])


def test_plot_draws_one_line_per_run_and_hollow_points_after_the_prior():
    import matplotlib

    matplotlib.use("Agg")
    from cks.trace import plot_consistency_trace

    row = dict.fromkeys(KEYS, 0.5)
    runs = {"a": [dict(row, step=1, prior_on=True), dict(row, step=2, prior_on=False, mask_own=0.1)],
            "b": {"rows": [dict(row, step=1, prior_on=True)]}}
    fig = plot_consistency_trace(runs, keys=("mask_own", "m_c_cells"))
    ax = fig.axes[0]
    assert [l.get_label() for l in ax.get_lines() if not l.get_label().startswith("_")] == ["a", "b"]
    assert list(ax.get_lines()[0].get_ydata()) == [0.5, 0.1]
    faces = ax.collections[0].get_facecolors()
    assert faces[0][3] > 0 and faces[1][3] == 0  # filled while the prior was on, hollow after
    with pytest.raises(CksDataError, match="unknown"):
        plot_consistency_trace(runs, keys=("nope",))

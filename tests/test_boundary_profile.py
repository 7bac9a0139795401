"""cks.boundary_profile: signed distances and the intensity profile across mask boundaries."""
import numpy as np
import pytest

from cks.boundary_profile import (boundary_profile, edge_cost_profile, map_profile, normalised_intensity,
                                  signed_distance)
from cks.errors import CksDataError


def disk(shape, r, c=(32, 32)):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.hypot(yy - c[0], xx - c[1])


def test_signed_distance_closed_form():
    fg = np.zeros((9, 9), bool)
    fg[2:7, 2:7] = True
    sd = signed_distance(fg)
    assert sd[2, 4] == -1 and sd[4, 4] == -3 and sd[1, 4] == 1 and sd[0, 4] == 2
    assert sd[1, 1] == pytest.approx(np.sqrt(2))
    assert 0 not in sd
    assert np.isposinf(signed_distance(np.zeros((3, 3), bool))).all()
    assert np.isneginf(signed_distance(np.ones((3, 3), bool))).all()


def test_halo_peak_lies_outside_the_true_boundary_and_inside_a_grown_mask():
    rho = disk((64, 64), 0)
    r = 12.0
    img = np.where(rho <= r, -1.0, 0.0) + np.where((rho > r) & (rho <= r + 2.0), 4.0, 0.0)  # cell, 2-px halo
    true = (rho <= r).astype(int)
    grown = (rho <= r + 3.0).astype(int)  # a mask that ends where the halo has ended, and 1 px beyond
    p_true = boundary_profile([img], [true], max_distance=6)
    p_grown = boundary_profile([img], [grown], max_distance=6)
    d = np.array(p_true["distance"])
    assert d[np.nanargmax(p_true["mean"])] in (1, 2)
    assert d[np.nanargmax(p_grown["mean"])] in (-3, -2, -1)
    # 6 px inside the true mask there is only cell: the cell's normalised intensity, (-1 - median) / std
    x = normalised_intensity(img)
    assert p_true["mean"][0] == pytest.approx((-1.0 - np.median(img)) / img.std())
    assert x[32, 32] == pytest.approx(p_true["mean"][0])
    assert sum(p_true["count"]) == int((np.abs(signed_distance(true > 0)) < 6.5).sum())


def test_scale_stretches_the_distances():
    rho = disk((64, 64), 0)
    img = np.where((rho > 10) & (rho <= 11), 5.0, 0.0)  # a 1-px ring just outside a radius-10 disk
    lab = (rho <= 10).astype(int)
    p1 = boundary_profile([img], [lab], scale=1.0, max_distance=8)
    p2 = boundary_profile([img], [lab], scale=2.0, max_distance=8)
    d = np.array(p1["distance"])
    assert d[np.nanargmax(p1["mean"])] == 1
    assert d[np.nanargmax(p2["mean"])] == 2  # the ring's pixels (distance 0.x-1) are 1-2 px at twice the size


def test_bad_input_says_what_is_wrong():
    img = np.zeros((8, 8))
    with pytest.raises(CksDataError, match="2 images but 1"):
        boundary_profile([img, img], [np.zeros((8, 8), int)])
    with pytest.raises(CksDataError, match="does not match"):
        boundary_profile([img], [np.zeros((7, 8), int)])
    with pytest.raises(CksDataError, match="expected an"):
        boundary_profile([np.zeros(5)], [np.zeros(5, int)])
    p = boundary_profile([img], [np.zeros((8, 8), int)], max_distance=2)  # no cells: no boundary, empty bins
    assert p["count"] == [0, 0, 0, 0] and all(np.isnan(p["mean"]))


def test_map_profile_one_scale_per_map_pools_the_bins():
    rng = np.random.default_rng(0)
    lab = np.zeros((20, 20), int)
    lab[5:15, 5:15] = 1
    a, b = rng.random((20, 20)), rng.random((20, 20))
    pa, pb = map_profile([a], [lab], 1.0), map_profile([b], [lab], 0.5)
    both = map_profile([a, b], [lab, lab], [1.0, 0.5])
    count = np.add(pa["count"], pb["count"])
    total = np.nan_to_num(pa["mean"]) * pa["count"] + np.nan_to_num(pb["mean"]) * pb["count"]
    assert both["count"] == count.tolist()
    ok = count > 0
    np.testing.assert_allclose(np.asarray(both["mean"])[ok], total[ok] / count[ok])
    with pytest.raises(CksDataError, match="2 scales for 1 maps"):
        map_profile([a], [lab], [1.0, 0.5])


def test_edge_cost_is_low_only_where_the_image_has_its_edge():
    """A flat square on a flat background: every pair cut by the outline differs by one step (closed form),
    every pair cut by a grown or shrunk outline is flat (weight 1)."""
    img = np.zeros((64, 64))
    img[20:40, 20:40] = 1.0
    lab = (img > 0).astype(int)
    step = 1.0 / np.std(img, ddof=1)  # the step in standard deviations (unbiased, as torch.std in pair_weights)
    for theta in (0.3, 0.15):
        p = edge_cost_profile([img], [lab], theta=theta, offsets=range(-2, 4))
        w = dict(zip(p["offset"], p["mean_weight"]))
        assert w[0] == pytest.approx(np.exp(-step / theta), rel=1e-5)
        for k in (-2, -1, 1, 2, 3):
            assert w[k] == pytest.approx(1.0)
        assert p["relative"][p["offset"].index(2)] == pytest.approx(np.exp(step / theta), rel=1e-4)
    # the outline of a 20 x 20 square: 2 x 20 cut pairs along each straight direction; along a diagonal,
    # |a in S| + |b in S| - 2 |both in S| = 400 + 400 - 2 x 19 x 19
    p = edge_cost_profile([img], [lab], offsets=[-1, 0, 1])
    assert p["pairs"][1] == 2 * (2 * 20) + 2 * (2 * 400 - 2 * 19 * 19)
    # an n x n square cuts 12 n - 4 pairs: shrunk by 1 px it is 18 x 18, grown by 1 px 22 x 22
    assert p["pairs"] == [12 * 18 - 4, 12 * 20 - 4, 12 * 22 - 4]


def test_edge_cost_profile_matches_a_pair_by_pair_count():
    """Independent check: loop over every pixel pair of a random image and grown disk (slow, small)."""
    rng = np.random.default_rng(1)
    img = rng.normal(size=(24, 26))
    rho = disk((24, 26), 0, c=(12, 12))
    lab = (rho <= 6).astype(int)
    theta, k = 0.3, 2
    p = edge_cost_profile([img], [lab], theta=theta, offsets=[0, k])
    sd = signed_distance(lab > 0)
    s = sd - 0.5 * np.sign(sd)
    z = (img - np.median(img)) / img.std(ddof=1)  # torch.std: unbiased
    for i, kk in enumerate((0, k)):
        inside = s < kk
        tot, n = 0.0, 0
        for y in range(24):
            for x in range(26):
                for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
                    y2, x2 = y + dy, x + dx
                    if 0 <= y2 < 24 and 0 <= x2 < 26 and inside[y, x] != inside[y2, x2]:
                        tot += np.exp(-abs(z[y, x] - z[y2, x2]) / theta)
                        n += 1
        assert p["pairs"][i] == n
        assert p["mean_weight"][i] == pytest.approx(tot / n, rel=1e-4)


def test_edge_cost_profile_resizes_to_the_training_scale_and_checks_its_input():
    img = np.zeros((64, 64))
    img[16:48, 16:48] = 1.0
    lab = (img > 0).astype(int)
    # at half size the 32 x 32 square is 16 x 16 (pairs 12 n - 4) and the image's step, slightly blurred by the
    # antialiasing, still sits on it: the outline is the cheapest edge, flat image 3 px off it
    half = edge_cost_profile([img], [lab], scale=0.5, offsets=range(-3, 4))
    assert half["pairs"][2:5] == [12 * 14 - 4, 12 * 16 - 4, 12 * 18 - 4]
    w = dict(zip(half["offset"], half["mean_weight"]))
    assert w[0] < 0.01 < 0.5 < min(w[-1], w[1]) and w[-3] == pytest.approx(1.0) and w[3] == pytest.approx(1.0)
    # labels 1 px (at half size) off the image's step: the cheapest edge is no longer at k = 0
    off = edge_cost_profile([img], [np.roll(lab, 2, axis=(0, 1))], scale=0.5, offsets=range(-3, 4))
    assert min(off["mean_weight"]) > 10 * w[0]
    # every channel counts, as in L_PW: a second channel with a stronger step lowers the outline's weight
    two = edge_cost_profile([np.stack([img, 3 * img + np.eye(64)[0]])], [lab], offsets=[0])
    assert two["mean_weight"][0] < edge_cost_profile([img], [lab], offsets=[0])["mean_weight"][0]
    with pytest.raises(CksDataError, match="positive number"):
        edge_cost_profile([img], [lab], scale=float("nan"))
    with pytest.raises(CksDataError, match="2 images but 1"):
        edge_cost_profile([img, img], [lab])
    with pytest.raises(CksDataError, match="does not match"):
        edge_cost_profile([img], [lab[:-1]])
    with pytest.raises(CksDataError, match="2 scales for 1 images"):
        edge_cost_profile([img], [lab], scale=[1.0, 0.5])
    empty = edge_cost_profile([img], [np.zeros_like(lab)], offsets=[0, 1])  # no cells: no edge anywhere
    assert empty["pairs"] == [0, 0] and all(np.isnan(empty["mean_weight"]))

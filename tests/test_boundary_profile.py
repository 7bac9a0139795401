"""cks.boundary_profile: signed distances and the intensity profile across mask boundaries."""
import numpy as np
import pytest

from cks.boundary_profile import boundary_profile, map_profile, normalised_intensity, signed_distance
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

"""cks.data.augment: geometric consistency of image, label and points; repeatability."""

import itertools

import numpy as np
import pytest

from cks.data.augment import apply_d4, augment_sample, crop_or_pad, jitter_intensity, resize_crop
from cks.data.readers import make_sample
from cks.points import label_at_points


def ellipse_sample(shape=(150, 190), seed=0):
    """Convex cells (ellipses) of random size on a grid; image = label-dependent texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    k = 0
    for cy in range(14, shape[0] - 10, 28):
        for cx in range(14, shape[1] - 10, 28):
            k += 1
            ay, ax = rng.uniform(5, 12, 2)
            lab[((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1] = k
    img = np.stack([lab * 3.0 + rng.normal(0, 1, shape), (yy + xx) * 0.1]).astype(np.float32)
    return make_sample(img, lab, name="ellipses")


def test_points_stay_in_their_own_cells():
    sample = ellipse_sample()
    n_total = 0
    for seed in range(25):
        out = augment_sample(sample, np.random.default_rng(seed), size=96)
        lab, pts, pids = out["label"], out["points"], out["point_ids"]
        assert out["image"].shape == (2, 96, 96) and lab.shape == (96, 96)
        assert pts.dtype == np.float32 and lab.dtype == np.int32
        np.testing.assert_array_equal(label_at_points(pts, lab), pids)  # each point on its own cell
        assert set(np.unique(lab)) - {0} == set(pids.tolist())  # no cell without its point
        assert ((pts >= -0.5) & (pts < 95.5)).all()
        n_total += len(pts)
    assert n_total > 100


def test_small_image_is_padded_and_upscaled_consistently():
    sample = ellipse_sample((60, 70), seed=1)
    for seed in range(10):
        out = augment_sample(sample, np.random.default_rng(seed), size=(128, 100), contrast_range=None, brightness=0)
        assert out["image"].shape == (2, 128, 100)
        assert len(out["points"]) == len(sample["points"])  # nothing cropped away
        np.testing.assert_array_equal(label_at_points(out["points"], out["label"]), out["point_ids"])


def test_repeatable_with_seed():
    sample = ellipse_sample()
    a = augment_sample(sample, np.random.default_rng(3), size=64)
    b = augment_sample(sample, np.random.default_rng(3), size=64)
    c = augment_sample(sample, np.random.default_rng(4), size=64)
    for key in ("image", "label", "points"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["image"], c["image"])


@pytest.mark.parametrize("ud,lr,tr", list(itertools.product([False, True], repeat=3)))
def test_d4_exact(ud, lr, tr):
    rng = np.random.default_rng(0)
    img = rng.random((2, 12, 12)).astype(np.float32)
    lab = rng.integers(0, 50, (12, 12)).astype(np.int32)
    pts = rng.integers(0, 12, (20, 2)).astype(np.float32)
    i2, l2, p2 = apply_d4(img, lab, pts, ud, lr, tr)
    src, dst = pts.astype(int), p2.round().astype(int)
    np.testing.assert_allclose(p2, dst)  # integer points stay integer
    np.testing.assert_array_equal(i2[:, dst[:, 0], dst[:, 1]], img[:, src[:, 0], src[:, 1]])
    np.testing.assert_array_equal(l2[dst[:, 0], dst[:, 1]], lab[src[:, 0], src[:, 1]])
    expect = img[:, ::-1] if ud else img
    expect = expect[:, :, ::-1] if lr else expect
    np.testing.assert_array_equal(i2, expect.transpose(0, 2, 1) if tr else expect)


def test_crop_without_resize_is_a_window():
    rng = np.random.default_rng(0)
    img = rng.random((1, 50, 60)).astype(np.float32)
    pts = np.array([[10.0, 20.0], [30.0, 55.0]], np.float32)
    out, _, p = crop_or_pad(img, None, pts, (20, 30))  # centred: rows 15..34, cols 15..44
    np.testing.assert_array_equal(out, img[:, 15:35, 15:45])
    np.testing.assert_allclose(p, pts - [15, 15])
    out, lab, p = crop_or_pad(img, np.ones((50, 60), np.int32), pts, (60, 64))  # centred pad: 5 rows, 2 cols
    np.testing.assert_array_equal(out[:, 5:55, 2:62], img)
    assert out[:, :5].sum() == 0 and lab.sum() == 50 * 60
    np.testing.assert_allclose(p, pts + [5, 2])


def test_resize_crop_maps_points_exactly():
    lab = np.kron(np.arange(1, 21).reshape(4, 5), np.ones((4, 4), np.int64)).astype(np.int32)  # 16 x 20
    img = lab[None].astype(np.float32)
    centres = np.argwhere(np.ones((4, 5))) * 4 + 1.5  # block centroids
    i2, l2, p2 = resize_crop(img, lab, centres, 0.5, (8, 10))
    np.testing.assert_allclose(p2, np.argwhere(np.ones((4, 5))) * 2 + 0.5)
    np.testing.assert_array_equal(l2, np.kron(np.arange(1, 21).reshape(4, 5), np.ones((2, 2), np.int64)))


def test_intensity_jitter():
    img = np.random.default_rng(0).normal(size=(1, 16, 16)).astype(np.float32)
    np.testing.assert_allclose(jitter_intensity(img, np.random.default_rng(0), (1, 1), 0), img, atol=1e-6)
    out = jitter_intensity(img, np.random.default_rng(0), (0.6, 1.4), 0.3)
    ratio = out.std() / img.std()
    assert 0.6 <= ratio <= 1.4 and abs(out.mean() - img.mean()) <= 0.3 + 1e-5


def test_border_drops_points_and_their_cells():
    sample = ellipse_sample()
    out = augment_sample(sample, np.random.default_rng(0), size=96, border=8)
    assert ((out["points"] >= 7.5) & (out["points"] < 96 - 8.5)).all()
    assert set(np.unique(out["label"])) - {0} == set(out["point_ids"].tolist())

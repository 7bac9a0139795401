"""What predict checks before it runs the model (cks.predict_checks), and the learned size estimate's warnings.

Each bad argument must end in an error that names the problem (not a tensor error, an allocation failure or a
run that does not end), and each unreliable result in a warning; good arguments in the other layouts must give
the same result as the canonical one.
"""
import warnings

import numpy as np
import pytest
import torch

from cks.errors import CksConfigError, CksDataError
from cks.predict_checks import MAX_MODEL_PIXELS, SCALE_WARN_FACTOR, as_chw, check_diameter, check_scale


def test_channel_last_is_read_as_channels():
    rng = np.random.default_rng(0)
    hwc = rng.random((20, 30, 3)).astype(np.float32)
    chw = as_chw(hwc)
    assert chw.shape == (3, 20, 30)
    for c in range(3):
        np.testing.assert_array_equal(chw[c], hwc[..., c])
    assert as_chw(rng.random((20, 30))).shape == (1, 20, 30)
    assert as_chw(rng.random((2, 20, 30))).shape == (2, 20, 30)  # channel-first stays
    assert as_chw(np.ones((8, 9), bool)).dtype == np.uint8


@pytest.mark.parametrize("bad, needle", [
    (np.zeros((5, 32, 32)), "stack"),                         # 5 planes: neither channels first nor last
    (np.zeros((32, 32, 4)), "C <= 3"),                        # RGBA
    (np.zeros((2, 1, 32, 32)), "shape"),
    (np.zeros((0, 32)), "shape"),
    (np.ones((8, 8), complex), "complex"),
    (np.array([[object()] * 4] * 4), "real numbers"),
    (np.full((8, 8), 1e300), "float32"),                      # would overflow to inf in the model
    (np.array([[0.0, np.inf], [1.0, 2.0]]), "NaN/inf"),
])
def test_bad_images_are_named(bad, needle):
    with pytest.raises(CksDataError, match=needle):
        as_chw(bad)


def test_diameter_must_be_a_positive_number():
    assert check_diameter("41") == 41.0 and check_diameter(np.float32(12.5)) == 12.5
    for bad in ("forty", None, [3], 0, -5, float("nan"), float("inf")):
        with pytest.raises(CksConfigError, match="diameter"):
            check_diameter(bad)


def test_scale_that_would_build_a_huge_image_is_refused():
    side = 1024
    limit = (MAX_MODEL_PIXELS / side ** 2) ** 0.5  # the largest scale allowed for a 1024 x 1024 image
    assert check_scale(0.99 * limit, (side, side)) == pytest.approx(0.99 * limit)
    with pytest.raises(CksConfigError, match=r"not um"):
        check_scale(1.01 * limit, (side, side))
    big = (12_000, 12_000)  # over the limit already: shown at its size or smaller it is tiled, not refused
    assert check_scale(1.0, big) == 1.0 and check_scale(0.5, big) == 0.5
    with pytest.raises(CksConfigError, match="more than predict builds"):
        check_scale(1.01, big)
    with pytest.raises(CksConfigError, match="256000 x 256000 px"):  # the message says what it would build
        check_scale(1000.0, (256, 256), diameter=0.03, model_diameter=30.0)
    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(CksConfigError, match="scale"):
            check_scale(bad, (10, 10))


def test_scale_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # within the factor, a normal image: no warning at all
        check_scale(0.5 * SCALE_WARN_FACTOR, (512, 512), training_scale=1.0, model_diameter=32.0)
        check_scale(20.0, (512, 512), training_scale=None)  # size-normalised: any scale can be right
    with pytest.warns(UserWarning, match="as large as the model was trained on"):
        check_scale(1.01 * SCALE_WARN_FACTOR * 0.5, (64, 64), training_scale=0.5)
    with pytest.warns(UserWarning, match="as large as the model was trained on"):  # the lower bound, 1/8
        check_scale(0.99 * 0.5 / SCALE_WARN_FACTOR, (4096, 4096), training_scale=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_scale(1.01 * 0.5 / SCALE_WARN_FACTOR, (4096, 4096), training_scale=0.5)
    with pytest.warns(UserWarning, match="smaller than one cell"):  # a diameter far too large: a 3 x 3 px image
        check_scale(30 / 10_000, (1000, 1000), diameter=10_000.0, model_diameter=30.0)


def test_predict_takes_channel_last_and_refuses_huge_scales(tiny_run):
    from cks.checkpoint import load_model
    from cks.predict import predict

    _, samples, run = tiny_run
    model = load_model(run)
    img = samples[0]["image"]  # [1, H, W]
    rgb_last = np.repeat(img, 3, 0).transpose(1, 2, 0)
    a, ta = predict(model, rgb_last, diameter=20.0, score_threshold=0.0)
    b, tb = predict(model, np.repeat(img, 3, 0), diameter=20.0, score_threshold=0.0)
    np.testing.assert_array_equal(a, b)
    pts = np.array([[20.0, 30.0], [60.0, 90.0], [100.0, 40.0]])  # points= measures the size on the same pixels
    _, _, ia = predict(model, rgb_last, points=pts, return_info=True)
    _, _, ib = predict(model, np.repeat(img, 3, 0), points=pts, return_info=True)
    assert ia["diameter"] == pytest.approx(ib["diameter"]) and ia["diameter_source"] == "measured at the given points"
    with pytest.raises(CksConfigError, match="more than predict builds"):
        predict(model, img, diameter=1e-6)
    with pytest.raises(CksConfigError, match="diameter"):
        predict(model, img, diameter="abc")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a blank image has no cells and no size: nothing to estimate or warn about
        label, table, info = predict(model, np.full((64, 64), 5.0), return_info=True)
        small, _, small_info = predict(model, np.zeros((8, 8)), points=pts[:2] / 20, return_info=True)
    assert not label.any() and len(table["label"]) == 0 and info["diameter"] is None
    assert not small.any() and small_info["diameter"] is None


def test_learned_size_warns_where_it_cannot_be_trusted(tiny_run):
    """A strip a few cells wide, and an image under 2 px, get a warning instead of a silent size."""
    from cks.checkpoint import load_model
    from cks.predict import REGRESSOR_MIN_CELLS, _scale_by_regressor
    from cks.size_model import fit_size_model

    _, samples, run = tiny_run
    model = load_model(run)
    if model.size_model is None:
        images = [s["image"] for s in samples]
        diameters = [float(np.median(np.sqrt(4 / np.pi * np.bincount(s["label"].ravel())[1:]))) for s in samples]
        torch.manual_seed(0)
        model.size_model = fit_size_model(model, images, diameters, per_image=4, seed=0)
    img = samples[0]["image"]
    with pytest.warns(UserWarning, match="too little to estimate"):  # 2 rows: under 4 cells of any size > 0.5 px
        _scale_by_regressor(model, img[:, :2, :])
    assert REGRESSOR_MIN_CELLS * 0.5 > 1
    with pytest.warns(UserWarning, match="too small to estimate"):
        s, _, source = _scale_by_regressor(model, img[:, :1, :])
    assert s == float(getattr(model, "scale", 1.0)) and source.startswith("training scale")
    free, _, _ = _scale_by_regressor(model, img)  # where the regressor answers on the full image ...
    model.size_model.scale_range = [free, free * 1.0001]  # ... a range that ends there puts its answer at the end
    with pytest.warns(UserWarning, match="end of the sizes it was fitted on"):
        _scale_by_regressor(model, img)

"""The learned cell-size regressor (cks/size_model.py): ridge algebra, fitting, prediction, training hook."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cks.checkpoint import load_model
from cks.config import get_preset
from cks.data.synthetic import synthetic_sample
from cks.errors import CksConfigError, CksDataError
from cks.models.principal import build_principal
from cks.predict import predict
from cks.size import median_diameter
from cks.size_model import (FILE_NAME, SizeModel, _ridge, estimate_diameter_learned, fit_size_model,
                            size_features)
from cks.train import train

TARGET = 18.0


def _up(a, k):
    return np.kron(a, np.ones((1, k, k) if a.ndim == 3 else (k, k), a.dtype))


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = get_preset("base", size="test", overrides={"size.diameter": TARGET})
    model = build_principal(cfg, scale=1.0).eval()
    train_set = [synthetic_sample((192, 192), n_cells=30, radius=(6, 10), seed=i) for i in range(4)]
    sm = fit_size_model(model, [s["image"] for s in train_set], [median_diameter(s["label"]) for s in train_set],
                        per_image=16, side=128)
    return model, sm


def test_dual_ridge_equals_the_primal_solution():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(12, 30)), rng.normal(size=12)  # fewer samples than features, as in practice
    for lam in (0.1, 10.0):
        primal = np.linalg.solve(z.T @ z + lam * np.eye(30), z.T @ y)
        np.testing.assert_allclose(_ridge(z, y, lam), primal, rtol=1e-8, atol=1e-10)


def test_log2_factor_is_the_standardised_linear_form():
    sm = SizeModel(mean=[1.0, 2.0], std=[2.0, 0.5], weights=[0.5, -1.0], bias=0.25, lam=1.0, target=32.0,
                   cv_log2_error=0.1, n_images=2, n_samples=4)
    # (3 - 1) / 2 * 0.5 + (1 - 2) / 0.5 * -1 + 0.25 = 0.5 + 2 + 0.25
    assert sm.log2_factor(np.array([3.0, 1.0])) == pytest.approx(2.75)


def test_scale_is_clipped_to_the_fitted_range(fitted):
    model, sm = fitted
    # the fixture's images have cells of diameter D_i; its crops were shown at TARGET / D_i * 2^(+-u_range)
    assert sm.scale_range[0] < sm.scale_range[1]
    img = synthetic_sample((128, 128), n_cells=12, radius=(6, 10), seed=3)["image"]
    n_feat = size_features(model, img, 1.0).size
    s0 = float(model.scale)
    for u, passes in ((6.0, 1), (6.0, 2), (-6.0, 2)):  # a regressor that always answers a far-off u
        wild = SizeModel(mean=[0.0] * n_feat, std=[1.0] * n_feat, weights=[0.0] * n_feat, bias=u, lam=1.0,
                         target=TARGET, cv_log2_error=0.1, n_images=2, n_samples=4, u_range=1.25,
                         scale_range=[s0 / 3.0, s0 * 3.0])
        got = estimate_diameter_learned(model, wild, img, passes=passes)[1]
        # each pass moves by at most 2^1.25 (u is clipped to the fitted +-u_range), and never past the range
        want = float(np.clip(s0 * 2.0 ** (-np.sign(u) * 1.25 * passes), s0 / 3.0, s0 * 3.0))
        assert got == pytest.approx(want)
    legacy = SizeModel(**{**wild.__dict__, "scale_range": None, "bias": 6.0})  # a file from before the range
    assert estimate_diameter_learned(model, legacy, img, passes=1)[1] == pytest.approx(s0 * 2.0 ** -2.5)


def test_features_shape_and_scale_dependence(fitted):
    model, _ = fitted
    img = synthetic_sample((128, 128), n_cells=12, radius=(6, 10), seed=3)["image"]
    f1, f2 = size_features(model, img, 1.0), size_features(model, img, 2.0)
    enc = sum(model.backbone.encoder.feature_info.channels())
    assert f1.shape == (2 * (enc + 4 * model.cfg.backbone.fpn_channels),)
    assert np.isfinite(f1).all() and not np.allclose(f1, f2)


def test_contrast_scales_the_standardised_image(fitted, monkeypatch):
    """contrast c / brightness b give the features of the standardised image times c plus b."""
    import cks.data.io

    model, _ = fitted
    img = synthetic_sample((128, 128), n_cells=12, radius=(6, 10), seed=3)["image"]
    np.testing.assert_array_equal(size_features(model, img, 1.0, contrast=1.0), size_features(model, img, 1.0))
    got = size_features(model, img, 1.0, contrast=1.5, brightness=0.25)
    assert not np.allclose(got, size_features(model, img, 1.0))
    standardise = cks.data.io.normalize_image
    monkeypatch.setattr(cks.data.io, "normalize_image", lambda x: standardise(x) * 1.5 + 0.25)
    np.testing.assert_allclose(got, size_features(model, img, 1.0), rtol=1e-5, atol=1e-6)


def test_regressor_recovers_the_size_of_unseen_cells(fitted):
    """Held-out field at 1x and 2x (exact sizes by pixel repetition), measured from the training scale."""
    model, sm = fitted
    assert sm.n_images == 4 and sm.n_samples == 64 and sm.lam in (1.0, 10.0, 100.0, 1000.0, 10000.0)
    test = synthetic_sample((192, 192), n_cells=30, radius=(6, 10), seed=10)
    model.scale = 1.0
    for k in (1, 2):
        true_d = median_diameter(_up(test["label"], k))
        d, scale = estimate_diameter_learned(model, sm, _up(test["image"], k))
        assert scale == pytest.approx(TARGET / d)
        assert d == pytest.approx(true_d, rel=0.3), (k, d, true_d)  # a sign or scale error is off by 2-4x
    d1 = estimate_diameter_learned(model, sm, test["image"])[0]
    d2 = estimate_diameter_learned(model, sm, _up(test["image"], 2))[0]
    assert 1.5 < d2 / d1 < 2.6  # twice the cells, about twice the estimate


def test_save_load_round_trip_and_corrupt_file(fitted, tmp_path):
    _, sm = fitted
    p = sm.save(tmp_path / FILE_NAME)
    back = SizeModel.load(p)
    assert back == sm
    p.write_text("{not json")
    with pytest.raises(CksDataError, match="re-fit"):
        SizeModel.load(p)


def test_fit_rejects_bad_input(fitted):
    model, _ = fitted
    img = np.zeros((1, 64, 64), np.float32)
    with pytest.raises(CksDataError, match=">= 2 images"):
        fit_size_model(model, [img], [10.0])
    with pytest.raises(CksDataError, match=">= 2 images"):
        fit_size_model(model, [img, img], [10.0])
    with pytest.raises(CksDataError, match="positive"):
        fit_size_model(model, [img, img], [10.0, float("nan")])


def test_estimate_rejects_bad_images(fitted):
    model, sm = fitted
    with pytest.raises(CksDataError, match="shape"):
        estimate_diameter_learned(model, sm, np.zeros((2, 3, 64, 64), np.float32))
    bad = synthetic_sample((64, 64), n_cells=4, radius=(6, 10), seed=1)["image"].copy()
    bad[0, 3, 3] = np.nan
    with pytest.raises(CksDataError, match="finite"):
        estimate_diameter_learned(model, sm, bad)


def test_predict_uses_the_regressor_when_the_model_has_one(fitted):
    model, sm = fitted
    img = synthetic_sample((128, 128), n_cells=12, radius=(6, 10), seed=5)["image"]
    model.size_model = None
    with pytest.raises(CksConfigError, match="size regressor"):
        predict(model, img, size_from="learned")
    with pytest.raises(CksConfigError, match="size_from"):
        predict(model, img, size_from="guess")
    model.size_model = sm
    try:
        _, _, info = predict(model, img, return_info=True)  # default "auto" -> learned
        assert info["diameter_source"] == "estimated (learned)"
        d, scale = estimate_diameter_learned(model, sm, img)
        assert info["scale"] == pytest.approx(scale) and info["diameter"] == pytest.approx(d)
        _, _, info = predict(model, img, size_from="score", return_info=True)
        assert info["diameter_source"] != "estimated (learned)"
    finally:
        model.size_model = None


def test_training_fits_saves_and_reuses_it(tmp_path):
    torch.manual_seed(0)
    cfg = get_preset("supervised", size="test", overrides={
        "size.diameter": TARGET, "segmentor.window": 48, "train.crop_size": 96, "train.steps": 4,
        "train.checkpoint_every": 2, "size.regressor_crops": 3})
    data = [synthetic_sample((128, 128), n_cells=10, radius=(6, 10), seed=i) for i in range(2)]
    run = tmp_path / "run"
    r = train(cfg, data, None, out_dir=run, stop_at=2, progress=False)  # a planned pause: no fit yet
    assert r["step"] == 2 and not (run / FILE_NAME).exists() and r["model"].size_model is None
    r = train(cfg, data, None, out_dir=run, resume=True, progress=False)
    saved = json.loads((run / FILE_NAME).read_text())
    assert saved["step"] == 4 and saved["n_samples"] == 2 * 3 and saved["n_images"] == 2
    assert r["model"].size_model == SizeModel(**saved)
    assert load_model(run).size_model == SizeModel(**saved)  # load_model attaches it
    before = (run / FILE_NAME).stat().st_mtime_ns
    train(cfg, data, None, out_dir=run, resume=True, progress=False)  # finished run resumed: same step, reused
    assert (run / FILE_NAME).stat().st_mtime_ns == before
    off = train(cfg.__class__.from_dict({**cfg.to_dict(), "size": {**cfg.to_dict()["size"], "regressor_crops": 0}}),
                data, None, out_dir=tmp_path / "off", progress=False)
    assert off["model"].size_model is None and not (tmp_path / "off" / FILE_NAME).exists()


def test_size_benchmark_resizes_fields_and_summarises_per_factor():
    """benchmarks/size_at_prediction.py --rescale: a field resized by f has f x the cells' size (checked on a disk
    whose equivalent diameter is known), and the per-factor summary counts only that factor's rows."""
    from benchmarks.size_at_prediction import resized, summary

    yy, xx = np.mgrid[:200, :200]
    disk = ((yy - 100) ** 2 + (xx - 100) ** 2 <= 30 ** 2).astype(np.float32) * 100.0  # diameter ~60 px
    for f in (0.5, 1.5):
        small = resized(disk, f)
        assert small.shape == (round(200 * f), round(200 * f)) and small.dtype == np.float32
        d = median_diameter((small > 50).astype(np.int32))
        assert abs(d / (median_diameter((disk > 50).astype(np.int32)) * f) - 1) < 0.03
    chw = resized(np.stack([disk, disk * 0]), 0.5)
    assert chw.shape == (2, 100, 100) and chw[1].max() == 0
    assert resized(disk, 1.0) is not None and np.array_equal(resized(disk, 1.0), disk)
    rows = [{"resized": 0.5, "true": 10.0, "learned_1": 13.0, "learned_2": 11.0, "score_search": 10.0},
            {"resized": 2.0, "true": 40.0, "learned_1": 40.0, "learned_2": 44.0, "score_search": 20.0}]
    s = summary(rows)
    assert s["learned_1"]["within_20pct"] == 0.5 and s["learned_2"]["within_20pct"] == 1.0
    assert s["score_search"]["max_abs_error"] == 0.5
    assert summary(rows[:1])["learned_1"]["median_abs_error"] == pytest.approx(0.3)


def test_size_at_prediction_summary_includes_refined_where_measured():
    """benchmarks/size_at_prediction.summary: the refined estimator is summarised like the others, and rows written
    before it existed (no "refined" key) still summarise."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sap", Path(__file__).resolve().parents[1] / "benchmarks" / "size_at_prediction.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = [{"resized": 1.0, "true": 10.0, "learned_1": 14.0, "learned_2": 13.0, "score_search": 10.0, "refined": 11.0},
            {"resized": 1.0, "true": 40.0, "learned_1": 40.0, "learned_2": 44.0, "score_search": 20.0, "refined": 52.0}]
    s = mod.summary(rows)
    assert s["refined"]["within_20pct"] == 0.5 and s["refined"]["max_abs_error"] == pytest.approx(0.3)
    assert s["refined"]["median_abs_error"] == pytest.approx(0.2)
    old = mod.summary([{k: v for k, v in r.items() if k != "refined"} for r in rows])
    assert "refined" not in old and old["learned_2"]["within_20pct"] == 0.5

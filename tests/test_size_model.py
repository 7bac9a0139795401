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


def test_weighted_moments_closed_forms():
    """Uniform weights give the population mean / std; an indicator weight gives the moments of its region."""
    from cks.size_model import _weighted_moments

    rng = np.random.default_rng(0)
    m = torch.from_numpy(rng.normal(size=(3, 8, 8)))
    mean, std = _weighted_moments(m, torch.ones(8, 8))
    np.testing.assert_allclose(mean.numpy(), m.numpy().reshape(3, -1).mean(1))
    np.testing.assert_allclose(std.numpy(), m.numpy().reshape(3, -1).std(1))  # ddof 0
    w = torch.zeros(16, 16)
    w[:8, 8:] = 1.0  # the top-right quarter; area-resized to the 8 x 8 map: its top-right 4 x 4
    mean, std = _weighted_moments(m, w)
    region = m.numpy()[:, :4, 4:].reshape(3, -1)
    np.testing.assert_allclose(mean.numpy(), region.mean(1))
    np.testing.assert_allclose(std.numpy(), region.std(1))


def test_detection_weights_spread_one_diameter_around_a_detection(fitted):
    """A detector sure of one cell at the finest level: weight ~1 within half a diameter of it, ~0 beyond."""
    from cks.size_model import detection_weights

    model, _ = fitted
    fpn = [torch.zeros(1, model.cfg.backbone.fpn_channels, 64 // s, 64 // s) for s in model.backbone.strides]
    finest = min(model.cfg.detector.strides)

    def detector(levels):
        out = {}
        for s in model.cfg.detector.strides:
            z = torch.full((1, 1, 64 // s, 64 // s), -30.0)
            if s == finest:
                z[0, 0, 5, 7] = 30.0
            out[s] = z
        return out, {}

    fake = type("M", (), {"detector": staticmethod(detector), "backbone": model.backbone, "cfg": model.cfg})()
    w = detection_weights(fake, fpn)
    assert tuple(w.shape) == (64 // finest, 64 // finest)
    k = max(1, round(TARGET / finest)) // 2 * 2 + 1  # the max filter's width, one diameter at that level
    inside = np.zeros(tuple(w.shape), bool)
    inside[max(0, 5 - k // 2):5 + k // 2 + 1, max(0, 7 - k // 2):7 + k // 2 + 1] = True
    assert (w.numpy()[inside] > 0.99).all() and (w.numpy()[~inside] < 1e-3).all()


def test_detection_pooling_reads_the_detected_region(fitted, monkeypatch):
    """size_features(pooling="detections") = the moments of every map over the detector's region; it is recorded
    by the fit, survives save / load, and reaches the features at prediction."""
    import cks.size_model as sm_mod

    model, _ = fitted
    img = synthetic_sample((128, 128), n_cells=12, radius=(6, 10), seed=3)["image"]
    region = torch.zeros(32, 32)
    region[8:24, 0:16] = 1.0  # stride-4 px; multiples of 8, so every map down to stride 32 holds it exactly
    monkeypatch.setattr(sm_mod, "detection_weights", lambda m, fpn: region)
    got = size_features(model, img, 1.0, pooling="detections")
    assert not np.allclose(got, size_features(model, img, 1.0))
    # independently: the maps of the 128-px image, each cropped to the region
    from cks.data.io import normalize_image
    from cks.models.backbone import match_channels

    x = match_channels(torch.from_numpy(normalize_image(np.asarray(img, np.float32)))[None],
                       model.cfg.backbone.in_channels)  # 128 px: no padding to a multiple of 32
    with torch.no_grad():
        enc = model.backbone.forward_encoder(x)
        maps = list(enc) + list(model.backbone.fpn(enc))
    want = []
    for m in maps:
        f = 128 // m.shape[-1]  # stride of this map; the region is in stride-4 px
        sub = m[0, :, 8 * 4 // f:24 * 4 // f, 0:16 * 4 // f].double().flatten(1)
        want += [sub.mean(1), sub.std(1, unbiased=False)]
    np.testing.assert_allclose(got, torch.cat(want).numpy(), rtol=1e-6, atol=1e-8)
    with pytest.raises(CksDataError, match="pooling"):
        size_features(model, img, 1.0, pooling="cells")
    monkeypatch.undo()  # the real detector on a crop that shrinks to one pixel at stride 32 (GroupNorm needs two)
    assert np.isfinite(size_features(model, img, 0.25, box=(0, 0, 40, 40), pooling="detections")).all()


def test_pooling_is_recorded_and_used_at_prediction(fitted, tmp_path, monkeypatch):
    import cks.size_model as sm_mod

    model, sm = fitted
    assert sm.pooling == "detections"  # the default
    d = json.loads(sm.save(tmp_path / FILE_NAME).read_text())
    d.pop("pooling")  # a file written before pooling was recorded
    (tmp_path / "old.json").write_text(json.dumps(d))
    assert SizeModel.load(tmp_path / "old.json").pooling == "image"
    train_set = [synthetic_sample((96, 96), n_cells=8, radius=(6, 10), seed=i) for i in range(2)]
    img_pooled = fit_size_model(model, [s["image"] for s in train_set],
                                [median_diameter(s["label"]) for s in train_set], per_image=2, side=64, pooling="image")
    assert img_pooled.pooling == "image" and SizeModel.load(img_pooled.save(tmp_path / "img.json")).pooling == "image"
    seen = []
    features = sm_mod.size_features
    monkeypatch.setattr(sm_mod, "size_features", lambda *a, **k: seen.append(k["pooling"]) or features(*a, **k))
    model.scale = 1.0
    estimate_diameter_learned(model, img_pooled, train_set[0]["image"], passes=2)
    estimate_diameter_learned(model, sm, train_set[0]["image"], passes=1)
    assert seen == ["image", "image", "detections"]  # each regressor's own pooling


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

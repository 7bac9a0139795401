"""benchmarks/size_probe.py: contrast factors reach the features, quadrant rows, the rank correlation."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from benchmarks import size_probe


def test_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 5, 20).astype(float), rng.normal(size=20)
    assert size_probe.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic)
    assert size_probe.spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)


def test_estimate_passes_the_contrast_to_the_features(monkeypatch):
    import cks.size_model as sm

    seen = []

    def recorder(model, image, scale, box=None, contrast=1.0, brightness=0.0, pooling="image"):
        seen.append(contrast)
        return np.zeros(3)

    monkeypatch.setattr(sm, "size_features", recorder)
    monkeypatch.setattr(sm, "PREDICT_SIDE", 64)
    # a regressor that always answers "cells are 2x the target": each pass halves the scale
    size_model = type("S", (), {"target": 32.0, "scale_range": (), "u_range": 3.0,
                                "log2_factor": lambda self, f: 1.0})()
    model = type("M", (), {"size_model": size_model, "scale": 1.0})()
    from cks.predict import REGRESSOR_PASSES

    got = size_probe.estimate(model, np.zeros((1, 8, 8)), contrast=1.5)
    assert got == pytest.approx(32.0 * 2.0 ** REGRESSOR_PASSES)  # target / last scale, scale halved each pass
    assert seen == [1.5] * REGRESSOR_PASSES  # the contrast reaches every pass's features
    assert sm.pass_scales(model, size_model, np.zeros((8, 8)), passes=2) == [0.5, 0.25]
    assert seen[-2:] == [1.0, 1.0]  # default: the image as predict sees it


def _field():
    """A 40 x 40 field: top-left quadrant 6 cells of 4 x 4 px, top-right 5 cells of 2 x 2, the others 1 cell."""
    lab = np.zeros((40, 40), np.int32)
    k = 1
    for i in range(6):
        lab[1 + 3 * (i // 3) * 2:5 + 3 * (i // 3) * 2, 1 + 6 * (i % 3):5 + 6 * (i % 3)] = k
        k += 1
    for i in range(5):
        lab[2:4, 21 + 3 * i:23 + 3 * i] = k
        k += 1
    lab[25:30, 5:10], lab[25:30, 25:30] = k, k + 1
    return {"name": "f", "image": lab[None].astype(np.float32), "label": lab}


def test_probe_rows_and_summary(monkeypatch, tmp_path):
    import cks.checkpoint
    import cks.data.spec
    from cks.size import median_diameter

    model = type("M", (), {"size_model": object()})()
    monkeypatch.setattr(cks.checkpoint, "load_model", lambda run_dir: model)
    monkeypatch.setattr(cks.data.spec, "load_dataset", lambda spec, scale, points: [_field()])
    # an estimate that reads the mean image value as size: contrast 2 doubles it; quadrants differ by content
    monkeypatch.setattr(size_probe, "estimate", lambda m, img, contrast=1.0: float(np.asarray(img).mean() + 1) * contrast)
    out = size_probe.probe(tmp_path, "spec", [1.0, 2.0])
    f = _field()
    true = median_diameter(f["label"])
    (row,) = out["fields"]
    assert row["ratio_at_contrast"]["2"] == pytest.approx(2 * row["ratio_at_contrast"]["1"], rel=1e-2)
    assert row["ratio_at_contrast"]["1"] == pytest.approx((f["image"].mean() + 1) / true, rel=1e-2)
    # only the two quadrants with >= 5 cells are measured, with their own foreground and true size
    assert [(q["y"], q["x"], q["cells"]) for q in out["quadrants"]] == [(0, 0, 6), (0, 20, 5)]
    assert out["quadrants"][0]["foreground"] == pytest.approx(6 * 16 / 400, abs=1e-3)
    assert out["quadrants"][1]["true"] == pytest.approx(median_diameter(f["label"][:20, 20:]), abs=0.01)
    assert out["summary"]["quadrants"] == 2 and out["summary"]["spearman_foreground_vs_ratio"] is None
    ratios = [q["ratio"] for q in out["quadrants"]]
    assert out["summary"]["quadrant_median_abs_log2"] == pytest.approx(np.median(np.abs(np.log2(ratios))), abs=1e-3)
    assert out["summary"]["fields_within_20pct"] == int(abs(row["ratio_at_contrast"]["1"] - 1) <= 0.2)
    # a regressor given to the probe replaces the run's saved one
    mine = object()
    monkeypatch.setattr(size_probe, "estimate", lambda m, img, contrast=1.0: 1.0 if m.size_model is mine else 9.0)
    assert size_probe.probe(tmp_path, "spec", [1.0], size_model=mine)["fields"][0]["ratio_at_contrast"]["1"] == \
        pytest.approx(1.0 / true, abs=1e-3)


def test_fitted_refits_as_training_did(monkeypatch, tmp_path):
    """--pooling re-fits with the protocol's training data and the run's labels (masks for a supervised run)."""
    import json

    import cks.size_model
    from benchmarks.protocol import PROTOCOLS

    calls = []
    monkeypatch.setattr(cks.size_model, "refit", lambda run, data, labels, pooling: calls.append(
        (run.name, data, labels, pooling)) or type("S", (), {"cv_log2_error": 0.1})())
    for name, mode in (("cks", "cks"), ("sup", "supervised")):
        (tmp_path / "usiigaci_points_v2" / name).mkdir(parents=True)
        (tmp_path / "usiigaci_points_v2" / name / "config.json").write_text(json.dumps({"loss": {"mode": mode}}))
    assert size_probe.fitted(tmp_path, "usiigaci_points_v2", "cks", "saved") is None and calls == []
    size_probe.fitted(tmp_path, "usiigaci_points_v2", "cks", "detections")
    size_probe.fitted(tmp_path, "usiigaci_points_v2", "sup", "image")
    train = PROTOCOLS["usiigaci_points_v2"]["train"]
    assert calls == [("cks", train, "points", "detections"), ("sup", train, "masks", "image")]

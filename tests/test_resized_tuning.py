"""benchmarks/resized_tuning.py: one scored row per (factor, size source), fields loaded at each factor."""
import json

import numpy as np
import pytest

from benchmarks import resized_tuning


@pytest.fixture
def bench():
    return resized_tuning


def _field(scale):
    """Two square cells of side 20 px at 1x, resized by ``scale`` (nearest, like the masks of load_dataset)."""
    n = round(80 * scale)
    lab = np.zeros((n, n), np.int32)
    s = round(20 * scale)
    lab[5:5 + s, 5:5 + s], lab[n - 5 - s:n - 5, n - 5 - s:n - 5] = 1, 2
    return {"name": "f", "image": lab[None].astype(np.float32), "label": lab}


def test_rows_per_factor_and_size_source(bench, monkeypatch, tmp_path):
    import cks.checkpoint
    import cks.data.spec
    import cks.evaluation
    from cks.metrics import evaluate
    from cks.size import median_diameter

    seen = []
    monkeypatch.setattr(cks.checkpoint, "load_model", lambda run_dir: "model")
    monkeypatch.setattr(cks.data.spec, "load_dataset", lambda spec, scale, points: seen.append(scale) or [_field(scale)])

    def fake_evaluate(model, samples, size, score_threshold):  # an oracle that keeps one of the two cells
        lab = samples[0]["label"]
        pred = np.where(lab == 1, 1, 0)
        r = evaluate([pred], [{1: 0.9}], [lab])
        est = median_diameter(lab) * (1.25 if size == "auto" else 1.0)
        return {**r, "count_ratio": r["n_pred"] / r["n_gt"],
                "sizes": [{"diameter": est, "true_diameter": median_diameter(lab)}]}

    monkeypatch.setattr(cks.evaluation, "evaluate_model", fake_evaluate)
    rows = bench.score_run(tmp_path / "run", "spec", [0.5, 1.0], ["auto", "true"])
    assert seen == [0.5, 1.0]
    assert [(r["resized"], r["size"]) for r in rows] == [(0.5, "auto"), (0.5, "true"), (1.0, "auto"), (1.0, "true")]
    for r in rows:  # one cell found of two, both found cells exact: AP50 = precision 1 x recall 1/2
        assert r["ap50"] == pytest.approx(0.5) and r["count_ratio"] == 0.5 and r["n_gt"] == 2
        assert r["size_error"] == [0.25 if r["size"] == "auto" else 0.0]

    out = tmp_path / "res.json"
    monkeypatch.setattr(bench, "score_run", lambda run_dir, spec, f, s, t: [{"resized": f[0], "size": s[0]}])
    bench.main(["--protocol", "usiigaci_ablation_v2", "--models", "a", "--runs-dir", str(tmp_path), "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["runs"] == {"a": [{"resized": 0.5, "size": "auto"}]} and "report" not in res["spec"]
    assert str(tmp_path) not in res["command"]
    with pytest.raises(SystemExit):
        bench.main(["--protocol", "usiigaci_ablation_v2", "--models", "a", "--rescale", "0"])


def test_true_times_k_reaches_evaluate_model_and_bad_sources_are_refused(bench, monkeypatch, tmp_path):
    import cks.checkpoint
    import cks.data.spec
    import cks.evaluation

    asked = []
    monkeypatch.setattr(cks.checkpoint, "load_model", lambda run_dir: "model")
    monkeypatch.setattr(cks.data.spec, "load_dataset", lambda spec, scale, points: [_field(scale)])

    def fake_evaluate(model, samples, size, score_threshold):
        asked.append(size)
        return {"ap50": 1.0, "ap75": 1.0, "dice": 1.0, "n_gt": 2, "n_pred": 2, "count_ratio": 1.0,
                "sizes": [{"diameter": 24.0, "true_diameter": 20.0}]}

    monkeypatch.setattr(cks.evaluation, "evaluate_model", fake_evaluate)
    rows = bench.score_run(tmp_path / "run", "spec", [1.0], ["true*1.2"])
    assert asked == ["true*1.2"] and rows[0]["size_error"] == [0.2]
    assert bench._size_source("true*0.8") == "true*0.8"
    for bad in ("true*0", "true*x", "guess"):
        with pytest.raises(Exception):
            bench._size_source(bad)

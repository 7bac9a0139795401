"""benchmarks/report_true_size.py: the report split at each run's own size estimate and at the true size, at the
threshold the protocol tuned; runs already in the file are kept."""
import json

import numpy as np
import pytest

from benchmarks import report_true_size


def _field():
    lab = np.zeros((80, 80), np.int32)
    lab[5:25, 5:25], lab[50:70, 50:70] = 1, 2
    return {"name": "f", "image": lab[None].astype(np.float32), "label": lab}


def _record(tmp_path, name, model, thr, nested=False):
    rec = {"model": model, "metrics": {"ap50": 0.1, "score_threshold": thr}}
    (tmp_path / name).write_text(json.dumps({"run": rec} if nested else rec))


def test_tuned_threshold_direct_nested_and_missing(tmp_path):
    from cks.errors import CksConfigError

    _record(tmp_path, "a_seed0.json", "a_seed0", 0.65)
    _record(tmp_path, "oracle.json", "oracle_seed0", 0.6, nested=True)
    (tmp_path / "broken.json").write_text("{not json")
    assert report_true_size.tuned_threshold(tmp_path, "a_seed0") == 0.65
    assert report_true_size.tuned_threshold(tmp_path, "oracle_seed0") == 0.6
    with pytest.raises(CksConfigError, match="protocol.py"):
        report_true_size.tuned_threshold(tmp_path, "never_scored")


def test_score_report_scores_both_sizes_at_the_given_threshold(monkeypatch, tmp_path):
    import cks.checkpoint
    import cks.data.spec
    import cks.evaluation
    from cks.metrics import evaluate
    from cks.size import median_diameter

    asked = []
    monkeypatch.setattr(cks.checkpoint, "load_model", lambda run_dir: "model")
    monkeypatch.setattr(cks.data.spec, "load_dataset", lambda spec, scale, points: asked.append((spec, scale)) or [_field()])

    def fake_evaluate(model, samples, size, score_threshold):  # keeps one of the two cells, exactly
        asked.append((size, score_threshold))
        lab = samples[0]["label"]
        r = evaluate([np.where(lab == 1, 1, 0)], [{1: 0.9}], [lab])
        est = median_diameter(lab) * (1.25 if size == "auto" else 1.0)
        return {**r, "count_ratio": r["n_pred"] / r["n_gt"],
                "sizes": [{"diameter": est, "true_diameter": median_diameter(lab)}]}

    monkeypatch.setattr(cks.evaluation, "evaluate_model", fake_evaluate)
    res = report_true_size.score_report(tmp_path / "run", "set:val", 0.65)
    assert asked == [("set:val", 1.0), ("auto", 0.65), ("true", 0.65)]
    assert res["score_threshold"] == 0.65
    for size, err in (("auto", 0.25), ("true", 0.0)):  # AP50 = precision 1 x recall 1/2
        assert res[size]["ap50"] == pytest.approx(0.5) and res[size]["count_ratio"] == 0.5
        assert res[size]["size_error"] == [err]


def test_main_keeps_older_runs_and_writes_no_machine_path(monkeypatch, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    _record(results, "new_seed0.json", "new_seed0", 0.55)
    out = results / "report_true_size.json"
    out.write_text(json.dumps({"runs": {"old_seed0": {"score_threshold": 0.7, "true": {"ap50": 0.3}}}}))
    seen = []
    monkeypatch.setattr(report_true_size, "score_report",
                        lambda run_dir, spec, thr: seen.append((run_dir.name, spec, thr)) or {"score_threshold": thr})
    report_true_size.main(["--protocol", "usiigaci_points_v2", "--models", "new_seed0", "--runs-dir", str(tmp_path),
                           "--results", str(results)])
    res = json.loads(out.read_text())
    assert seen == [("new_seed0", "usiigaci_nih3t3_phase/val:set46-50", 0.55)]
    assert res["runs"]["old_seed0"] == {"score_threshold": 0.7, "true": {"ap50": 0.3}}
    assert res["runs"]["new_seed0"]["score_threshold"] == 0.55 and "git_commit" in res["runs"]["new_seed0"]
    assert "REPORT" in res["what"] and res["spec"] == "usiigaci_nih3t3_phase/val:set46-50"
    assert str(tmp_path) not in json.dumps(res)
    # a run without a tuned threshold stops the benchmark before anything is scored
    from cks.errors import CksConfigError

    with pytest.raises(CksConfigError):
        report_true_size.main(["--protocol", "usiigaci_points_v2", "--models", "new_seed0", "unscored",
                               "--runs-dir", str(tmp_path), "--results", str(results)])
    assert len(seen) == 1

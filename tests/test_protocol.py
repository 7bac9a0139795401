"""benchmarks/protocol.py: the protocol table is consistent and its scoring helpers work (no training here)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def protocol():
    spec = importlib.util.spec_from_file_location("protocol", ROOT / "benchmarks" / "protocol.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_every_protocol_names_its_splits(protocol):
    for name, p in protocol.PROTOCOLS.items():
        assert {"train", "tune", "report", "labels", "steps", "note"} <= set(p), name
        assert p["tune"] != p["report"], f"{name}: tuning and report splits must differ"


def test_size_groups_pool_fields_by_cell_size(protocol):
    def field(radius, n=4):  # n square cells of side 2 * radius
        lab = np.zeros((300, 300), np.int32)
        for i in range(n):
            lab[10 + 70 * i:10 + 70 * i + 2 * radius, 10:10 + 2 * radius] = i + 1
        return lab

    samples = [{"name": "small", "label": field(10)}, {"name": "large", "label": field(30)}]
    labels = [s["label"] for s in samples]
    scores = [{i: 0.9 for i in range(1, 5)} for _ in samples]
    groups = protocol.size_groups(labels, scores, samples)
    assert [g["fields"] for g in groups] == [["small"], ["large"]]  # 22.6 px and 67.7 px at 1x: 11.3 and 33.9 px at 0.5x
    assert all(g["ap50"] == 1.0 and g["n_gt"] == 4 for g in groups)


def test_eval_only_needs_a_trained_run(protocol, tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint"):
        protocol.main(["--protocol", "usiigaci_points_v2", "--model", "nothing", "--eval-only",
                       "--runs-dir", str(tmp_path)])


def test_cell_line_groups_score_each_line_apart(protocol):
    lab = np.zeros((60, 60), np.int32)
    lab[5:25, 5:25], lab[30:50, 30:50] = 1, 2
    half = lab.copy()
    half[30:50, 30:50] = 0  # the second image's prediction misses one of its two cells
    samples = [{"name": "a", "label": lab, "cell_type_name": "HeLa"},
               {"name": "b", "label": lab, "cell_type_name": "MCF10A"}]
    got = protocol.cell_line_groups([lab, half], [{1: 0.9, 2: 0.9}, {1: 0.9}], samples)
    assert set(got) == {"HeLa", "MCF10A"}
    assert got["HeLa"]["ap50"] == 1.0 and got["HeLa"]["n_pred"] == 2
    assert got["MCF10A"]["ap50"] == pytest.approx(0.5) and got["MCF10A"]["n_gt"] == 2 and got["MCF10A"]["n_pred"] == 1
    assert protocol.cell_line_groups([lab], [{1: 0.9, 2: 0.9}], samples[:1]) == {}  # one line: no grouping


def test_size_source_measures_sizes_at_the_points(tmp_path):
    """benchmarks/size_source.compare: per source AP50/Dice and each field's size error; 'points' is exactly
    cks.size.estimate_diameter at the field's points against the masks' median diameter."""
    import torch

    from benchmarks.size_source import compare
    from cks.config import get_preset
    from cks.data.synthetic import synthetic_sample
    from cks.models.principal import Principal
    from cks.points import centroids
    from cks.size import estimate_diameter, median_diameter

    torch.manual_seed(0)
    model = Principal(get_preset("base", size="test", overrides={"segmentor.window": 48})).eval()
    samples = []
    for seed in (1, 2):
        s = synthetic_sample((96, 112), n_cells=8, radius=(6, 9), seed=seed)
        samples.append({"name": f"f{seed}", "image": s["image"], "label": s["label"], "points": centroids(s["label"])[1]})
    got = compare(model, samples)
    assert set(got) == {"model", "points"}
    for r in got.values():
        assert 0.0 <= r["ap50"] <= 1.0 and 0.0 <= r["dice"] <= 1.0 and r["n_gt"] == sum(int(s["label"].max()) for s in samples)
        assert set(r["size_errors"]) == {"f1", "f2"}
    for s in samples:
        want = estimate_diameter(s["image"], s["points"]) / median_diameter(s["label"]) - 1
        assert got["points"]["size_errors"][s["name"]] == pytest.approx(want, abs=1e-3)
    errs = np.abs(list(got["points"]["size_errors"].values()))
    assert got["points"]["within_20pct"] == pytest.approx(np.mean(errs <= 0.2))


def test_predict_all_passes_the_size_method_on(protocol):
    """``--size-from refined`` reaches predict(size_from="refined"): each field's size source says so; the default
    is the model's own estimate (no refinement)."""
    import torch

    from cks.config import get_preset
    from cks.data.synthetic import synthetic_sample
    from cks.models.principal import Principal

    torch.manual_seed(0)
    model = Principal(get_preset("base", size="test", overrides={"segmentor.window": 48})).eval()
    assert model.cfg.size.normalize
    s = synthetic_sample((96, 112), n_cells=8, radius=(6, 9), seed=1)
    samples = [{"name": "f1", "image": s["image"], "label": s["label"]}]
    _, _, plain = protocol._predict_all(model, samples, 0.5)
    _, _, refined = protocol._predict_all(model, samples, 0.5, size_from="refined")
    assert "refined" not in plain[0]["source"]
    assert refined[0]["source"].endswith("refined at its detections)")


def test_run_note_states_the_runs_own_budget_seed_and_scale(protocol, tmp_path):
    """The recorded note says what the run did: its steps and seed, and a fixed scale where it turned
    normalisation off."""
    import json

    template = protocol.PROTOCOLS["deepcell_nuclei_v2"]["note"]
    assert "{steps}" in template and "{seed}" in template and protocol._SN_NOTE in template
    (tmp_path / "config.json").write_text(json.dumps({"train": {"steps": 4800, "seed": 1}, "size": {"normalize": True}}))
    note = protocol.run_note(template, tmp_path)
    assert "4,800 steps of one 256-px crop, seed 1" in note and "{" not in note
    assert "cell-size normalised" in note and "size.normalize=False" not in note
    (tmp_path / "config.json").write_text(json.dumps({"train": {"steps": 800, "seed": 0}, "size": {"normalize": False}}))
    note = protocol.run_note(template, tmp_path)
    assert "800 steps of one 256-px crop, seed 0" in note
    assert "cell-size normalised" not in note and "size.normalize=False" in note
    assert note.endswith(protocol._THRESHOLD_NOTE)  # what still holds at a fixed scale is kept
    for name, p in protocol.PROTOCOLS.items():  # every template is filled: no placeholder is left in any note
        assert "{" not in protocol.run_note(p["note"], tmp_path), name
        assert "1 seed" not in p["note"] and "800 steps" not in p["note"], name


def test_note_for_a_run_stopped_by_its_cpu_budget_says_how_far_it_got(protocol):
    template = protocol.PROTOCOLS["usiigaci_points_v2"]["note"]
    cfg = {"train": {"steps": 3600, "seed": 0}, "size": {"normalize": True}}
    assert "2,667 of 3,600 planned steps of one 256-px crop, seed 0" in protocol.note_for_config(template, cfg, 2667)
    assert "3,600 steps of one 256-px crop, seed 0" in protocol.note_for_config(template, cfg, 3600)
    assert "1,000 steps" in protocol.note_for_config(template, {}, 1000)
    assert "seed ?" in protocol.note_for_config(template, {})
    assert "median equivalent diameter is 32 px" in protocol.note_for_config(template, cfg)  # the default size
    big = {**cfg, "size": {"normalize": True, "diameter": 48.0}}
    assert "median equivalent diameter is 48 px" in protocol.note_for_config(template, big)
    assert "{diameter}" not in protocol.note_for_config(template, big)
    pico = {**cfg, "backbone": {"name": "convnext_pico"}}  # a run on another backbone names it, not atto
    assert "convnext_pico from random init" in protocol.note_for_config(template, pico)
    assert "convnext_atto" not in protocol.note_for_config(template, pico)
    assert "convnext_atto from random init" in protocol.note_for_config(template, cfg)

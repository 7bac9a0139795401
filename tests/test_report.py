"""cks.paper (the paper's tables) and cks.report (reading results with provenance, Markdown tables)."""
import json

import pytest

from cks.config import PRESETS, preset_diff
from cks.paper import TABLES, paper_table
from cks.report import (NOT_MEASURED, ROW_PRESETS, comparison_markdown, diff_markdown,
                        find_result, load_results, metrics_from_history, paper_markdown, provenance_text,
                        results_markdown, smoke_markdown, table_protocols, table_records)


def test_paper_tables_complete_and_in_range():
    assert list(TABLES) == ["I", "II", "III", "IV", "V", "VI", "VII", "VIII"]
    for key, t in TABLES.items():
        assert t["rows"], key
        for row, vals in t["rows"].items():
            assert list(vals) == t["columns"], (key, row)
            for col, v in vals.items():
                if v is not None and col != "Speed (fps)":
                    assert 0.0 <= v <= 1.0, (key, row, col)
    # spot checks against the paper's text
    assert TABLES["II"]["rows"]["multi-scale detection, encoding net"] == {"Dice": 0.824, "AP50": 0.806, "mAP": 0.450}
    assert TABLES["VIII"]["rows"]["CKS-1"]["AP50"] == 0.887
    assert TABLES["III"]["rows"]["ALL"]["mAP CKS-2"] == 0.361
    assert TABLES["I"]["rows"]["Cellpose"]["AP50"] is None
    # the paper's base row appears in Tables III, V, VI and VII with the same numbers
    assert TABLES["V"]["rows"]["principal linear, collaborator linear"]["AP50"] == TABLES["III"]["rows"]["ALL"][
        "AP50 CKS-2"] == TABLES["VI"]["rows"]["per-cell-line d"]["AP50"] == TABLES["VII"]["rows"]["a1 / b1"]["AP50"]


def test_paper_table_is_a_copy_and_keys():
    t = paper_table("table ii")
    t["rows"].clear()
    assert TABLES["II"]["rows"]
    with pytest.raises(KeyError, match="VIII"):
        paper_table("IX")


def test_row_presets_exist_and_cover_paper_rows():
    for key, mapping in ROW_PRESETS.items():
        assert set(mapping) == set(TABLES[key]["rows"]), key
        for preset in mapping.values():
            assert preset in PRESETS
            preset_diff(preset)


def _write(path, rec):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def _rec(protocol, model, **metrics):
    """A result in the format of benchmarks/record.py."""
    return {"protocol": protocol, "model": model, "metrics": metrics, "git_commit": "0123456789abcdef",
            "hardware": {"cpu": "cpu-x", "cores": 2, "gpu": None}, "steps": 7, "config": {"train": {"steps": 9}},
            "cpu_minutes": 12.4, "wall_s": 90.0, "reported_on": "set/val"}


def test_load_results_normalises_and_skips(tmp_path):
    _write(tmp_path / "usiigaci_points" / "cks_base.json", _rec("usiigaci_points", "cks_base", ap50=0.5, Dice=0.25))
    _write(tmp_path / "deepcell_points" / "table6_no_prior.json", {"metrics": {"ap50": 0.125}})
    _write(tmp_path / "usiigaci_points" / "eval.json", {"ap50": 0.9})  # not a result: no metrics object
    (tmp_path / "broken.json").write_text("{")
    recs = load_results(tmp_path)
    assert [(r["protocol"], r["model"]) for r in recs] == [("deepcell_points", "table6_no_prior"),
                                                            ("usiigaci_points", "cks_base")]
    assert recs[1]["metrics"] == {"ap50": 0.5, "dice": 0.25} and recs[1]["path"].endswith("cks_base.json")
    assert load_results(tmp_path / "missing") == []


def test_find_result_aliases_and_protocol_preference():
    recs = [_rec("deepcell_points", "base", ap50=0.1), _rec("usiigaci_points", "cks_base", ap50=0.2),
            _rec("usiigaci_points", "table7_a2_b1", ap50=0.3)]
    assert find_result(recs, "base", ("usiigaci_points",))["metrics"]["ap50"] == 0.2
    assert find_result(recs, "base")["metrics"]["ap50"] == 0.1  # no preference: the first
    assert find_result(recs, "table7_a3_b2") is None
    assert [r["model"] for r in table_records(recs + [_rec("deepcell_nuclei", "cks", ap50=0.4)], "VIII")] == ["cks"]
    assert table_records(recs + [_rec("usiigaci_points", "supervised")], "I")[0]["model"] == "supervised"
    with pytest.raises(KeyError):
        table_records(recs, "II")


def test_row_results_stand_in_only_in_their_protocol(monkeypatch):
    import cks.report as report
    monkeypatch.setattr(report, "ROW_RESULTS", {"usiigaci_ablation_v2": {"base": "new_base_run"}})
    recs = [_rec("usiigaci_ablation_v2", "base", ap50=0.1), _rec("usiigaci_ablation_v2", "new_base_run", ap50=0.2),
            _rec("usiigaci_ablation", "base", ap50=0.3), _rec("usiigaci_ablation_v2", "table5_entropy_principal"),
            _rec("usiigaci_ablation_v2", "table5_entropy_collaborator")]
    assert find_result(recs, "base", ("usiigaci_ablation_v2",))["metrics"]["ap50"] == 0.2
    assert find_result(recs, "base", ("usiigaci_ablation",))["metrics"]["ap50"] == 0.3
    assert table_protocols(recs, "V")[0] == "usiigaci_ablation_v2"
    # without the stand-in's file the v2 base row falls back to the older result of that protocol
    assert find_result(recs[:1] + recs[2:], "base", ("usiigaci_ablation_v2",))["metrics"]["ap50"] == 0.1


def test_cpu_minutes_range_skips_missing_and_unrecorded():
    from cks.report import cpu_minutes_range

    recs = [_rec("p", "a"), _rec("p", "b"), _rec("p", "c"), _rec("q", "a")]
    recs[1]["cpu_minutes"], recs[3]["cpu_minutes"] = 30.5, 99.0
    del recs[2]["cpu_minutes"]
    assert cpu_minutes_range(recs, [("p", "a"), ("p", "b"), ("p", "c"), ("p", "gone")]) == (12.4, 30.5, 2)
    assert cpu_minutes_range(recs, [("q", "a")]) == (99.0, 99.0, 1)  # the named protocol's record, not p's
    assert cpu_minutes_range(recs, [("r", "b")]) == (30.5, 30.5, 1)  # protocol r has no b: find_result's fallback
    assert cpu_minutes_range(recs, [("p", "c"), ("p", "gone")]) is None
    assert cpu_minutes_range(recs, []) is None


def test_seed_range_below_an_ablation_table(monkeypatch):
    import cks.report as report
    from cks.report import seed_range

    monkeypatch.setattr(report, "ROW_RESULTS", {"p2": {"base": "b0"}})
    monkeypatch.setattr(report, "ROW_SEEDS", {"p2": {"base": ("b0", "b1", "b2")}})
    recs = [_rec("p2", "b0", ap50=0.30, dice=0.5), _rec("p2", "b1", ap50=0.10, dice=0.6),
            _rec("p2", "b2", ap50=0.20, dice=0.7), _rec("p1", "b1", ap50=0.9, dice=0.9)]
    assert seed_range(recs, "p2", ("b0", "b1", "b2")) == (0.10, 0.30, 3)
    assert seed_range(recs, "p2", ("b0",)) is None  # one seed is no range
    md = report.seed_range_markdown(recs, "VII", ("p2",), ("Dice", "AP50"))
    line = next(x for x in md.splitlines() if x.startswith("| a1 / b1 |"))
    assert "b0, b1, b2" in line and "0.300 / 0.100 / 0.200" in line  # per seed, in ROW_SEEDS order
    assert "0.100 to 0.300" in line and "0.500 to 0.700" in line and "0.900" not in md
    assert report.seed_range_markdown(recs, "VII", ("p1",)) == ""  # the row's result is not in a seeded protocol
    rows = recs + [_rec("p2", "table7_a2_b1", ap50=0.05), _rec("p2", "table7_a3_b1", ap50=0.2),
                   _rec("p2", "table7_a1_b2", ap50=0.31), _rec("p1", "table7_a3_b2", ap50=0.0)]
    md = report.seed_range_markdown(rows, "VII", ("p2",))
    assert 'AP50 range of "a1 / b1" (0.100 to 0.300)' in md
    assert "below: table7_a2_b1;" in md and "inside or overlapping: table7_a3_b1;" in md
    assert "above: table7_a1_b2." in md and "table7_a3_b2" not in md  # another protocol: not compared
    # a seeded row is placed by its own range: 0.31 alone is above, but with a second seed at 0.25 it overlaps
    monkeypatch.setattr(report, "ROW_SEEDS", {"p2": {"base": ("b0", "b1", "b2"),
                                                     "table7_a1_b2": ("table7_a1_b2", "a1b2_s1")}})
    md = report.seed_range_markdown(rows + [_rec("p2", "a1b2_s1", ap50=0.25)], "VII", ("p2",))
    assert "inside or overlapping: table7_a3_b1, table7_a1_b2." in md and "above" not in md
    assert sum(x.startswith("| a") for x in md.splitlines()) == 2  # two seeded rows in the small table
    monkeypatch.setattr(report, "ROW_SEEDS", {"p2": {"base": ("b0", "b1", "b2")}})
    monkeypatch.setattr(report, "TABLE_PROTOCOLS", {**report.TABLE_PROTOCOLS, "VII": ("p2",)})
    assert "more than one seed" in comparison_markdown("VII", recs)


def test_row_results_trained_the_current_preset():
    """A stand-in must have trained exactly what the preset is now (apart from the protocol's train.* budget
    overrides and the backbone/width overrides every short protocol sets)."""
    import dataclasses

    from cks.config import Config, get_preset
    from cks.report import ROW_RESULTS, default_results_dir

    checked = 0
    for proto, rows in ROW_RESULTS.items():
        for preset, model in rows.items():
            path = default_results_dir() / proto / f"{model}.json"
            if not path.exists():
                continue
            # a key added after the run is read with its default, as Config.from_dict reads any old config
            got = json.loads(json.dumps(dataclasses.asdict(Config.from_dict(json.loads(path.read_text())["config"]))))
            want = json.loads(json.dumps(dataclasses.asdict(get_preset(preset))))
            for section in ("loss", "collaborator", "size"):
                assert got[section] == want[section], (proto, model, section)
            checked += 1
    assert checked == sum(len(r) for r in ROW_RESULTS.values())
    from cks.report import ROW_SEEDS

    for proto, rows in ROW_SEEDS.items():  # the seeds of a row trained the same configuration as its stand-in
        for preset, models in rows.items():
            assert models[0] == ROW_RESULTS.get(proto, {}).get(preset, preset)
            cfgs = [dataclasses.asdict(Config.from_dict(json.loads((default_results_dir() / proto / f"{m}.json")
                                                                   .read_text())["config"])) for m in models]
            for c in cfgs[1:]:
                assert c["loss"] == cfgs[0]["loss"] and c["collaborator"] == cfgs[0]["collaborator"], (proto, preset)


def test_comparison_says_not_measured_and_never_invents():
    md = comparison_markdown("II", [_rec("usiigaci_masks", "table2_full", dice=0.123, ap50=0.456, map=0.0789)])
    table, fold = md.split("<details>")
    lines = table.strip().splitlines()
    assert len(lines) == 2 + len(TABLES["II"]["rows"])
    full = next(line for line in lines if "table2_full" in line)
    assert all(x in full for x in ("0.123", "0.456", "0.079", "usiigaci_masks"))
    prov = next(line for line in fold.splitlines() if "table2_full" in line)  # provenance: folded below
    assert all(x in prov for x in ("commit 0123456", "7 steps of 9", "12 CPU-min", "1.5 min wall", "cpu-x, 2 cores"))
    single = next(line for line in lines if "table2_single_scale" in line)
    assert NOT_MEASURED in single and "0.793" in single  # the paper's value; ours missing
    assert results_markdown([]) == f"*{NOT_MEASURED}*"
    assert "set/val" in results_markdown([_rec("p", "m", dice=0.5)])
    assert "Paper, Table VIII" in paper_markdown("VIII")


def test_markdown_helpers():
    md = smoke_markdown({"v": {"steps": 3, "dice": 0.1}}, columns=("steps", "dice", "map"))
    assert md.splitlines() == ["| | steps | dice (smoke run) | map (smoke run) |", "|---|---|---|---|",
                               "| v | 3 | 0.100 | - |"]
    assert provenance_text(None) == NOT_MEASURED
    assert provenance_text({"hardware": {"gpu": "H100"}}) == "H100"
    assert provenance_text({}) == "no provenance recorded"
    assert "(none: the paper's base)" in diff_markdown({"base": {}})
    assert "`loss.prior_scale` = 0.0" in diff_markdown({"p": preset_diff("table6_no_prior")})


def test_metrics_from_history():
    hist = [{"step": 5, "total": 1.0}, {"step": 10, "val_ap50": 0.5, "val_dice": 0.6, "val_map": 0.2, "val_ap75": 0.1},
            {"step": 12, "total": 0.9}]
    assert metrics_from_history(hist) == {"dice": 0.6, "ap50": 0.5, "ap75": 0.1, "map": 0.2}
    assert metrics_from_history([{"step": 1}]) == {}


def test_intervals_and_notes_are_shown_next_to_the_number():
    from cks.report import metric_text

    rec = _rec("usiigaci_points", "cks_base", ap50=0.5)
    assert metric_text(rec, "ap50") == 0.5  # no interval recorded: the bare value
    rec["metrics"]["ci95"] = {"ap50": [0.25, 0.75]}
    rec["note"] = "16 images instead of 3,253"
    assert metric_text(rec, "ap50") == "0.500 [0.250, 0.750]"
    assert metric_text(None, "ap50") == NOT_MEASURED
    md = results_markdown([rec], notes=True)
    assert "0.500 [0.250, 0.750]" in md and "16 images instead of 3,253" in md
    assert "0.500 [0.250, 0.750]" in comparison_markdown("V", [{**rec, "model": "base"}])


def test_notes_once_per_protocol_and_provenance_folded():
    from cks.report import notes_markdown
    from cks.viz import standing_figure

    a, b = _rec("usiigaci_points", "cks_base", ap50=0.5), _rec("usiigaci_points", "sup", ap50=0.7)
    a["note"] = "16 images; convnext_atto; seed 0"
    b["note"] = "16 images; convnext_atto; seed 1, masks"
    md = notes_markdown([a, b])
    assert md.count("16 images") == 1 and "seed 0" in md and "seed 1, masks" in md
    assert "L_PW" not in md  # neither result's configuration has it
    b["config"] = {"loss": {"pairwise_weight": 1.0}}
    assert "L_PW" in notes_markdown([a, b]) and "usiigaci_points / sup (1)" in notes_markdown([a, b])
    assert "cks_base" not in notes_markdown([a, b]).split("L_PW")[1]
    assert "prior_shape" not in notes_markdown([a, b])  # both draw the paper's disk
    a["config"] = {"loss": {"prior_shape": "geodesic"}}
    geo = notes_markdown([a, b]).split("prior_shape=geodesic")[1]
    assert "usiigaci_points / cks_base" in geo and "/ sup" not in geo
    table = results_markdown([a, b])
    assert "<details>" in table and table.index("<details>") > table.index("| usiigaci_points / sup")
    assert "provenance" not in table.split("<details>")[0]  # no provenance column in the table itself
    fig = standing_figure([a, b])
    assert fig is not None and len(fig.axes) == 1 and fig.axes[0].get_title(loc="left") == "usiigaci_points"
    assert standing_figure([]) is None
    # the paper's LIVECell values (Table III, ALL) are dashed lines named in the legend
    from cks.paper import TABLES

    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() == "--"]
    assert sorted(float(ln.get_xdata()[0]) for ln in lines) == sorted(
        [TABLES["III"]["rows"]["ALL"]["AP50 CKS-1"], TABLES["III"]["rows"]["ALL"]["AP50 Supervised"]])
    assert all("other data" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    assert not [ln for ln in standing_figure([a, b], paper=False).axes[0].get_lines() if ln.get_linestyle() == "--"]


def test_table_protocols_prefer_a_complete_protocol():
    """A partly run v2 ablation does not mix into a table the v1 protocol answers in full; once complete, it leads."""
    rows = ["table5_entropy_principal", "table5_entropy_collaborator", "base"]
    v1 = [_rec("usiigaci_ablation", m, ap50=0.123) for m in rows]
    part = v1 + [_rec("usiigaci_ablation_v2", "base", ap50=0.987)]
    assert table_protocols(part, "V")[0] == "usiigaci_ablation"
    assert "0.987" not in comparison_markdown("V", part).split("<details>")[0]
    full = part + [_rec("usiigaci_ablation_v2", m, ap50=0.987) for m in rows[:2]]
    assert table_protocols(full, "V")[0] == "usiigaci_ablation_v2"
    table = comparison_markdown("V", full).split("<details>")[0]
    assert "usiigaci_ablation_v2" in table and "0.123" not in table


def test_notes_share_clauses_even_when_a_middle_clause_differs():
    """A note is "; "-separated clauses: each run's budget clause differs in the middle of otherwise equal notes,
    and the shared text after it is still said once, not repeated for every run."""
    from cks.report import notes_markdown

    a, b = _rec("deepcell_nuclei_v2", "r0", ap50=0.5), _rec("deepcell_nuclei_v2", "r1", ap50=0.6)
    a["note"] = "DeepCell phase; convnext_atto, 800 steps, seed 0; cell-size normalised; threshold tuned; why r0"
    b["note"] = "DeepCell phase; convnext_atto, 4,800 steps, seed 1; cell-size normalised; threshold tuned"
    md = notes_markdown([a, b])
    assert md.count("cell-size normalised") == 1 and md.count("threshold tuned") == 1 and md.count("DeepCell phase") == 1
    assert "DeepCell phase; cell-size normalised; threshold tuned" in md
    assert "*one run adds:* convnext_atto, 800 steps, seed 0; why r0" in md
    assert "*one run adds:* convnext_atto, 4,800 steps, seed 1" in md
    one = notes_markdown([a])  # a single note is said whole, nothing "added"
    assert "one run adds" not in one and "why r0" in one and "800 steps, seed 0" in one

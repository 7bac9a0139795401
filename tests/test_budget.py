"""cks.budget: ablation rows at the budget where the base works."""
import json

import pytest

from cks.budget import (BUDGET_PROTOCOL, budget_markdown, budget_records, budget_row, budget_rows, quoted_numbers,
                        row_of_model, tuning_ap50_end)
from cks.report import NOT_MEASURED, ROW_PRESETS, load_results, repo_root


def _rec(model, ap50, tune, protocol=BUDGET_PROTOCOL, steps=8000, ci=None, dice=0.6, count=0.9, thr=0.65):
    metrics = {"ap50": ap50, "dice": dice, "count_ratio": count, "score_threshold": thr}
    if ci:
        metrics["ci95"] = {"ap50": list(ci)}
    curve = [{"step": steps // 2, "val_ap50": 0.01}, {"step": steps, "val_ap50": tune}, {"step": steps, "loss": 1.0}]
    return {"protocol": protocol, "model": model, "steps": steps, "metrics": metrics, "validation_curve": curve}


def test_records_match_preset_budget_and_protocol_sorted_by_seed():
    recs = [_rec("base_8000_seed10", 0.3, 0.5), _rec("base_8000_seed2", 0.2, 0.4), _rec("base_8000_seed0", 0.1, 0.3),
            _rec("base_4000_seed0", 0.9, 0.9), _rec("base_8000_seed1", 0.9, 0.9, protocol="other"),
            _rec("base_8000_seed3", 0.9, 0.9, steps=6000),  # stopped before its budget: left out
            _rec("pairwise_base_8000_seed0", 0.9, 0.9), _rec("base_8000_seed0_extra", 0.9, 0.9)]
    got = [r["model"] for r in budget_records(recs, "base")]
    assert got == ["base_8000_seed0", "base_8000_seed2", "base_8000_seed10"]


def test_tuning_ap50_end_is_the_last_validation():
    assert tuning_ap50_end(_rec("m", 0.1, 0.42)) == pytest.approx(0.42)
    assert tuning_ap50_end({"validation_curve": [{"step": 5, "loss": 1}]}) is None
    assert tuning_ap50_end({}) is None


def test_row_means_and_lists():
    row = budget_row([_rec("a", 0.2, 0.5, ci=(0.1, 0.3), dice=0.6, count=0.8),
                      _rec("b", 0.4, 0.3, dice=0.7, count=1.0)])
    assert row["n"] == 2
    assert row["report"] == [0.2, 0.4] and row["tune"] == [0.5, 0.3]
    assert row["report_mean"] == pytest.approx(0.3) and row["tune_mean"] == pytest.approx(0.4)
    assert row["dice_mean"] == pytest.approx(0.65) and row["count_mean"] == pytest.approx(0.9)
    assert row["ci"] == [(0.1, 0.3), None]
    assert row["curves"][0] == [(4000, 0.01), (8000, 0.5)]  # the loss-only row has no AP50
    empty = budget_row([])
    assert empty["n"] == 0 and empty["report_mean"] is None
    # what the chapters quote: means, and the curve at a step averaged over the seeds validated there (0.0 if none)
    q = quoted_numbers(row, steps=(4000, 8000, 6000))
    assert q == {"tune": 0.4, "report": 0.3, "dice": 0.65, "count": 0.9, "at4k": 0.01, "at8k": 0.4, "at6k": 0.0}
    assert set(quoted_numbers(empty).values()) == {0.0}


def test_markdown_shows_difference_from_base_and_unmeasured_rows():
    recs = [_rec("base_8000_seed0", 0.25, 0.5, ci=(0.2, 0.3)), _rec("base_8000_seed1", 0.35, 0.5),
            _rec("table5_entropy_principal_8000_seed0", 0.10, 0.2, ci=(0.05, 0.15))]
    rows = budget_rows("V", recs)
    assert list(rows) == list(ROW_PRESETS["V"])
    assert rows["principal linear, collaborator entropy"]["n"] == 0
    md = budget_markdown("Table V", recs)
    lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ")}
    assert "-0.200" in lines["principal entropy, collaborator linear"]  # 0.10 - mean(0.25, 0.35)
    assert "0.100 [0.050, 0.150]" in lines["principal entropy, collaborator linear"]
    assert NOT_MEASURED in lines["principal linear, collaborator entropy"]
    assert "(mean 0.500)" in lines["principal linear, collaborator linear"]


def test_committed_base_row_matches_its_files():
    """The base row at 8,000 steps read through load_results equals the committed files read directly."""
    folder = repo_root() / "results" / BUDGET_PROTOCOL
    files = sorted(folder.glob("base_8000_seed*.json"))
    if not files:
        pytest.skip("no committed base_8000 results")
    direct = [json.loads(p.read_text())["metrics"]["ap50"] for p in files]
    row = budget_rows("VII", load_results())["a1 / b1"]
    assert row["n"] == len(files)
    assert row["report_mean"] == pytest.approx(sum(direct) / len(direct))


def test_row_of_model_inverts_the_run_names_of_every_row():
    """Every row's preset run at the budget maps back to that row; other budgets, tables and forms do not."""
    for key, rows in ROW_PRESETS.items():
        for name, preset in rows.items():
            assert row_of_model(key, f"{preset}_8000_seed0") == name
            assert row_of_model(key, f"{preset}_8000_seed12") == name
            assert row_of_model(key, f"{preset}_16000_seed0") is None  # another budget
            assert row_of_model(key, f"{preset}_8000") is None  # no seed
            assert row_of_model(key, preset) is None
    assert row_of_model("Table VII", "base_8000_seed1") == "a1 / b1"
    assert row_of_model("VII", "table5_entropy_principal_8000_seed0") is None  # a row of another table
    assert row_of_model("VII", "table7_a3_b1_8000_seed0") == "a3 / b1"
    assert row_of_model("VII", "xtable7_a3_b1_8000_seed0") is None


def test_extra_rows_and_rows_not_run_on_this_data():
    """Table VI has no base row: ours is added after the paper's rows and the other rows are compared with it; a
    row that does not apply to the data says why instead of "not yet measured"."""
    recs = [_rec("base_8000_seed0", 0.30, 0.5), _rec("table6_constant_d_8000_seed0", 0.20, 0.4, ci=(0.1, 0.3))]
    rows = budget_rows("VI", recs, extra={"ours (base)": "base"})
    assert list(rows) == [*ROW_PRESETS["VI"], "ours (base)"]
    assert rows["ours (base)"]["n"] == 1 and rows["ours (base)"]["report"] == [0.30]
    md = budget_markdown("VI", recs, extra={"ours (base)": "base"}, not_run={"per-cell-line d": "one cell line"})
    lines = {ln.split("|")[1].strip(): ln for ln in md.splitlines() if ln.startswith("| ")}
    assert "-0.100" in lines["constant d (20)"]  # 0.20 - 0.30, against the extra base row
    assert "not run: one cell line" in lines["per-cell-line d"] and NOT_MEASURED not in lines["per-cell-line d"]
    assert NOT_MEASURED in lines["not used (pi = 0)"]  # no reason given: still to be measured
    plain = budget_markdown("VI", recs)  # without the base row nothing is compared
    assert "ours (base)" not in plain and "-0.100" not in plain


def test_report_columns_of_one_seed():
    from cks.budget import report_columns

    row = {"report": [0.3, 0.2], "dice": [0.6, 0.5], "count": [0.9, 1.1], "threshold": [0.65, 0.7],
           "ci": [(0.21, 0.41), None]}
    assert report_columns(row) == {"report AP50": 0.3, "95 % CI": "[0.210, 0.410]", "report Dice": 0.6,
                                   "count ratio": 0.9, "score threshold": 0.65}
    assert report_columns(row, 1)["95 % CI"] == "[nan, nan]" and report_columns(row, 1)["report AP50"] == 0.2

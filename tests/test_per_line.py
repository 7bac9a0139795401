"""cks.per_line: a DeepCell run's scores per cell line, as table rows."""
import json
import math

from cks.per_line import LINE_COLUMNS, cell_line_rows
from cks.report import load_results, repo_root


def _rec(model, **metrics):
    base = {"ap50": 0.5, "dice": 0.7}
    return {"protocol": "deepcell_nuclei_v2", "model": model, "metrics": {**base, **metrics},
            "validation_curve": [{"step": 100, "val_ap50": 0.1}, {"step": 200}, {"step": 300, "val_ap50": 0.3}]}


def test_rows_fill_every_column_and_mark_what_is_missing():
    recs = [_rec("a", tune_cell_lines={"HeLa": {"ap50": 0.6}, "RAW264.7": {"ap50": 0.05}},
                 cell_lines={"MCF10A": {"ap50": 0.55}}, count_ratio=0.9)]
    rows = cell_line_rows(recs, {"row a": "a", "never run": "b"})
    assert list(rows) == ["row a"]  # a run not in the records has no row
    row = rows["row a"]
    assert list(row) == LINE_COLUMNS
    assert row["tune AP50 (end)"] == 0.3  # the last curve point that has an AP50
    assert row["tune AP50 HeLa"] == 0.6 and row["tune AP50 RAW264.7"] == 0.05 and math.isnan(row["tune AP50 NIH3T3"])
    assert row["test AP50 MCF10A"] == 0.55 and math.isnan(row["test AP50 HeLa"])
    assert row["test AP50"] == 0.5 and row["test Dice"] == 0.7 and row["count ratio"] == 0.9


def test_a_committed_run_reads_as_its_file_says():
    path = repo_root() / "results" / "deepcell_nuclei_v2" / "paper_constant_d_long_seed0.json"
    raw = json.loads(path.read_text())
    row = cell_line_rows(load_results(), {"x": "paper_constant_d_long_seed0"})["x"]
    assert row["tune AP50 RAW264.7"] == raw["metrics"]["tune_cell_lines"]["RAW264.7"]["ap50"]
    assert row["test AP50 HeLa"] == raw["metrics"]["cell_lines"]["HeLa"]["ap50"]
    assert row["tune AP50 (end)"] == raw["validation_curve"][-1]["val_ap50"]

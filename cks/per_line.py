"""Results per cell line: a DeepCell run's AP50 on each cell line of the tuning and test splits, as rows.

Why: on DeepCell 2016 the cell lines differ about 2x in size, and the size prior d of Eq. 4 (Table VI: one d for
every line, or one per line) acts on each line differently, so chapters 7c and 8 read every run per line. The
per-line scores are stored by ``benchmarks/protocol.py`` in each result's ``metrics``: ``tune_cell_lines`` (tuning
split) and ``cell_lines`` (report split), each ``{line: {"ap50", "dice", "n_gt", ...}}``; the pooled tuning AP50 is
the last point of the run's validation curve.

Nothing runs on import.
"""
from __future__ import annotations

from .report import find_result

__all__ = ["cell_line_rows", "LINE_COLUMNS", "TUNE_LINES", "TEST_LINES"]

#: the cell lines of the DeepCell tuning (validation fields of the lines trained on) and test splits
TUNE_LINES = ("HeLa", "NIH3T3", "RAW264.7")
TEST_LINES = ("HeLa", "MCF10A")
#: every column :func:`cell_line_rows` fills, in reading order
LINE_COLUMNS = (["tune AP50 (end)"] + [f"tune AP50 {k}" for k in TUNE_LINES] + ["test AP50", "test Dice"]
                + [f"test AP50 {k}" for k in TEST_LINES] + ["count ratio"])


def cell_line_rows(records: list[dict], runs: dict[str, str], protocol: str = "deepcell_nuclei_v2") -> dict[str, dict]:
    """``{row name: {column: value}}`` for the named results (``runs``: row name -> model name) of ``protocol``.

    Columns (:data:`LINE_COLUMNS`): the pooled tuning AP50 at the end of the validation curve, AP50 per tuning line,
    the report split's AP50 and Dice, AP50 per test line and the predicted / true cell count. A value the result
    does not hold is NaN (a table shows it as not measured); a run missing from ``records`` has no row.
    """
    nan = float("nan")
    rows = {}
    for name, model in runs.items():
        r = find_result(records, model, (protocol,))
        if r is None:
            continue
        curve = [c for c in r.get("validation_curve", []) if "val_ap50" in c]
        m = r["metrics"]
        lines, tune = m.get("cell_lines", {}), m.get("tune_cell_lines", {})
        rows[name] = {"tune AP50 (end)": curve[-1]["val_ap50"] if curve else nan,
                      **{f"tune AP50 {k}": tune.get(k, {}).get("ap50", nan) for k in TUNE_LINES},
                      "test AP50": m["ap50"], "test Dice": m["dice"],
                      **{f"test AP50 {k}": lines.get(k, {}).get("ap50", nan) for k in TEST_LINES},
                      "count ratio": m.get("count_ratio", nan)}
    return rows

"""Ablation rows at the step budget where the base works (issue #9, Build 5, third bullet).

The ablation protocols of the book (``usiigaci_ablation_v2``: 800 steps) compare rows whose base scores about
0.04 AP50 on the report split -- a base that has not yet learned anything to ablate. The base of the Usiigaci
point protocol learns between 4,000 and 8,000 steps (``results/usiigaci_points_v2/base_8000_seed*.json``:
tuning AP50 0.03 at step 4,000, 0.51 at step 8,000), so the ablation rows are re-run there, at the same
protocol, data, seeds and flags, only with the row's preset:

    python benchmarks/protocol.py --protocol usiigaci_points_v2 --model PRESET_8000_seedS --preset PRESET \\
        --seed S --steps 8000 --cpu-minutes 400 --set train.val_every=2000

(``--cpu-minutes`` is only a safety cap: 8,000 steps took 75-150 CPU-minutes on the CPUs of
sessions 18-27 of issue #9 and ~230 on one that needs 1.7 s per step, depending also on the row's
collaborator; a run the cap stops is resumed by running the same command with a larger cap.)

A row's results are the files ``results/<protocol>/<preset>_<steps>_seed<S>.json`` (the base row: ``base_...``).
:func:`budget_rows` collects, per row of a paper table (:data:`cks.report.ROW_PRESETS`), the tuning-split AP50
at the end of each seed's run (the only number that may choose between rows), the report-split AP50 with its
95 % bootstrap interval, Dice, predicted/true count and the tuned score threshold; :func:`budget_markdown`
renders them with a row we have not run shown as "not yet measured", never a number.
"""
from __future__ import annotations

import re

from .report import NOT_MEASURED, ROW_PRESETS, metrics_from_history, table_key
from .viz import markdown_table

#: The protocol and step budget of the re-run ablation rows.
BUDGET_PROTOCOL = "usiigaci_points_v2"
BUDGET_STEPS = 8000


def _run_name(preset: str, steps: int) -> re.Pattern:
    """The name of a budget run of ``preset``: ``<preset>_<steps>_seed<S>`` (the seed is group 1)."""
    return re.compile(rf"{re.escape(preset)}_{int(steps)}_seed(\d+)")


def budget_records(records: list[dict], preset: str, protocol: str = BUDGET_PROTOCOL,
                   steps: int = BUDGET_STEPS) -> list[dict]:
    """The results of ``preset`` run for ``steps`` steps in ``protocol`` (models ``<preset>_<steps>_seed<S>``),
    sorted by seed; a run that stopped before its budget (``steps`` recorded below ``steps``) is left out."""
    pattern = _run_name(preset, steps)
    hits = []
    for rec in records:
        m = pattern.fullmatch(str(rec.get("model", "")))
        if rec.get("protocol") != protocol or not m:
            continue
        if rec.get("steps") is not None and int(rec["steps"]) < int(steps):
            continue
        hits.append((int(m.group(1)), rec))
    return [rec for _, rec in sorted(hits, key=lambda t: t[0])]


def tuning_ap50_end(rec: dict) -> float | None:
    """The tuning-split AP50 of the last validation of a run (``validation_curve``), or None."""
    ap50 = metrics_from_history(rec.get("validation_curve") or []).get("ap50")
    return float(ap50) if ap50 is not None else None


def _mean(vals: list[float]) -> float | None:
    return sum(vals) / len(vals) if vals else None


def budget_row(recs: list[dict]) -> dict:
    """Per-seed and mean numbers of one row's runs: ``n``, ``tune`` / ``report`` / ``dice`` / ``count`` (lists,
    seed order) and their means ``tune_mean`` ... ``count_mean``, ``ci`` (report AP50 intervals), ``threshold``,
    ``curves`` (per seed, the tuning split's ``(step, AP50)`` at every validation)."""
    out = {"n": len(recs), "tune": [], "report": [], "dice": [], "count": [], "ci": [], "threshold": [], "curves": []}
    for rec in recs:
        m = rec.get("metrics") or {}
        out["curves"].append([(int(v["step"]), float(v["val_ap50"])) for v in rec.get("validation_curve") or []
                              if v.get("val_ap50") is not None and v.get("step") is not None])
        t = tuning_ap50_end(rec)
        if t is not None:
            out["tune"].append(t)
        for key, name in (("report", "ap50"), ("dice", "dice"), ("count", "count_ratio"),
                          ("threshold", "score_threshold")):
            if m.get(name) is not None:
                out[key].append(float(m[name]))
        ci = (m.get("ci95") or {}).get("ap50")
        out["ci"].append(tuple(float(v) for v in ci) if ci else None)
    for key in ("tune", "report", "dice", "count"):
        out[f"{key}_mean"] = _mean(out[key])
    return out


def quoted_numbers(row: dict, steps: tuple[int, ...] = (2000, 4000, 6000), digits: int = 3) -> dict[str, float]:
    """The numbers a chapter quotes for one :func:`budget_row`: ``tune``, ``report``, ``dice``, ``count`` (means over
    seeds) and ``at2k``, ``at4k``, ... (the tuning AP50 at those steps, mean over the seeds that validated there),
    rounded to ``digits``; 0.0 where the row has no such number (glue values must be numbers)."""
    out = {key: round(row[f"{key}_mean"], digits) if row.get(f"{key}_mean") is not None else 0.0
           for key in ("tune", "report", "dice", "count")}
    for step in steps:
        at = [ap for curve in row["curves"] for s, ap in curve if s == step]
        out[f"at{step // 1000}k"] = round(sum(at) / len(at), digits) if at else 0.0
    return out


def report_columns(row: dict, seed: int = 0) -> dict:
    """One seed of a :func:`budget_row` as a results table's report columns: ``report AP50``, ``95 % CI``
    (text), ``report Dice``, ``count ratio`` and ``score threshold`` (what the chapters' one-run tables show)."""
    ci = row["ci"][seed] or (float("nan"),) * 2
    return {"report AP50": row["report"][seed], "95 % CI": f"[{ci[0]:.3f}, {ci[1]:.3f}]",
            "report Dice": row["dice"][seed], "count ratio": row["count"][seed],
            "score threshold": row["threshold"][seed]}


def row_of_model(key: str, model: str, steps: int = BUDGET_STEPS) -> str | None:
    """The row of ablation table ``key`` whose preset ran as ``model`` at this budget (``<preset>_<steps>_seed<S>``,
    the names :func:`budget_records` reads), e.g. ``row_of_model("VII", "base_8000_seed1") == "a1 / b1"``; None
    for a model of no row (another table's preset, another budget, a name of another form)."""
    for name, preset in ROW_PRESETS[table_key(key)].items():
        if _run_name(preset, steps).fullmatch(str(model)):
            return name
    return None


def budget_rows(key: str, records: list[dict], protocol: str = BUDGET_PROTOCOL,
                steps: int = BUDGET_STEPS, extra: dict[str, str] | None = None) -> dict[str, dict]:
    """Paper row name -> ``{"preset": ..., **budget_row(...)}`` for every row of ablation table ``key``
    (II, V, VI, VII), in the paper's order, then the ``extra`` rows (name -> preset: e.g. our base next to a table
    that has no base row, Table VI); a row without runs has ``n == 0``."""
    rows = {**ROW_PRESETS[table_key(key)], **(extra or {})}
    return {name: {"preset": preset, **budget_row(budget_records(records, preset, protocol, steps))}
            for name, preset in rows.items()}


def _fmt(vals: list[float], digits: int = 3) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in vals)


def budget_markdown(key: str, records: list[dict], protocol: str = BUDGET_PROTOCOL,
                    steps: int = BUDGET_STEPS, extra: dict[str, str] | None = None,
                    not_run: dict[str, str] | None = None) -> str:
    """Table ``key``'s rows at ``steps`` steps of ``protocol``: per row its preset, seeds, tuning AP50 at the end
    (per seed, then the mean, the column that chooses), report AP50 per seed with its 95 % interval, report mean,
    its difference from the base row's mean, Dice, count ratio and score threshold. ``extra``: rows added after
    the paper's (see :func:`budget_rows`); ``not_run``: row name -> why that row is not run on this data (shown
    instead of numbers). Other unrun rows: "not yet measured"."""
    rows = budget_rows(key, records, protocol, steps, extra)
    base = next((r for r in rows.values() if r["preset"] == "base"), None)
    base_mean = base["report_mean"] if base and base["n"] else None
    table = {}
    for name, r in rows.items():
        if name in (not_run or {}) and not r["n"]:
            table[name] = {"preset": r["preset"], "seeds": 0, "tuning AP50 (end)": f"not run: {not_run[name]}"}
            continue
        if not r["n"]:
            table[name] = {"preset": r["preset"], "seeds": 0, "tuning AP50 (end)": NOT_MEASURED}
            continue
        report = " / ".join(f"{v:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
                            for v, ci in zip(r["report"], r["ci"]))
        diff = (r["report_mean"] - base_mean) if (base_mean is not None and r["preset"] != "base") else None
        table[name] = {
            "preset": r["preset"], "seeds": r["n"],
            "tuning AP50 (end)": _fmt(r["tune"]) + (f" (mean {r['tune_mean']:.3f})" if r["n"] > 1 else ""),
            "report AP50 [95 % CI]": report,
            "report mean": round(r["report_mean"], 3) if r["report_mean"] is not None else None,
            "vs base": f"{diff:+.3f}" if diff is not None else "-",
            "Dice": _fmt(r["dice"]), "count": _fmt(r["count"], 2), "threshold": _fmt(r["threshold"], 2)}
    cols = ["preset", "seeds", "tuning AP50 (end)", "report AP50 [95 % CI]", "report mean", "vs base", "Dice",
            "count", "threshold"]
    return (markdown_table(table, cols)
            + f"\n\n*{protocol}, {steps:,} steps per run; tuning split chooses, report split scored once per run.*")

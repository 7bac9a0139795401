"""Probes: one-seed runs that ask one question, read against a rule written down before they were trained.

A chapter that reports a probe (chapter 9c, issue #9) shows each run's validation on the tuning split (the curve,
and its last step, which the rule reads) next to its report-split numbers (scored once, read only after the
verdict), and quotes those numbers in prose. This module gathers them from the result records
(:func:`cks.report.load_results`), so the chapter does not repeat the reading:

* :func:`probe_numbers`: one run's tuning curve, its last validation and its report metrics;
* :func:`probe_glue`: the flat ``{name: number}`` a chapter glues (``{prefix}_{key}_tune`` ...); :func:`probe_glues`
  for every run of a table;
* :func:`probe_table`: one markdown row per run;
* :func:`rule_passes`: does a run meet its rule (every named number at least its threshold)?
  :func:`seed_mean`: the seeds' mean of the numbers a rule reads;
* :func:`shape_summary`: the median boundary offset, area ratio, solidity and IoU of cells alone of one
  ``cks diagnose`` row (``benchmarks/diagnostic_rows.py``), as a probe's shape table quotes them.

Nothing here chooses anything; the rules themselves are written in the chapter (and the session's notes) before the
runs exist.
"""
from __future__ import annotations

import math

from .report import find_result

__all__ = ["probe_numbers", "probe_glue", "probe_glues", "probe_table", "rule_passes", "seed_mean", "shape_summary",
           "foreground_ratio", "END_KEYS"]

#: the numbers of :func:`probe_numbers` besides the curve: name -> where it comes from
END_KEYS = {"tune": "the tuning split's AP50 at the last validation", "tdice": "the tuning split's Dice there",
            "report": "report AP50", "dice": "report Dice", "ap75": "report AP75",
            "count": "report count ratio", "cpu": "CPU minutes of the run"}


def probe_numbers(rec: dict | None, prefix: str = "val_") -> dict:
    """The numbers of one result record (None: a run not in the results folder).

    ``prefix``: which validation curve: ``"val_"`` the run's model, ``"val_raw_"`` the training weights of a run
    with ``train.ema`` (:mod:`cks.ema`; the report numbers are always the run's model's).

    Returns ``{"curve": {step: {"ap50": float, "dice": float | None}}, "tune": ..., "tdice": ..., "report": ...,
    "dice": ..., "ap75": ..., "count": ..., "cpu": ...}`` (keys of :data:`END_KEYS`; None where the record lacks
    one). The curve holds the validations with an AP50; ``tune``/``tdice`` are read at its last step."""
    rec = rec or {}
    curve = {}
    for v in rec.get("validation_curve") or []:
        if v.get(f"{prefix}ap50") is not None and v.get("step") is not None:
            dice = v.get(f"{prefix}dice")
            curve[int(v["step"])] = {"ap50": float(v[f"{prefix}ap50"]), "dice": float(dice) if dice is not None else None}
    end = curve[max(curve)] if curve else {}
    m = rec.get("metrics") or {}

    def num(v):
        return float(v) if v is not None else None

    return {"curve": dict(sorted(curve.items())), "tune": end.get("ap50"), "tdice": end.get("dice"),
            "report": num(m.get("ap50")), "dice": num(m.get("dice")), "ap75": num(m.get("ap75")),
            "count": num(m.get("count_ratio")), "cpu": num(rec.get("cpu_minutes"))}


def probe_glue(prefix: str, key: str, numbers: dict, steps=(), digits: int = 3) -> dict[str, float]:
    """``{f"{prefix}_{key}_{name}": value}`` for every :data:`END_KEYS` name, plus ``at{k}k`` (tuning AP50) and
    ``dice{k}k`` (tuning Dice) at each of ``steps``; rounded to ``digits``, 0.0 where missing (a glued value must be
    a number; a chapter says in words when a run is missing)."""
    def r(v):
        return round(float(v), digits) if v is not None and math.isfinite(float(v)) else 0.0

    out = {f"{prefix}_{key}_{name}": r(numbers.get(name)) for name in END_KEYS}
    for s in steps:
        at = numbers["curve"].get(int(s), {})
        out[f"{prefix}_{key}_at{int(s) // 1000}k"] = r(at.get("ap50"))
        out[f"{prefix}_{key}_dice{int(s) // 1000}k"] = r(at.get("dice"))
    return out


def probe_glues(records: list[dict], runs: dict[str, tuple[str, str]], prefix: str, protocols=(),
                steps=()) -> dict[str, float]:
    """:func:`probe_glue` for every run of a chapter's probe table: ``runs`` maps a row label to ``(key, model)``
    (the key names the run in the glue names; a model without a result glues zeros)."""
    out: dict[str, float] = {}
    for key, model in runs.values():
        out.update(probe_glue(prefix, key, probe_numbers(find_result(records, model, tuple(protocols))), steps))
    return out


def probe_table(records: list[dict], runs: dict[str, str], protocols=(), every: int | None = None) -> dict[str, dict]:
    """Rows for :func:`cks.viz.markdown_table`: per label of ``runs`` (label -> model name) whose result exists, the
    tuning AP50 / Dice at each validation (every ``every`` steps if given), then the report numbers and CPU time."""
    rows = {}
    for label, model in runs.items():
        rec = find_result(records, model, tuple(protocols))
        if rec is None:
            continue
        n = probe_numbers(rec)
        row = {}
        for s, v in n["curve"].items():
            if every and s % every:
                continue
            dice = f"{v['dice']:.3f}" if v["dice"] is not None else "-"
            row[f"tuning AP50 / Dice at {s:,}"] = f"{v['ap50']:.3f} / {dice}"
        row.update({"report AP50": n["report"], "report Dice": n["dice"], "report AP75": n["ap75"],
                    "count ratio": n["count"], "CPU-min": int(round(n["cpu"] or 0))})
        rows[label] = row
    return rows


def rule_passes(numbers: dict, rule: dict[str, float]) -> bool:
    """True if every number named by ``rule`` (keys of :data:`END_KEYS`) is at least its threshold; a missing
    number fails. Only for rules of that form (a lower bound on each)."""
    unknown = set(rule) - set(END_KEYS)
    if unknown:
        raise KeyError(f"rule_passes: unknown numbers {sorted(unknown)}; use {sorted(END_KEYS)}")
    return all(numbers.get(k) is not None and numbers[k] >= t for k, t in rule.items())


def seed_mean(numbers: list[dict], keys=("tune", "tdice")) -> dict[str, float] | None:
    """Mean over seeds of each of ``keys`` (e.g. a rule's names) of :func:`probe_numbers` results; ``None`` when
    there are no seeds or any seed lacks one of them (a run not in the results folder)."""
    keys = list(keys)
    if not numbers or any(n.get(k) is None for n in numbers for k in keys):
        return None
    return {k: sum(n[k] for n in numbers) / len(numbers) for k in keys}


def shape_summary(row: dict | None) -> dict[str, float]:
    """``{"offset", "area", "solidity", "alone_iou"}`` of one diagnostic row: the median signed boundary offset (px),
    area ratio and solidity of the matched cells (2 digits) and the median IoU of the true cells with no touching
    neighbour (3 digits); 0.0 for what the row lacks (or for no row)."""
    row = row or {}
    o = row.get("overall") or {}
    alone = next((g for g in row.get("crowding") or [] if g.get("group") == "0"), {})
    return {"offset": round(o.get("offset_median") or 0.0, 2), "area": round(o.get("area_ratio_median") or 0.0, 2),
            "solidity": round(o.get("solidity_pred_median") or 0.0, 2),
            "alone_iou": round(alone.get("iou_median") or 0.0, 3)}


def foreground_ratio(row: dict | None) -> float:
    """The collaborator's foreground area over the true foreground's in one diagnostic row (``cks diagnose``'s
    ``collaborator_foreground.ratio``), averaged over its fields, 2 digits; 0.0 for no row or no ratios."""
    ratios = ((row or {}).get("collaborator_foreground") or {}).get("ratio") or []
    return round(sum(ratios) / len(ratios), 2) if ratios else 0.0

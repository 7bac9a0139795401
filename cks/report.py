"""Our measured results next to the paper's tables, and small helpers for the book's tables and figures.

**Results** are the files ``results/<protocol>/<model>.json`` written by ``benchmarks/record.py`` (trained
models) and ``benchmarks/point_baselines.py`` (point baselines): ``protocol`` (data and label protocol,
e.g. ``usiigaci_points``), ``model`` (for an ablation: its preset name, e.g. ``table5_entropy_principal``;
the paper's base also answers to ``cks_base``), ``metrics`` (``cks evaluate --json``: ap50, ap75, map,
dice, ...) and the provenance: ``git_commit``, ``hardware`` (cpu, cores, torch, gpu), ``steps`` and the
run's ``config`` (its ``train.steps`` is the step budget), ``cpu_minutes``, ``wall_s``, ``reported_on``.
:func:`load_results` reads them all; tables come back as Markdown text (render with
``IPython.display.Markdown``; built with :func:`cks.viz.markdown_table`). A row we have not measured
reads "not yet measured", never a number.

How our results meet the paper's tables:

* ablation tables (II, V, VI, VII): each paper row has a preset (:data:`ROW_PRESETS`); its result is
  the one whose ``model`` is that preset, preferring the protocols of :data:`TABLE_PROTOCOLS`;
* Tables I, III and VIII list every result that fits (:func:`table_records`): supervised models (I),
  centroid-point protocols (III) and nuclear-point protocols (VIII).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .bench import scaling_markdown, speed_results  # re-exported: the book reads them from here
from .paper import paper_reference, paper_table  # paper_reference: re-exported
from .run_maps import collaborator_maps  # re-exported: the book imports it from here
from .viz import markdown_table, standing_figure  # standing_figure: re-exported (the book reads it here)

#: Paper column name -> our metric key.
METRIC_KEYS = {"Dice": "dice", "AP50": "ap50", "AP75": "ap75", "mAP": "map", "Speed (fps)": "fps"}

NOT_MEASURED = "not yet measured"

#: Paper row -> our row (a preset of :data:`cks.config.PRESETS`) for the tables whose rows are presets.
ROW_PRESETS: dict[str, dict[str, str]] = {
    "II": {"single-scale detection, constant encoding": "table2_single_scale_constant_encoding",
           "multi-scale detection, constant encoding": "table2_constant_encoding",
           "multi-scale detection, encoding net": "table2_full"},
    "V": {"principal entropy, collaborator linear": "table5_entropy_principal",
          "principal linear, collaborator entropy": "table5_entropy_collaborator",
          "principal linear, collaborator linear": "base"},
    "VI": {"not used (pi = 0)": "table6_no_prior", "constant d (20)": "table6_constant_d",
           "per-cell-line d": "table6_per_type_d"},
    "VII": {"a1 / b1": "base", "a2 / b1": "table7_a2_b1", "a3 / b1": "table7_a3_b1", "a1 / b2": "table7_a1_b2",
            "a3 / b2": "table7_a3_b2"},
}

#: Other model names a preset's result may carry.
MODEL_ALIASES = {"base": ("base", "cks_base")}

#: Per protocol, the result that stands for a preset's row when the preset changed after that protocol's rows
#: were first run. ``usiigaci_ablation_v2``: L_PW joined the base (``cks.config.OURS``, issue #9 session 18) after
#: ``pairwise_w1`` had trained exactly that configuration (``--preset base --set loss.pairwise_weight=1``; tested
#: in tests/test_report.py), so it is the base row there; the older ``base`` result trained without L_PW.
ROW_RESULTS: dict[str, dict[str, str]] = {"usiigaci_ablation_v2": {"base": "pairwise_w1"}}

#: Per protocol, the seeds of a preset's row (its stand-in first): shown below an ablation table as the range a
#: single-seed row has to leave before it differs from that row at the protocol's budget.
ROW_SEEDS: dict[str, dict[str, tuple[str, ...]]] = {
    "usiigaci_ablation_v2": {"base": ("pairwise_w1", "pairwise_w1_seed1", "pairwise_w1_seed2", "base_seed3"),
                             **{row: (row, f"{row}_seed1") for row in (
                                 "table5_entropy_principal", "table5_entropy_collaborator", "table7_a2_b1",
                                 "table7_a3_b1", "table7_a1_b2", "table7_a3_b2")}},
    "deepcell_nuclei_v2": {row: (row, f"{row}_seed1", f"{row}_seed2") for row in ("table6_constant_d", "table6_per_type_d")}}

#: Protocols preferred for each table (Usiigaci stands in for LIVECell; DeepCell has several cell types
#: and a nuclear channel).
TABLE_PROTOCOLS = {"I": ("usiigaci_points", "usiigaci_masks"), "II": ("usiigaci_masks", "usiigaci_points"),
                   "III": ("usiigaci_points",), "V": ("usiigaci_ablation_v2", "usiigaci_ablation", "usiigaci_points"),
                   "VI": ("deepcell_nuclei_v2", "deepcell_nuclei", "deepcell_points"),
                   "VII": ("usiigaci_ablation_v2", "usiigaci_ablation", "usiigaci_points"),
                   "VIII": ("deepcell_nuclei",)}


def repo_root() -> Path:
    """The folder above the ``cks`` package (the repository root for a source checkout)."""
    return Path(__file__).resolve().parents[1]


def default_results_dir() -> Path:
    """``$CKS_RESULTS_DIR`` if set, else ``<repository root>/results``."""
    env = os.environ.get("CKS_RESULTS_DIR", "").strip()
    return Path(env).expanduser() if env else repo_root() / "results"


def table_key(table) -> str:
    """A table name as the keys of :data:`ROW_PRESETS` spell it: "Table V", "table v", "V" -> "V"."""
    return str(table).upper().removeprefix("TABLE").strip()


# ------------------------------------------------------------------ reading results
def load_results(root: str | os.PathLike | None = None) -> list[dict]:
    """Every result under ``root`` (default :func:`default_results_dir`), sorted by path.

    A result is a JSON object with a ``metrics`` object; others are skipped. Missing ``protocol`` /
    ``model`` default to the folder and file names. Each record gets ``path`` and lower-case
    metric keys; a missing folder gives ``[]``.
    """
    root = Path(root) if root is not None else default_results_dir()
    out = []
    if not root.is_dir():
        return out
    for p in sorted(root.rglob("*.json")):
        try:
            rec = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if not (isinstance(rec, dict) and isinstance(rec.get("metrics"), dict)):
            continue
        rec["protocol"] = str(rec.get("protocol") or p.parent.name)
        rec["model"] = str(rec.get("model") or p.stem)
        rec["metrics"] = {METRIC_KEYS.get(k, str(k).lower()): v for k, v in rec["metrics"].items()}
        rec["path"] = str(p)
        out.append(rec)
    return out


def find_result(records: list[dict], model: str, protocols=()) -> dict | None:
    """The result of ``model`` (or an alias, :data:`MODEL_ALIASES`), from the first of ``protocols`` that has
    one (there, a stand-in of :data:`ROW_RESULTS` first), else from any protocol (the first by path); None if
    there is none."""
    names = MODEL_ALIASES.get(model, (model,))
    hits = [r for r in records if r["model"] in names]
    for proto in protocols:
        stand_in = ROW_RESULTS.get(proto, {}).get(model)
        for r in ([r for r in records if r["protocol"] == proto and r["model"] == stand_in] if stand_in else []):
            return r
        for r in hits:
            if r["protocol"] == proto:
                return r
    return hits[0] if hits else None


def table_protocols(records: list[dict], key: str) -> tuple[str, ...]:
    """The protocol preference of an ablation table: :data:`TABLE_PROTOCOLS` order, but a protocol that has a
    result for EVERY row of the table comes first, so one table does not mix budgets while a newer protocol
    (``*_v2``) is only partly run."""
    key = table_key(key)
    order = TABLE_PROTOCOLS.get(key, ())
    presets = list(ROW_PRESETS[key].values())

    full = {proto for proto in order
            if all((find_result(records, p, (proto,)) or {}).get("protocol") == proto for p in presets)}
    return tuple(p for p in order if p in full) + tuple(p for p in order if p not in full)


def table_records(records: list[dict], key: str) -> list[dict]:
    """Our results that belong to one of the free-form tables: supervised models (I), results of
    centroid-point protocols (III: protocol without "nuclei"), nuclear-point protocols (VIII)."""
    key = table_key(key)
    if key == "I":
        return [r for r in records if "supervised" in r["model"] or r["model"] == "table2_full"
                or r["model"].startswith("cellpose")]
    if key == "III":
        return [r for r in records if r["protocol"] in TABLE_PROTOCOLS["III"]]
    if key == "VIII":
        return [r for r in records if "nuclei" in r["protocol"]]
    raise KeyError(f"table {key} has preset rows; use comparison_markdown (or find_result)")


def metrics_from_history(history: list[dict]) -> dict:
    """The last validation metrics of a training history (``train(...)["history"]`` or metrics.jsonl rows)."""
    for rec in reversed(history):
        if "val_ap50" in rec:
            return {k.removeprefix("val_"): rec[k] for k in ("val_dice", "val_ap50", "val_ap75", "val_map")
                    if k in rec}
    return {}


# ------------------------------------------------------------------ Markdown tables
def metric_text(rec: dict | None, key: str, digits: int = 3):
    """A result's metric with its 95 % bootstrap interval when recorded: ``"0.504 [0.423, 0.583]"``;
    the bare value without one; :data:`NOT_MEASURED` without a result."""
    if rec is None:
        return NOT_MEASURED
    v = rec["metrics"].get(key)
    ci = (rec["metrics"].get("ci95") or {}).get(key)
    if v is None or not ci:
        return v
    return f"{float(v):.{digits}f} [{float(ci[0]):.{digits}f}, {float(ci[1]):.{digits}f}]"


def provenance_text(rec: dict | None) -> str:
    """One line: commit, hardware, steps reached / step budget, CPU minutes, wall time."""
    if rec is None:
        return NOT_MEASURED
    parts = []
    if rec.get("git_commit"):
        parts.append(f"commit {str(rec['git_commit'])[:7]}")
    hw = rec.get("hardware")
    if isinstance(hw, dict):
        parts.append(hw.get("gpu") or f"{hw.get('cpu') or 'CPU'}, {hw.get('cores')} cores")
    elif hw:
        parts.append(str(hw))
    budget = ((rec.get("config") or {}).get("train") or {}).get("steps")
    if rec.get("steps") is not None:
        parts.append(f"{rec['steps']} steps" + (f" of {budget}" if budget else ""))
    if rec.get("cpu_minutes") is not None:
        parts.append(f"{float(rec['cpu_minutes']):.0f} CPU-min")
    if rec.get("wall_s") is not None:
        parts.append(f"{float(rec['wall_s']) / 60:.1f} min wall")
    if (rec.get("metrics") or {}).get("score_threshold") is not None:
        parts.append(f"score >= {rec['metrics']['score_threshold']}")
    return ", ".join(parts) or "no provenance recorded"


def paper_markdown(key: str) -> str:
    """The paper's table ``key`` as Markdown, titled as the paper's values."""
    t = paper_table(key)
    return (f"**Paper, {t['source']}** ({t['data']}): {t['title']}\n\n" + markdown_table(t["rows"], t["columns"])
            + (f"\n\n*{t['note']}*" if t.get("note") else ""))


def comparison_markdown(key: str, records: list[dict], columns: list[str] | None = None) -> str:
    """The paper's rows of an ablation table next to ours (our row = the row's preset, :data:`ROW_PRESETS`).

    Columns: our row and protocol, then for each metric the paper's value and ours; our provenance is folded
    below the table. A row we have not measured shows "not yet measured".
    """
    key = table_key(key)
    t = paper_table(key)
    cols = columns or [c for c in t["columns"] if c in METRIC_KEYS]
    rows = {}
    order = table_protocols(records, key)
    for name, vals in t["rows"].items():
        preset = ROW_PRESETS[key][name]
        rec = find_result(records, preset, order)
        row = {"our row": preset, "protocol": rec["protocol"] if rec else "-"}
        for c in cols:
            row[f"{c} (paper)"] = vals.get(c)
            row[f"{c} (ours)"] = metric_text(rec, METRIC_KEYS[c])
        rows[name] = row
    table = markdown_table(rows, ["our row", "protocol"] + [f"{c} ({w})" for c in cols for w in ("paper", "ours")])
    recs = [find_result(records, ROW_PRESETS[key][n], order) for n in t["rows"]]
    return table + seed_range_markdown(records, key, order, cols) + provenance_fold([r for r in recs if r]) \
        + notes_markdown(recs)


def seed_values(records: list[dict], protocol: str, models, metric: str = "ap50") -> list[float]:
    """``metric`` of the results of ``models`` in ``protocol``, in the order of ``models`` (missing ones left out)."""
    by_model = {r["model"]: r for r in records if r["protocol"] == protocol and r["metrics"].get(metric) is not None}
    return [float(by_model[m]["metrics"][metric]) for m in models if m in by_model]


def cpu_minutes_range(records: list[dict], named) -> tuple[float, float, int] | None:
    """(min, max, n) of the CPU-minutes recorded in the provenance of the named results; None if none records it.

    Args:
        records: :func:`load_results`.
        named: ``(protocol, model)`` pairs; a missing result, or one without ``cpu_minutes``, is left out.
    """
    vals = [float(r["cpu_minutes"]) for r in (find_result(records, m, (p,)) for p, m in named)
            if r is not None and r.get("cpu_minutes") is not None]
    return (min(vals), max(vals), len(vals)) if vals else None


def seed_range(records: list[dict], protocol: str, models, metric: str = "ap50") -> tuple[float, float, int] | None:
    """(min, max, n) of ``metric`` over the results of ``models`` in ``protocol``; None if fewer than two exist."""
    vals = seed_values(records, protocol, models, metric)
    return (min(vals), max(vals), len(vals)) if len(vals) >= 2 else None


def seed_range_markdown(records: list[dict], key: str, order=(), cols=("AP50",)) -> str:
    """Below an ablation table: the rows trained with more than one seed (:data:`ROW_SEEDS`) as a small table of
    their per-seed AP50 and their range per metric, then where every other row of the same protocol falls against
    the base row's AP50 range (below, inside or overlapping, above). Empty when no row has seeds."""
    seeded = {}
    for name, preset in ROW_PRESETS[table_key(key)].items():
        rec = find_result(records, preset, order)
        seeds = ROW_SEEDS.get(rec["protocol"], {}).get(preset) if rec else None
        ranges = {c: seed_range(records, rec["protocol"], seeds, METRIC_KEYS[c]) for c in cols} if seeds else {}
        ranges = {c: r for c, r in ranges.items() if r}
        if ranges:
            seeded[name] = {"rec": rec, "preset": preset, "seeds": seeds, "ranges": ranges,
                            "ap50": seed_values(records, rec["protocol"], seeds, "ap50")}
    if not seeded:
        return ""
    rows = {name: {"protocol": v["rec"]["protocol"], "runs": ", ".join(v["seeds"]),
                   "AP50 per seed": " / ".join(f"{x:.3f}" for x in v["ap50"]),
                   **{f"{c} range": f"{lo:.3f} to {hi:.3f}" for c, (lo, hi, _) in v["ranges"].items()}}
            for name, v in seeded.items()}
    out = ("\n\n*Rows trained with more than one seed* (same budget and protocol; a range is lowest to highest "
           "seed):\n\n" + markdown_table(rows))
    base = next((n for n, v in seeded.items() if v["preset"] == "base"), next(iter(seeded)))
    ref = seeded[base]
    if len(ref["ap50"]) < 2:
        return out
    lo, hi = min(ref["ap50"]), max(ref["ap50"])
    where = {"below": [], "inside or overlapping": [], "above": []}
    for name, preset in ROW_PRESETS[table_key(key)].items():
        r = find_result(records, preset, order)
        if name == base or not r or r["protocol"] != ref["rec"]["protocol"] or r["metrics"].get("ap50") is None:
            continue
        own = seeded[name]["ap50"] if name in seeded else [float(r["metrics"]["ap50"])]
        a, b = min(own), max(own)
        where["below" if b < lo else "above" if a > hi else "inside or overlapping"].append(preset)
    out += (f"\n\nAgainst the AP50 range of \"{base}\" ({lo:.3f} to {hi:.3f}), the other rows (each by its own "
            "range where it has seeds): " + "; ".join(f"{k}: {', '.join(v)}" for k, v in where.items() if v)
            + ". A row inside or overlapping that range is not told apart from it at this budget.")
    return out


def notes_markdown(recs: list[dict | None]) -> str:
    """What differs from the paper, once per protocol (below a table): the protocol's shared note in full,
    then only what a result adds to it."""
    by_proto: dict[str, list[str]] = {}
    for r in recs:
        if r and r.get("note"):
            by_proto.setdefault(r["protocol"], [])
            if r["note"] not in by_proto[r["protocol"]]:
                by_proto[r["protocol"]].append(r["note"])
    out = ""
    for proto, notes in by_proto.items():
        # a note is "; "-separated clauses; the clauses every note of the protocol has are said once, in the
        # first note's order, then each note's own clauses (its budget and seed, its overrides, its reason)
        clauses = [[c.strip() for c in n.split(";") if c.strip()] for n in notes]
        shared = [c for c in clauses[0] if all(c in other for other in clauses[1:])]
        extra = ["; ".join(c for c in cl if c not in shared) for cl in clauses]
        out += f"\n\n*What differs from the paper ({proto}):* {'; '.join(shared)}"
        out += "".join(f"\n\n  - *one run adds:* {e}" for e in extra if e)
    with_pw = [r for r in recs if r and float(((r.get("config") or {}).get("loss") or {}).get("pairwise_weight") or 0) > 0]
    if with_pw:  # read from each result's own configuration, so it holds for results written before the note said it
        names = ", ".join(f"{r['protocol']} / {r['model']} ({r['config']['loss']['pairwise_weight']:g})" for r in with_pw)
        out += ("\n\n*Not in the paper:* these runs train with our image-affinity term L_PW "
                f"(`loss.pairwise_weight`, in the base since issue #9): {names}.")
    geo = [r for r in recs if r and ((r.get("config") or {}).get("loss") or {}).get("prior_shape", "disk") != "disk"]
    if geo:
        names = ", ".join(f"{r['protocol']} / {r['model']}" for r in geo)
        out += ("\n\n*Not in the paper:* these runs draw the prior of Eq. 4 along the image, not as a disk "
                f"(`loss.prior_shape=geodesic`): {names}.")
    if any(r and (r["metrics"].get("ci95")) for r in recs):
        out += "\n\nOur values: point estimate [95 % bootstrap interval over images]."
    return out


def provenance_fold(records: list[dict]) -> str:
    """Each result's provenance in a folded HTML ``<details>`` block (kept out of the tables' width)."""
    if not records:
        return ""
    rows = {f"{r['protocol']} / {r['model']}": {"provenance": provenance_text(r), "command": r.get("command", "")}
            for r in records}
    return ("\n\n<details><summary>Provenance of these results (commit, hardware, budget, command)</summary>\n\n"
            + markdown_table(rows, ["provenance", "command"]) + "\n\n</details>")


def results_markdown(records: list[dict], columns=("Dice", "AP50", "AP75", "mAP"), notes: bool = False,
                     provenance: str = "fold") -> str:
    """Our results, one row per file (protocol / model): each metric with its 95 % bootstrap interval over
    images when recorded, the cell count and where it was evaluated; ``provenance="fold"`` puts each file's
    provenance in a folded block below the table (``"column"``: a column); ``notes`` adds what differs from
    the paper once per protocol. "not yet measured" if there is none."""
    if not records:
        return f"*{NOT_MEASURED}*"
    rows = {f"{r['protocol']} / {r['model']}": {**{c: metric_text(r, METRIC_KEYS[c]) for c in columns},
                                                "cells": r["metrics"].get("n_gt"),
                                                "evaluated on": r.get("reported_on"),
                                                **({"provenance": provenance_text(r)} if provenance == "column"
                                                   else {})}
            for r in records}
    table = markdown_table(rows, list(columns) + ["cells", "evaluated on"]
                           + (["provenance"] if provenance == "column" else []))
    return table + (provenance_fold(records) if provenance == "fold" else "") + (notes_markdown(records) if notes
                                                                                 else "")


def smoke_markdown(rows: dict[str, dict], columns=("steps", "dice", "ap50", "ap75", "map"),
                   label: str = "smoke run") -> str:
    """A table of freshly measured rows ``{name: {column: value}}``; every score column is tagged ``label``."""
    def head(c):
        return f"{c} ({label})" if c in ("dice", "ap50", "ap75", "map") else c

    return markdown_table({name: {head(c): vals.get(c) for c in columns} for name, vals in rows.items()},
                          [head(c) for c in columns])


def diff_markdown(diffs: dict[str, dict]) -> str:
    """``{preset: preset_diff(preset)}`` as a table of the changed configuration keys."""
    col = "difference from the base preset"
    return markdown_table({name: {col: "; ".join(f"`{k}` = {v!r}" for k, v in diff.items())
                                  or "(none: the paper's base)"} for name, diff in diffs.items()}, [col])


__all__ = ["METRIC_KEYS", "NOT_MEASURED", "ROW_PRESETS", "MODEL_ALIASES", "ROW_RESULTS", "ROW_SEEDS",
           "seed_values", "cpu_minutes_range", "seed_range", "seed_range_markdown", "TABLE_PROTOCOLS", "repo_root",
           "default_results_dir", "load_results", "find_result", "table_protocols", "table_records", "metrics_from_history",
           "provenance_text", "paper_markdown", "comparison_markdown", "results_markdown", "smoke_markdown",
           "diff_markdown", "collaborator_maps", "speed_results", "scaling_markdown", "paper_reference",
           "standing_figure"]

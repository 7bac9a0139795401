"""Where the project stands, in one table: each shared data set's report split, CKS from points next to what it
has to beat (a disk around each point) and what it aims at (a model supervised with the masks).

Why a module: the results chapter (``book/09_results.md``) and ``README.md`` open with the same few numbers;
they must come from the committed result files (``results/<protocol>/<model>.json``), read the same way, not
be typed by hand. The rows are named in :data:`HEADLINE`, each with the runs (seeds) that stand for it. A row
whose results are missing from a checkout reads "not yet measured", never a number.

Which runs stand for "CKS from points" is the tuning split's choice, recorded in the issue #9 closing notes and
chapters 8, 9 and 9c: on Usiigaci, since issue #9 session 44, Table VII's a2 collaborator with L_PW on the principal's
windows too (``--preset table7_a2_b1 --set loss.pairwise_on=both``, since session 45 also named
``phase_points``; 8,000 steps: both seeds passed the rule fixed
before they were scored, tuning AP50 >= 0.52 at the end; the ``base`` preset at 8,000 steps stood there before); on
DeepCell the preset
recommended for nuclear points with our image-affinity term, trained 4,800 steps (``nuclear_pairwise_fresh_long``).
The paper's own configuration on DeepCell (``paper_constant_d_long``) is shown as its own row because it passes
the disks on the report split while the tuning split does not pick it (chapter 8).

The Usiigaci supervised row is a re-run (``supervised_8000_rerun_seed*``): the runs that first stood there
(``supervised_long_seed*``) trained again at later code with the commands the closing notes give for the fields we do
not have, so the table describes code much closer to what ships (each result names its commit); :mod:`cks.staleness`
sets the two side by side, and the ``base`` runs with their re-runs (``base_8000_rerun_seed*``). The CKS row's runs
(``a2_pairwise_both_8000_seed*``) were trained fresh at the code of session 44. The DeepCell rows have not been re-run; each result names the commit it was trained at.

Nothing runs on import.
"""
from __future__ import annotations

from .report import NOT_MEASURED, seed_values
from .viz import markdown_table

__all__ = ["HEADLINE", "headline_rows", "headline_markdown", "headline_numbers", "readme_block", "update_readme",
           "README_BEGIN", "README_END"]

#: the lines between which ``README.md`` holds a copy of :func:`headline_markdown` (tests/test_headline.py keeps it
#: equal to what the committed results give; ``python -m cks.headline`` rewrites it)
README_BEGIN = "<!-- headline: python -m cks.headline writes this table from results/ -->"
README_END = "<!-- /headline -->"

#: data set -> list of (row label, role, protocol, result names: one per seed). ``role`` is "disks" (the
#: no-learning baseline the issue's targets name), "geodesic" (ours, :func:`cks.baselines.geodesic_disks`: disk areas
#: taken along the image; no learning either), "cks" (ours from points, the tuning split's choice), "paper" (CKS in the paper's own
#: configuration), "supervised" (ours from masks) or "peer" (another tool).
HEADLINE: dict[str, list[tuple[str, str, str, tuple[str, ...]]]] = {
    "Usiigaci NIH3T3 phase, report split val/set46-50 (325 cells)": [
        ("Voronoi disks around the points (no learning)", "disks", "usiigaci_points", ("voronoi_disks",)),
        ("geodesic disks: each disk's area taken along the image (no learning; ours; cost beta from the tuning split)",
         "geodesic", "usiigaci_points", ("geodesic_disks",)),
        ("CKS from centroid points, `phase_points` (`table7_a2_b1` + `loss.pairwise_on=both`), 8,000 steps", "cks", "usiigaci_points_v2",
         ("a2_pairwise_both_8000_seed0", "a2_pairwise_both_8000_seed1")),
        ("supervised from masks, 8,000 steps", "supervised", "usiigaci_points_v2",
         ("supervised_8000_rerun_seed0", "supervised_8000_rerun_seed1")),
        ("Cellpose 3, trained on the same masks (peer)", "peer", "usiigaci_points", ("cellpose3_supervised",)),
    ],
    "DeepCell 2016 phase, test split: MCF10A + HeLa (274 cells)": [
        ("Voronoi disks around the nuclear points (no learning)", "disks", "deepcell_nuclei", ("voronoi_disks",)),
        ("geodesic disks around the nuclear points (no learning; ours; cost beta from the tuning split, 0 = plain disks)",
         "geodesic", "deepcell_nuclei", ("geodesic_disks",)),
        ("CKS from nuclear points, `nuclear_pairwise` (`nuclear_points` + L_PW), 4,800 steps", "cks", "deepcell_nuclei_v2",
         ("nuclear_pairwise_fresh_long_seed0", "nuclear_pairwise_fresh_long_seed1")),
        ("CKS, the paper's configuration (`table6_constant_d`), 4,800 steps; not the tuning split's choice", "paper",
         "deepcell_nuclei_v2", ("paper_constant_d_long_seed0", "paper_constant_d_long_seed1")),
        ("supervised from masks, 4,800 steps", "supervised", "deepcell_nuclei_v2",
         ("supervised_long_seed0", "supervised_long_seed1")),
    ],
}


def _count_ratios(records: list[dict], protocol: str, names) -> list[float]:
    """Predicted / true cell count of each named result in ``protocol`` (``n_pred / n_gt`` where none is stored)."""
    by_model = {r["model"]: r["metrics"] for r in records if r["protocol"] == protocol}
    out = []
    for m in (by_model[n] for n in names if n in by_model):
        if m.get("count_ratio") is not None:
            out.append(float(m["count_ratio"]))
        elif m.get("n_pred") is not None and m.get("n_gt"):
            out.append(float(m["n_pred"]) / float(m["n_gt"]))
    return out


def _mean(vals: list[float]) -> float | None:
    return sum(vals) / len(vals) if vals else None


def headline_rows(records: list[dict], spec: dict | None = None) -> dict[str, list[dict]]:
    """Per data set, one dict per row of ``spec`` (default :data:`HEADLINE`).

    Each row: ``label``, ``role``, ``n`` (runs found), ``ap50`` / ``dice`` / ``count_ratio`` (per-run lists, in the
    order of the names; ``count_ratio`` falls back to ``n_pred / n_gt``), their means ``ap50_mean`` /
    ``dice_mean`` (None without runs), and ``vs_supervised`` = ``ap50_mean`` / the mean AP50 of the data set's
    "supervised" row (None where either is missing).
    """
    spec = HEADLINE if spec is None else spec
    out: dict[str, list[dict]] = {}
    for dataset, rows in spec.items():
        built = []
        for label, role, protocol, names in rows:
            ap = seed_values(records, protocol, names, "ap50")
            dice = seed_values(records, protocol, names, "dice")
            counts = _count_ratios(records, protocol, names)
            built.append(dict(label=label, role=role, n=len(ap), ap50=ap, dice=dice, count_ratio=counts,
                              ap50_mean=_mean(ap), dice_mean=_mean(dice)))
        sup = [r["ap50_mean"] for r in built if r["role"] == "supervised" and r["ap50_mean"] is not None]
        for r in built:
            r["vs_supervised"] = (r["ap50_mean"] / sup[0]) if (sup and sup[0] and r["ap50_mean"] is not None) else None
        out[dataset] = built
    return out


def _cell(vals: list[float], digits: int = 3) -> str:
    return " / ".join(f"{v:.{digits}f}" for v in vals) if vals else NOT_MEASURED


def headline_markdown(records: list[dict], spec: dict | None = None) -> str:
    """:func:`headline_rows` as one Markdown table per data set: AP50 and Dice per run (seeds separated by "/"),
    predicted / true cell count, and the AP50 mean as a fraction of the supervised row's."""
    parts = []
    for dataset, rows in headline_rows(records, spec).items():
        table = {r["label"]: {"runs": r["n"] or "-", "AP50 (each run)": _cell(r["ap50"]),
                              "Dice (each run)": _cell(r["dice"]), "cells found / true": _cell(r["count_ratio"], 2),
                              "AP50 / supervised": "-" if r["vs_supervised"] is None or r["role"] == "supervised"
                              else f"{r['vs_supervised']:.2f}"}
                 for r in rows}
        parts.append(f"**{dataset}**\n\n" + markdown_table(table))
    return "\n\n".join(parts)


def headline_numbers(records: list[dict], spec: dict | None = None, digits: int = 3) -> dict[str, float]:
    """Flat numbers for glue: ``<d>_<role>_ap50`` / ``_dice`` / ``_vs_sup`` per data set index ``d`` (0, 1, ...) for
    the first row of each role (means over its runs, rounded); rows without results are left out."""
    out: dict[str, float] = {}
    for d, rows in enumerate(headline_rows(records, spec).values()):
        for r in rows:
            key = f"{d}_{r['role']}"
            if r["ap50_mean"] is None or f"{key}_ap50" in out:
                continue
            out[f"{key}_ap50"] = round(r["ap50_mean"], digits)
            if r["dice_mean"] is not None:
                out[f"{key}_dice"] = round(r["dice_mean"], digits)
            if r["vs_supervised"] is not None and r["role"] != "supervised":
                out[f"{key}_vs_sup"] = round(r["vs_supervised"], 2)
    return out


def readme_block(records: list[dict]) -> str:
    """The README's copy of the headline tables, between :data:`README_BEGIN` and :data:`README_END`."""
    return f"{README_BEGIN}\n{headline_markdown(records)}\n{README_END}"


def update_readme(readme, records: list[dict]) -> bool:
    """Rewrite the headline block of ``readme`` (a path) in place; True if it changed. Raises ``ValueError`` if
    the file has no block (both marker lines, in order)."""
    from pathlib import Path

    path = Path(readme)
    text = path.read_text()
    a, b = text.find(README_BEGIN), text.find(README_END)
    if a < 0 or b < a:
        raise ValueError(f"{path}: no headline block ({README_BEGIN!r} ... {README_END!r}); add the two lines first")
    new = text[:a] + readme_block(records) + text[b + len(README_END):]
    if new != text:
        path.write_text(new)
    return new != text


if __name__ == "__main__":  # python -m cks.headline [README.md]: refresh the README's copy of the headline tables
    import sys

    from .report import load_results, repo_root

    target = sys.argv[1] if len(sys.argv) > 1 else repo_root() / "README.md"
    print("updated" if update_readme(target, load_results()) else "unchanged", target)

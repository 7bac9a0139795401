"""Was the headline current? Its first runs next to the same runs trained again at later code (the re-runs).

Each result records the commit it was trained at (``git_commit``), and the runs that first stood in the Usiigaci
headline were older than much of ``cks``. A *re-run* trains the same configuration again, with the exact command the
closing notes give for the fields we do not have, and is scored once on the report split like every run; the
headline (:mod:`cks.headline`) showed the re-runs, because they were trained by the code that ships; since issue #9
session 44 it shows the supervised re-runs, and its CKS row holds the tuning split's newer choice
(``a2_pairwise_both_8000_seed*``, trained fresh at that session's code). This module
reads the re-runs next to the first runs from the committed result files and says, seed by seed, whether each re-run
falls inside the spread of the first runs' seeds, and, once every seed of the first row (CKS) is re-run, whether the
first runs were optimistic about later code (every re-run below every first run) or not.

Nothing runs on import.
"""
from __future__ import annotations

from .report import find_result

__all__ = ["RERUNS", "rerun_check"]

#: protocol -> rows (what, first run's result name, re-run's result name), names with ``{}`` for the seed. The first row
#: is the one the verdict is about (CKS from points); the second is its supervised reference.
RERUNS: dict[str, list[tuple[str, str, str]]] = {
    "usiigaci_points_v2": [
        ("CKS from points (`base`, 8,000 steps)", "base_8000_seed{}", "base_8000_rerun_seed{}"),
        ("supervised from masks (8,000 steps)", "supervised_long_seed{}", "supervised_8000_rerun_seed{}"),
    ],
}


def _ap50(r: dict | None) -> float | None:
    return None if r is None else r["metrics"].get("ap50")


def rerun_check(records: list[dict], protocol: str = "usiigaci_points_v2", rows=None, seeds=(0, 1)) -> dict:
    """Compare each re-run with the first run of its seed.

    Args:
        records: result records (:func:`cks.report.load_results`). protocol: where the runs are.
        rows: ``[(what, first run's name, re-run's name)]`` with ``{}`` for the seed (default :data:`RERUNS`).
        seeds: the seeds of the first runs (the spread is taken over them).
    Returns:
        ``{"lines": [markdown bullet, ...], "pairs": {(row index, seed): (re-run AP50, first run AP50)},
        "verdict": "optimistic" | "overlap" | None}``. A bullet per (row, seed) says the two AP50 and Dice values,
        their commits and whether the re-run lies inside the first runs' spread (max - min of their AP50); a
        missing result is named, never guessed. ``verdict`` needs every seed of the first row re-run:
        "optimistic" if every re-run is below every first run, else "overlap".
    """
    rows = RERUNS[protocol] if rows is None else rows
    lines, pairs = [], {}
    for i, (what, hl_name, re_name) in enumerate(rows):
        heads = [find_result(records, hl_name.format(s), (protocol,)) for s in seeds]
        vals = [_ap50(h) for h in heads]
        spread = max(vals) - min(vals) if None not in vals and len(vals) > 1 else None
        for seed, a in zip(seeds, heads):
            c = find_result(records, re_name.format(seed), (protocol,))
            if a is None or c is None:
                gone = [f"`{n}`" for n, r in ((hl_name.format(seed), a), (re_name.format(seed), c)) if r is None]
                lines.append(f"- {what}, seed {seed}: {' and '.join(gone)} {'are' if len(gone) > 1 else 'is'} not "
                             "in this results folder (yet).")
                continue
            ca, aa = _ap50(c), _ap50(a)
            pairs[(i, seed)] = (ca, aa)
            where = ""
            if spread is not None:
                inside = abs(ca - aa) <= spread
                ci = c["metrics"].get("ci95", {}).get("ap50")
                where = (f"; the first runs' {len(seeds)} seeds differ by {spread:.3f} AP50, so the re-run is "
                         + ("inside that spread" if inside else "**outside** that spread (a few seeds are a thin "
                            "measure of noise" + (f": the re-run's 95 % interval over the report fields is "
                                                  f"{ci[0]:.3f}-{ci[1]:.3f})" if ci else ")")))
            lines.append(f"- {what}, seed {seed}: `{re_name.format(seed)}` (commit `{c.get('git_commit', '?')[:7]}`) "
                         f"reads AP50 **{ca:.3f}**, Dice {c['metrics'].get('dice', float('nan')):.3f}, against "
                         f"{aa:.3f} and {a['metrics'].get('dice', float('nan')):.3f} for the first run "
                         f"`{hl_name.format(seed)}` (commit `{a.get('git_commit', '?')[:7]}`){where}.")
    if len(rows) > 1:
        for seed in seeds:
            ck, sv = pairs.get((0, seed)), pairs.get((1, seed))
            if ck and sv:
                lines.append(f"- Seed {seed}, re-run against re-run: {rows[0][0].split(' (')[0]} reaches "
                             f"{ck[0] / sv[0]:.2f} of {rows[1][0].split(' (')[0]} (the first runs of seed {seed}: "
                             f"{ck[1] / sv[1]:.2f}).")
    first = [pairs.get((0, s)) for s in seeds]
    name = rows[0][0].split(" (")[0]
    verdict = None
    if None not in first:
        below = all(c < min(a for _, a in first) for c, _ in first)
        verdict = "optimistic" if below else "overlap"
        mean_c, mean_a = sum(c for c, _ in first) / len(first), sum(a for _, a in first) / len(first)
        lines.append(f"- Every seed of {name} re-run: mean AP50 {mean_c:.3f} against the first runs' {mean_a:.3f}; "
                     + ("every re-run is below every first run, so the first runs were optimistic about later code."
                        if below else "the re-runs and the first runs overlap."))
    elif any(first):
        missing = ", ".join(f"`{rows[0][2].format(s)}`" for s, p in zip(seeds, first) if p is None)
        lines.append(f"- Not every seed of {name} is re-run ({missing} missing), so the check cannot yet say "
                     "whether the first runs were optimistic about later code.")
    return {"lines": lines, "pairs": pairs, "verdict": verdict}

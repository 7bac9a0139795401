"""Figures of :mod:`cks.diagnose`: boundary offset, area ratio and IoU vs the disk baseline per size bin,
and the ``M_p`` / ``M_c`` / ``B_p`` maps of a run over its snapshots.

Like :mod:`cks.viz`, every function takes the plain results (dicts of numpy arrays) and returns the
matplotlib ``Figure`` it drew on (panel functions also accept an ``ax``).
"""
from __future__ import annotations

import numpy as np

from .viz import _plt, gray


def _per_bin(result: dict, key: str, matched_only: bool = True):
    """(bin names, one finite-value array per bin) of a per-cell quantity."""
    c = result["cells"]
    names = [b["bin"] for b in result["bins"]]
    vals = []
    for b in range(len(names)):
        sel = (c["bin"] == b) & (c["matched"] if matched_only else True)
        v = np.asarray(c[key], np.float64)[sel]
        vals.append(v[np.isfinite(v)])
    return names, vals


def _boxes(ax, names, vals, color="tab:blue", offset=0.0, width=0.6, label=None):
    pos = np.arange(len(names)) + offset
    keep = [i for i, v in enumerate(vals) if len(v)]
    if keep:
        bp = ax.boxplot([vals[i] for i in keep], positions=pos[keep], widths=width, patch_artist=True,
                        showfliers=False, medianprops={"color": "black"})
        for patch in bp["boxes"]:
            patch.set_facecolor(color)
            patch.set_alpha(0.55)
        if label:
            bp["boxes"][0].set_label(label)
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels([f"{n}\n(n={len(v)})" for n, v in zip(names, vals)], fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)


def _bin_panel(result: dict, key: str, ref: float, ylabel: str, title: str, ax=None, color=None, logy=False):
    """Box plot of one per-cell quantity of matched cells per size bin, with a reference line at ``ref``."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 3.4))
    names, vals = _per_bin(result, key)
    ax.axhline(ref, color="gray", lw=1, ls="--")
    _boxes(ax, names, vals, **({"color": color} if color else {}))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("true cell diameter (px at training scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    return fig or ax.figure


def plot_offsets(result: dict, ax=None, relative: bool = False):
    """Signed boundary offset of matched cells per size bin (box plot) next to the zero line.

    Positive = the predicted boundary lies outside the true cell (masks too large, a band around the cell).
    """
    return _bin_panel(result, "offset_rel" if relative else "offset", 0.0,
                      "offset / true diameter" if relative else "signed boundary offset (px)",
                      "boundary offset (+ = outside the cell)", ax)


def plot_area_ratio(result: dict, ax=None):
    """Predicted / true area of matched cells per size bin, next to the ratio 1."""
    return _bin_panel(result, "area_ratio", 1.0, "predicted / true area", "area ratio (matched cells)", ax,
                      color="tab:orange", logy=True)


def plot_iou_vs_disk(result: dict, ax=None):
    """IoU of each GT cell with its best predicted cell vs with its Voronoi disk, per size bin (all GT cells)."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.6, 3.4))
    names, model = _per_bin(result, "iou", matched_only=False)
    _, disk = _per_bin(result, "disk_iou", matched_only=False)
    _boxes(ax, names, model, color="tab:blue", offset=-0.18, width=0.32, label="model")
    _boxes(ax, names, disk, color="tab:gray", offset=0.18, width=0.32, label="Voronoi disks")
    ax.axhline(0.5, color="gray", lw=0.8, ls=":")
    ax.set_ylim(0, 1)
    ax.set_xlabel("true cell diameter (px at training scale)")
    ax.set_ylabel("IoU with the true cell")
    ax.set_title("model vs Voronoi-disk baseline", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return fig or ax.figure


def plot_shape_diagnostics(result: dict, title: str = ""):
    """The three panels side by side: offset, area ratio, IoU vs disk (one figure)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    plot_offsets(result, axes[0])
    plot_area_ratio(result, axes[1])
    plot_iou_vs_disk(result, axes[2])
    o = result["overall"]
    cr = result["count_ratio"]
    fig.suptitle(title or (f"{o['n_gt']} GT cells, {o['n_matched']} matched (IoU >= 0.1), {o['n_matched_50']} at "
                           f"IoU >= 0.5; predicted / GT count {cr:.2f}"), fontsize=10)
    fig.tight_layout()
    return fig


def show_training_maps(maps: dict, size: float = 2.6):
    """One row per snapshot step: the crop with GT points, ``M_p``, ``M_c``, ``B_p`` (GT outlines in cyan)."""
    from skimage.segmentation import find_boundaries

    plt = _plt()
    rows = maps["rows"]
    fig, axes = plt.subplots(len(rows), 4, figsize=(size * 4, size * len(rows)), squeeze=False)
    edge = None if maps.get("label") is None else find_boundaries(maps["label"], mode="inner")
    pts = np.asarray(maps["points"]).reshape(-1, 2)
    for ax_row, r in zip(axes, rows):
        ax_row[0].imshow(gray(maps["image"]), cmap="gray")
        ax_row[0].plot(pts[:, 1], pts[:, 0], "+", color="yellow", ms=5, mew=1)
        for ax, key in zip(ax_row[1:], ("M_p", "M_c", "B_p")):
            m = r[key]
            if m is None:
                ax.text(0.5, 0.5, "no collaborator", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            else:
                ax.imshow(m, cmap="magma", vmin=0, vmax=1)
                if edge is not None:
                    ax.contour(edge, levels=[0.5], colors="cyan", linewidths=0.5)
        frac = "" if r.get("fg_fraction") is None else f" (fg {r['fg_fraction']:.2f})"
        for ax, name in zip(ax_row, ("image + points", "principal M_p (Eq. 4)", f"collaborator M_c{frac}",
                                     "principal border B_p (Eq. 9)")):
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name, fontsize=8)
        ax_row[0].set_ylabel(f"step {r['step']}", fontsize=9)
    fig.tight_layout()
    return fig


def foreground_values(rows: list[dict], key: str) -> list[float]:
    """The per-field values of the collaborator's foreground (``collaborator_foreground[key]`` of
    :func:`cks.diagnose.diagnose`: ``"collaborator"`` / ``"true"`` fractions, their ``"ratio"``, or the ``"iou"`` of
    M_c >= 0.5 with the true foreground), pooled over the fields of every row (runs or seeds) in ``rows``; rows
    without them add nothing."""
    return [float(v) for r in rows for v in (r.get("collaborator_foreground") or {}).get(key) or []]


def foreground_by_line(row: dict, key: str, how: str = "mean") -> dict[str, float]:
    """The collaborator's per-field ``collaborator_foreground[key]`` of one diagnostics row, per cell line.

    The lines are ``collaborator_foreground["cell_types"]`` (one name per field, recorded by
    :func:`cks.run_maps.collaborator_foreground_fraction`), in order of first appearance; fields without a line name
    are left out. ``how``: ``"mean"`` or ``"max"`` over each line's fields, NaN values skipped (a line whose values
    are all NaN reads NaN). Rows diagnosed before the lines were recorded give ``{}``. With one collaborator head per
    line (``collaborator.n_cell_types``) this reads each head apart. Raises ``CksDataError`` if the two lists differ
    in length, ``ValueError`` for another ``how``.
    """
    from .errors import CksDataError

    if how not in ("mean", "max"):
        raise ValueError(f"how must be 'mean' or 'max', got {how!r}")
    fg = row.get("collaborator_foreground") or {}
    lines, vals = fg.get("cell_types") or [], fg.get(key) or []
    if lines and len(lines) != len(vals):
        raise CksDataError(f"collaborator_foreground: {len(lines)} cell lines for {len(vals)} values of {key!r}")
    out: dict[str, list[float]] = {}
    for line, v in zip(lines, vals):
        if line:
            out.setdefault(line, [])
            if v is not None and v == v:
                out[line].append(float(v))
    reduce = (lambda v: sum(v) / len(v)) if how == "mean" else max
    return {line: reduce(v) if v else float("nan") for line, v in out.items()}


def diagnostics_markdown(rows: list[dict], small_bin: str = "0-16") -> str:
    """Runs side by side from their :func:`cks.diagnose.summarise` rows (``results/*/tuning_diagnostics.json``).

    Columns: the run's setting, the step, median signed boundary offset (px, + = outside), median area ratio
    (all cells and the ``small_bin`` size bin), median IoU of matched cells next to the Voronoi disks', and the
    collaborator's foreground over the true one and its IoU with the true one (ranges over images; ratio 0 = a
    collaborator that marks nothing; the IoU is how *correct* M_c is, the paper's Fig. 7 question), the
    size slope (:func:`cks.diagnose.size_slope`; "-" for rows diagnosed before it existed), and the
    run's tuning AP50 at that step where the row has it (``tuning_ap50_by_step``).
    """
    from .viz import markdown_table

    table = {}
    for r in rows:
        o = r["overall"]
        small = next((b for b in r.get("bins", []) if b["bin"] == small_bin), {})
        fg, fg_iou = foreground_values([r], "ratio"), foreground_values([r], "iou")
        table[r["run"]] = {
            "setting": r.get("config", ""), "step": r.get("step"),
            "offset px": o.get("offset_median"), "area ratio": o.get("area_ratio_median"),
            f"area ratio < {small_bin.split('-')[-1]} px": small.get("area_ratio_median"),
            "IoU / disk IoU": f"{o.get('iou_median', float('nan')):.3f} / {o.get('disk_iou_median', float('nan')):.3f}",
            "size slope": "-" if o.get("size_slope") is None else o["size_slope"],
            "M_c / true fg": f"{min(fg):.2f}-{max(fg):.2f}" if fg else "-",
            "M_c IoU": f"{min(fg_iou):.2f}-{max(fg_iou):.2f}" if fg_iou else "-",
            "tuning AP50": (r.get("tuning_ap50_by_step") or {}).get(str(r.get("step")), "-")}
    return markdown_table(table, digits=2)


def crowding_markdown(rows: list[dict]) -> str:
    """GT cells grouped by their number of touching neighbours (:func:`cks.matched_shape.touching_neighbours`), per
    run (``crowding`` of :func:`cks.diagnose.diagnose_run` rows, ``benchmarks/diagnostic_rows.py``).

    One row per run and group: the cells in it, the share with a predicted cell at IoU >= 0.5, the median IoU of
    every cell (0 where none overlaps) next to the Voronoi disks', and the median solidity of the matched
    predicted cells next to the true cells'. Rows diagnosed before the grouping existed are skipped; a row of a run's
    training weights (``weights`` "training", ``cks diagnose --training-weights``) says so after its name.
    """
    from .viz import markdown_table

    table = {}
    for r in rows:
        for g in r.get("crowding") or []:
            n = g["n_gt"]
            sol_p, sol_t = g.get("solidity_pred_median"), g.get("solidity_true_median")
            name = {"0": "alone", "1": "1 neighbour"}.get(g["group"], f"{g['group']} neighbours")
            who = r["run"] + (" (training weights)" if r.get("weights") == "training" else "")
            table[f"{who}, {name}"] = {
                "cells": n, "IoU >= 0.5": f"{g['n_matched_50'] / n:.2f}" if n else "-",
                "IoU / disk IoU": "-" if g.get("iou_median") is None else
                f"{g['iou_median']:.3f} / {g['disk_iou_median']:.3f}",
                "solidity / true": "-" if sol_p is None or sol_t is None else f"{sol_p:.2f} / {sol_t:.2f}"}
    return markdown_table(table, digits=2) if table else "*No grouped diagnostics in these rows.*"


def size_estimate_markdown(record: dict) -> str:
    """The cell size found at prediction (``benchmarks/size_at_prediction.py`` JSON) as a markdown table.

    One row per run and estimator (learned regressor after 1 and 2 passes, scale search, the learned estimate
    refined at the model's detections where measured) and one for all runs:
    fields within 20 % of the true median cell size, the median and the largest |relative error|. A record of
    resized fields (``--rescale``: ``by_factor``) has one row per factor and estimator instead of per run.
    """
    from .viz import markdown_table

    names = {"learned_1": "learned, 1 pass", "learned_2": "learned, 2 passes", "score_search": "scale search",
             "refined": "learned, refined at the detections"}
    if record.get("by_factor"):
        parts = [("all runs, all sizes", record["summary"])] + [
            (f"all runs, fields resized x{f}", v) for f, v in record["by_factor"].items()]
    else:
        parts = [("all runs", record["summary"])] + [(m, r["summary"]) for m, r in record.get("per_run", {}).items()]
    table = {}
    for run, summary in parts:
        for key, label in names.items():
            v = summary.get(key)
            if v is None:
                continue
            table[f"{run}: {label}"] = {"fields": v["fields"], "within 20 %": f"{v['within_20pct']:.0%}",
                                        "median abs error": f"{v['median_abs_error']:.1%}",
                                        "largest abs error": f"{v['max_abs_error']:.1%}"}
    return markdown_table(table, digits=2)


def collaborator_ceiling_markdown(records: list[dict]) -> str:
    """What the collaborator sees (``benchmarks/collaborator_ceiling.py`` JSONs) as one markdown table.

    One row per collaborator trained alone (its widths, what it was trained on, steps) and one per scored run
    (``runs``: its collaborator, none for a supervised run, and its principal's masks), with the foreground IoU
    of ``M_c >= 0.5`` (and of the principal's masks) against the true foreground next to the IoU of cell-sized
    disks around the true points (the same fields).
    """
    from .viz import markdown_table

    what = {"true": "the true foreground (BCE)", "disks": "disks around the points (L_M, Eq. 6)",
            "disks entropy": "disks around the points (L_CE, Eq. 5)",
            "geodesic": "geodesic regions around the points (L_M, Eq. 6)",
            "geodesic entropy": "geodesic regions around the points (L_CE, Eq. 5)"}
    table = {}
    for r in records:
        disk = r.get("disk_fg_iou")
        if "runs" in r:
            for name, v in r["runs"].items():
                widths = v.get("collaborator.foreground")
                trained = ("CKS (geodesic regions, then M_p)" if v.get("collaborator_target") == "geodesic"
                           else "CKS (M_p)") if widths else "-"
                table[f"run {name}"] = {"collaborator": "-".join(map(str, widths)) if widths else "none (supervised)",
                                        "trained on": trained, "steps": v["step"],
                                        "fg IoU": "-" if v["fg_iou"] is None else v["fg_iou"],
                                        "principal's fg IoU": v.get("principal_fg_iou", "-"), "disks' fg IoU": disk}
        else:
            on = what.get(f"{r['target']} entropy" if r.get("consistency") == "entropy" else r["target"], r["target"])
            if r.get("ring_rel"):  # an uncertain ring: no vote between the two radii
                on = (f"disks of {r['radius_rel']:g} cell diameters, no vote out to {r['ring_rel']:g} "
                      f"({'L_CE, Eq. 5' if r.get('consistency') == 'entropy' else 'L_M, Eq. 6'})")
            if r.get("geodesic_fg_iou") is not None:  # the target itself, scored like the disks
                on += f", beta {r['beta']:g} (the regions' own fg IoU {r['geodesic_fg_iou']:.3f})"
            table[r.get("name", r.get("command", "?").split("--name ")[-1].split()[0])] = {
                "collaborator": "-".join(map(str, r["collaborator_foreground"])),
                "trained on": on, "steps": r["steps"], "fg IoU": r["fg_iou"],
                "principal's fg IoU": "-", "disks' fg IoU": disk}
    return markdown_table(table, digits=3)


def plot_boundary_profile(profile: dict, ax=None, collaborator: dict | None = None):
    """Mean image intensity against the signed distance to the true and the predicted boundaries (one axis).

    ``profile``: ``diagnostics.json``'s ``boundary_profile`` (``distance``, ``true``, ``predicted``; see
    :mod:`cks.boundary_profile`). Where the predicted curve's bright peak lies inside (left of 0) while the true
    one lies just outside, the masks include the phase halo. ``collaborator``: ``collaborator_foreground``'s
    ``profile`` (:func:`cks.diagnose.collaborator_foreground_fraction`), drawn on a second axis: the mean ``M_c``
    across the TRUE boundary (a collaborator that sees the annotated outline falls from ~1 to ~0 at 0).
    """
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
    d = profile["distance"]
    ax.plot(d, profile["true"], "o-", color="0.2", label="true masks")
    ax.plot(d, profile["predicted"], "s-", color="tab:red", label="predicted masks")
    ax.axvline(0, color="0.6", lw=1, ls="--")
    ax.set_xlabel("signed distance to the mask boundary (px at training scale; outside > 0)")
    ax.set_ylabel("image intensity (per-image z-score)")
    ax.legend(frameon=False, fontsize=8)
    ax.set_title("where the mask edges sit on the image", fontsize=10)
    if collaborator:
        ax2 = ax.twinx()
        ax2.plot(collaborator["distance"], collaborator["m_c"], "^:", color="tab:blue",
                 label="collaborator M_c across the true boundary")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("mean M_c", color="tab:blue")
        ax2.legend(frameon=False, fontsize=8, loc="lower left")
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


def foreground_partition_markdown(record: dict) -> str:
    """``benchmarks/foreground_partition.py``'s JSON as one markdown table: per run, AP50 / AP75 of its cells and of
    its collaborator's ``M_c`` cut into cells from the true points, next to the true foreground cut the same way and
    the Voronoi disks (all on the same tuning fields)."""
    from .viz import markdown_table

    def cell(v):
        return "-" if not v else f"{v['ap50']:.3f} / {v['ap75']:.3f}"

    table = {}
    for name, v in record["runs"].items():
        px = v.get("collaborator_pixels")
        table[name] = {"steps": v["step"], "principal's cells": cell(v.get("principal")),
                       "M_c cut at the points": cell(v.get("collaborator")),
                       "M_c precision / recall": "-" if not px else f"{px['precision']:.2f} / {px['recall']:.2f}",
                       "M_c shrunk 1 / 2 / 3 px, cut (AP50)": "-" if not px or not px.get("eroded") else
                       " / ".join(f"{px['eroded'][k]['ap50']:.3f}" for k in sorted(px["eroded"], key=int)),
                       "true foreground cut at the points": cell(v.get("true_fg")), "disks": cell(v.get("disks"))}
    return markdown_table(table) + "\n\nEach entry: AP50 / AP75."


def resized_tuning_markdown(record: dict) -> str:
    """``benchmarks/resized_tuning.py``'s JSON as one markdown table: per run, the tuning split's AP50 with every field
    resized by each factor, at the cell size the model estimates ("own size") and at the masks' ("true size"), and
    the mean over the factors at its own size (what ``cks predict`` gives on fields of those sizes)."""
    from .viz import markdown_table

    table = {}
    for name, rows in record["runs"].items():
        row = {f"x{r['resized']:g}, {r['size'].replace('auto', 'own')} size": r["ap50"]
               for r in sorted(rows, key=lambda r: (r["size"] != "auto", r["resized"]))}
        own = [r["ap50"] for r in rows if r["size"] == "auto"]
        if own:
            row["mean, own size"] = float(np.mean(own))
        table[name] = row
    return markdown_table(table) + "\n\nEach entry: AP50 on the tuning fields resized by the factor."


__all__ = ["foreground_values", "crowding_markdown", "foreground_by_line", "resized_tuning_markdown", "foreground_partition_markdown", "plot_boundary_profile", "plot_offsets", "plot_area_ratio", "plot_iou_vs_disk", "plot_shape_diagnostics", "show_training_maps",
           "diagnostics_markdown", "size_estimate_markdown", "collaborator_ceiling_markdown"]

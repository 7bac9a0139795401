"""Figures: segmentations, collaborator maps, training curves (matplotlib, headless-safe).

Every function takes plain numpy arrays / dicts and an optional matplotlib ``Axes`` and returns
the ``Figure`` it drew on, so the book and the command line share one implementation.
"""
from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg",) and not _has_display():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _has_display() -> bool:
    import os

    return bool(os.environ.get("DISPLAY")) or "ipykernel" in __import__("sys").modules


def glue(name: str, value, display: bool = False):
    """``myst_nb.glue`` for the book's numbers: stored for ``{glue:text}`` in the prose, not shown as an output box."""
    from myst_nb import glue as _glue

    return _glue(name, value, display=display)


def gray(image: np.ndarray) -> np.ndarray:
    """First channel of ``[C, H, W]`` / ``[H, W]``, stretched to its 1-99 % percentiles, in [0, 1]."""
    a = np.asarray(image, np.float32)
    if a.ndim == 3:
        a = a[0]
    lo, hi = np.percentile(a, [1, 99]) if a.size else (0.0, 1.0)
    return np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1)


def label_colors(label: np.ndarray, seed: int = 0) -> np.ndarray:
    """RGB ``[H, W, 3]`` with one random colour per instance id (0 = black)."""
    label = np.asarray(label)
    n = int(label.max(initial=0)) + 1
    lut = np.random.default_rng(seed).uniform(0.25, 1.0, size=(n, 3))
    lut[0] = 0
    return lut[label]


def match_colors(pred: np.ndarray, gt: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """``pred`` relabelled so that a predicted cell matching a ground-truth cell (IoU > ``iou``, one-to-one for
    ``iou`` >= 0.5) carries the GT cell's id, and every other predicted cell an id above the GT's: drawn with
    :func:`overlay`, the same cell has the same colour in both panels."""
    from .metrics import intersections, iou_from_intersections

    pred, gt = np.asarray(pred), np.asarray(gt)
    pred_ids, gt_ids, pa, ga, inter = intersections(pred, gt)
    m = iou_from_intersections(pa, ga, inter).tocoo()
    ok = m.data > iou
    lut = np.zeros(int(pred.max(initial=0)) + 1, np.int64)
    top = int(gt.max(initial=0))
    lut[pred_ids] = top + 1 + np.arange(pred_ids.size)  # unmatched: new ids, beyond every GT id
    lut[pred_ids[m.row[ok]]] = gt_ids[m.col[ok]]
    return lut[pred]


def overlay(image: np.ndarray, label: np.ndarray, alpha: float = 0.45, boundaries: bool = True) -> np.ndarray:
    """Image in gray with instances tinted and their boundaries drawn, ``[H, W, 3]`` in [0, 1]."""
    from skimage.segmentation import find_boundaries

    g = gray(image)[..., None].repeat(3, -1)
    col = label_colors(label)
    fg = (np.asarray(label) > 0)[..., None]
    out = np.where(fg, (1 - alpha) * g + alpha * col, g)
    if boundaries:
        b = find_boundaries(label, mode="inner")
        out[b] = col[b]
    return out


def show_segmentation(image, label, points=None, gt=None, title: str = "", ax=None, figsize=(6, 6)):
    """Overlay of a label image on the image, with optional points (y, x) and GT outlines."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    ax.imshow(overlay(image, label))
    if gt is not None:
        from skimage.segmentation import find_boundaries

        b = find_boundaries(gt, mode="inner")
        ax.contour(b, levels=[0.5], colors="white", linewidths=0.6)
    if points is not None and len(points):
        p = np.asarray(points)
        ax.plot(p[:, 1], p[:, 0], "+", color="yellow", ms=6, mew=1.2)
    ax.set_title(title)
    ax.axis("off")
    return fig or ax.figure


def show_maps(image, maps: dict, ncols: int | None = None, size: float = 3.2):
    """Image next to named maps (e.g. ``{"M_p": ..., "M_c": ..., "B_c": ...}``), each in [0, 1]
    unless it is an integer label image (then coloured)."""
    plt = _plt()
    n = len(maps) + 1
    ncols = ncols or n
    nrows = (n + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    axes = axes.ravel()
    axes[0].imshow(gray(image), cmap="gray")
    axes[0].set_title("image")
    for ax, (name, m) in zip(axes[1:], maps.items()):
        m = np.asarray(m)
        if np.issubdtype(m.dtype, np.integer):
            ax.imshow(overlay(image, m))
        else:
            ax.imshow(m, cmap="magma", vmin=0, vmax=1)
        ax.set_title(name)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_history(history: list[dict], keys=("total", "L_det", "L_S", "L_M", "L_B", "L_MC", "L_sup"),
                 val_keys=("val_ap50", "val_dice"), title: str = ""):
    """Loss terms (log scale) and validation metrics against the step."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for k in keys:
        pts = [(r["step"], r[k]) for r in history if k in r]
        if pts:
            s, v = zip(*pts)
            a1.plot(s, v, label=k)
    a1.set_yscale("log")
    a1.set_xlabel("step")
    a1.set_title("training losses")
    a1.legend(fontsize=7)
    for k in val_keys:
        pts = [(r["step"], r[k]) for r in history if k in r and r[k] == r[k]]
        if pts:
            s, v = zip(*pts)
            a2.plot(s, v, "o-", label=k)
    a2.set_xlabel("step")
    a2.set_ylim(0, 1)
    a2.set_title("validation")
    a2.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _boundary_rgb(image, label, color=(0.0, 0.9, 1.0)) -> np.ndarray:
    """Gray image as RGB with the inner boundaries of ``label`` drawn in ``color``."""
    from skimage.segmentation import find_boundaries

    rgb = gray(image)[..., None].repeat(3, -1)
    if label is not None:
        rgb[find_boundaries(np.asarray(label), mode="inner")] = color
    return rgb


def _zoom(ax, zoom):
    """Restrict ``ax`` to ``zoom = (y0, x0, h, w)`` pixels (None: leave as is)."""
    if zoom is not None:
        y0, x0, h, w = zoom
        ax.set_xlim(x0 - 0.5, x0 + w - 0.5)
        ax.set_ylim(y0 + h - 0.5, y0 - 0.5)


_POINT_STYLES = (("+", "yellow"), ("x", "red"), ("o", "lime"), ("^", "magenta"), ("s", "orange"))


def show_points(image, point_sets: dict, label=None, title: str = "", ax=None, figsize=(6, 6), zoom=None,
                ms: float = 6.0):
    """Image in gray, GT outlines of ``label`` (cyan) and one marker style per named point set.

    Args:
        point_sets: ``{name: [N, 2] (y, x) points}`` (the legend shows each set's size).
        zoom: optional ``(y0, x0, h, w)`` region to show.
    """
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    ax.imshow(_boundary_rgb(image, label))
    for (name, pts), (marker, color) in zip(point_sets.items(), _POINT_STYLES):
        p = np.asarray(pts, np.float32).reshape(-1, 2)
        ax.plot(p[:, 1], p[:, 0], marker, color=color, ms=ms, mew=1.1, mfc="none", ls="none",
                label=f"{name} ({len(p)})")
    if point_sets:
        ax.legend(fontsize=7, loc="lower right", framealpha=0.7)
    _zoom(ax, zoom)
    ax.set_title(title)
    ax.axis("off")
    return fig or ax.figure


def plot_coverage(rows: dict, title: str = "point coverage"):
    """Stacked bars of :func:`cks.points.point_coverage` results, one bar per named point set:
    fraction of cells with exactly one point, with none and with two or more."""
    plt = _plt()
    names = list(rows)
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(names) + 1.4))
    left = np.zeros(len(names))
    for key, text, color in (("exactly_one", "exactly one point", "tab:green"), ("none", "no point", "0.6"),
                             ("multiple", "two or more", "tab:red")):
        v = np.array([float(rows[n][key]) for n in names])
        ax.barh(names, v, left=left, color=color, label=text)
        left += v
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("fraction of annotated cells")
    ax.legend(fontsize=7, ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.set_title(title, pad=22)
    fig.tight_layout()
    return fig


def plot_curves(x, curves: dict, xlabel: str = "", ylabel: str = "", title: str = "", logx: bool = False,
                logy: bool = False, marks: dict | None = None, ax=None, figsize=(5.5, 3.6)):
    """Line plot of ``{name: y}`` against ``x``; ``marks = {text: (x, y)}`` adds annotated dots."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    for name, y in curves.items():
        ax.plot(np.asarray(x), np.asarray(y), label=name)
    for text, (mx, my) in (marks or {}).items():
        ax.plot([mx], [my], "o", color="k", ms=4)
        ax.annotate(text, (mx, my), textcoords="offset points", xytext=(5, 6), fontsize=7)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if curves:
        ax.legend(fontsize=7)
    (fig or ax.figure).tight_layout()
    return fig or ax.figure


def plot_validation_curves(records: list[dict], metrics=("ap50", "dice"), title: str = "", size=(4.6, 3.2)):
    """Tuning-split curves of recorded results (``record["validation_curve"]``: step, val_ap50, ...), one panel
    per metric, one line per result: shows whether each run had converged when it stopped."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(metrics), figsize=(size[0] * len(metrics), size[1]), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        for r in records:
            curve = [c for c in r.get("validation_curve") or [] if f"val_{m}" in c]
            if curve:
                ax.plot([c["step"] for c in curve], [c[f"val_{m}"] for c in curve], marker=".", label=r["model"])
        ax.set_xlabel("training step")
        ax.set_ylabel(f"{m} (tuning split)")
        ax.set_title(f"{title} {m}".strip(), fontsize=9)
        if ax.lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def _cells(rows: dict, columns, digits: int):
    columns = list(columns or dict.fromkeys(k for r in rows.values() for k in r))

    def cell(v):
        if v is None:
            return "-"
        if isinstance(v, (float, np.floating)):
            return "nan" if v != v else f"{float(v):.{digits}f}"
        return str(v)

    return columns, [(str(name), [cell(r.get(c)) for c in columns]) for name, r in rows.items()]


def markdown_table(rows: dict, columns=None, digits: int = 3) -> str:
    """``{row name: {column: value}}`` as a Markdown (GFM) table (floats rounded; missing -> "-")."""
    columns, body = _cells(rows, columns, digits)
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(vals) + " |" for name, vals in body]
    return "\n".join(lines)


class Table:
    """A small results table that notebooks show as HTML (and text consoles as Markdown).

    ``Table(rows, columns=None, digits=3)`` with ``rows = {row name: {column: value}}``; end a
    notebook cell with it (the book renders the HTML form, which needs no Markdown table extension).
    """

    def __init__(self, rows: dict, columns=None, digits: int = 3):
        self.rows, self.columns, self.digits = rows, columns, digits

    def _repr_html_(self) -> str:
        from html import escape

        columns, body = _cells(self.rows, self.columns, self.digits)
        head = "".join(f"<th>{escape(c)}</th>" for c in columns)
        trs = "".join(f"<tr><th>{escape(n)}</th>" + "".join(f"<td>{escape(v)}</td>" for v in vals) + "</tr>"
                      for n, vals in body)
        return f"<table><thead><tr><th></th>{head}</tr></thead><tbody>{trs}</tbody></table>"

    def _repr_markdown_(self) -> str:
        return markdown_table(self.rows, self.columns, self.digits)

    def __str__(self) -> str:
        return self._repr_markdown_()


def standing_figure(records: list[dict], metric: str = "AP50", protocols=None, paper: bool = True):
    """One panel per protocol: every result's ``metric`` with its 95 % interval, best first (matplotlib).

    With ``paper`` the paper's all-LIVECell CKS-1 and supervised values (:func:`paper_reference`) are drawn as
    dashed lines in every panel and named in the legend as other data.
    """
    from .paper import paper_reference
    from .report import METRIC_KEYS

    plt = _plt()
    key = METRIC_KEYS[metric]
    protos = protocols or sorted({r["protocol"] for r in records})
    protos = [p for p in protos if any(r["protocol"] == p and r["metrics"].get(key) is not None for r in records)]
    if not protos:
        return None
    recs = {p: sorted((r for r in records if r["protocol"] == p and r["metrics"].get(key) is not None),
                      key=lambda r: r["metrics"][key]) for p in protos}
    heights = [max(1.2, 0.28 * len(v) + 0.6) for v in recs.values()]
    fig, axes = plt.subplots(len(protos), 1, figsize=(7.5, sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, p in zip(axes[:, 0], protos):
        rs = recs[p]
        v = [float(r["metrics"][key]) for r in rs]
        ci = [(r["metrics"].get("ci95") or {}).get(key) for r in rs]
        lo = [x - c[0] if c else 0.0 for x, c in zip(v, ci)]
        hi = [c[1] - x if c else 0.0 for x, c in zip(v, ci)]
        y = range(len(rs))
        ax.errorbar(v, y, xerr=[lo, hi], fmt="o", ms=4, capsize=2, color="C0")
        ax.set_yticks(list(y), [r["model"] for r in rs], fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_title(p, fontsize=9, loc="left")
        ax.grid(axis="x", alpha=0.3)
        if paper:
            ref = paper_reference(metric)
            for (name, x), color in zip(((k, ref[k]) for k in ("CKS-1", "Supervised") if k in ref), ("C3", "C2")):
                ax.axvline(x, ls="--", lw=1, color=color,
                           label=f"paper {name}, LIVECell (other data): {x:.3f}")
    axes[-1, 0].set_xlabel(f"{metric} on the report split (dot) with 95 % bootstrap interval over images")
    if paper:
        axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig

"""Figures of the models' internal maps: detection scores per stride, segmentation windows, location
encodings and the CKS training progression (Fig. 4 analogue).

Like :mod:`cks.viz`, every function takes numpy arrays (or tensors, converted here) and returns the
matplotlib ``Figure`` it drew on.
"""
from __future__ import annotations

import numpy as np

from .viz import _boundary_rgb, _plt, _zoom, gray, overlay


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a)


def show_stride_maps(image, score_maps: dict, detections: dict, gt_points=None, zoom=None, size: float = 3.4):
    """One panel per stride ``s``: the score map ``D = sigmoid(logits)`` of that stride, drawn over the
    image at its grid (cell u covers pixels ``s*u .. s*u + s - 1``), with the detections decoded
    from that stride alone.

    Args:
        score_maps: ``{s: [h_s, w_s]}`` probabilities (or targets). detections: ``{s: [n, 2] (y, x)}``;
            a stride missing from it gets no markers (e.g. when showing targets).
        gt_points: optional ``[N, 2]`` point labels (drawn as small cyan dots).
        zoom: optional ``(y0, x0, h, w)`` region.
    """
    plt = _plt()
    strides = list(score_maps)
    h, w = np.shape(image)[-2:]
    fig, axes = plt.subplots(1, len(strides), figsize=(size * len(strides), size), squeeze=False)
    for ax, s in zip(axes[0], strides):
        d = _np(score_maps[s])
        ax.imshow(gray(image), cmap="gray")
        ax.imshow(d, cmap="magma", vmin=0, vmax=1, alpha=0.55, interpolation="nearest",
                  extent=(-0.5, d.shape[1] * s - 0.5, d.shape[0] * s - 0.5, -0.5))
        if gt_points is not None:
            g = _np(gt_points).reshape(-1, 2)
            ax.plot(g[:, 1], g[:, 0], ".", color="cyan", ms=3)
        title = f"stride {s}"
        if s in detections:
            p = _np(detections[s]).reshape(-1, 2)
            ax.plot(p[:, 1], p[:, 0], "+", color="yellow", ms=7, mew=1.3)
            title += f": {len(p)} detections"
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        _zoom(ax, zoom)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def show_windows(image, points, origins, window: int, label=None, highlight=None, title: str = "", ax=None,
                 figsize=(6, 6), zoom=None):
    """Segmentation windows (S x S squares from their top-left ``origins``) around cell ``points``.

    ``highlight``: indices of windows drawn thick (the others thin); ``label``: GT outlines.
    """
    plt = _plt()
    from matplotlib.patches import Rectangle

    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    ax.imshow(_boundary_rgb(image, label))
    pts, org = _np(points).reshape(-1, 2), _np(origins).reshape(-1, 2)
    strong = set(int(i) for i in (highlight if highlight is not None else range(len(pts))))
    for i, (p, o) in enumerate(zip(pts, org)):
        bold = i in strong
        ax.add_patch(Rectangle((o[1] - 0.5, o[0] - 0.5), window, window, fill=False,
                               ec="yellow" if bold else "white", lw=1.6 if bold else 0.4, alpha=1 if bold else 0.5))
        ax.plot(p[1], p[0], "+", color="yellow" if bold else "white", ms=6 if bold else 3)
    h, w = np.shape(image)[-2:]
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    _zoom(ax, zoom)
    ax.set_title(title)
    ax.axis("off")
    return fig or ax.figure


def show_encodings(encodings: dict, n_channels: int = 4, size: float = 1.9):
    """One row per named location encoding ``[C, h, w]``: its first ``n_channels`` channels, each on a
    symmetric colour scale (blue negative, red positive)."""
    plt = _plt()
    names = list(encodings)
    fig, axes = plt.subplots(len(names), n_channels, figsize=(size * n_channels, size * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        e = _np(encodings[name])
        for c, ax in enumerate(row):
            ax.axis("off")
            if c >= e.shape[0]:
                continue
            v = float(np.abs(e[c]).max()) or 1.0
            ax.imshow(e[c], cmap="coolwarm", vmin=-v, vmax=v)
            ax.set_title(f"{name} [{c}]", fontsize=8)
    fig.tight_layout()
    return fig


def show_progression(image, rows: list, size: float = 2.7, zoom=None):
    """Fig. 4 analogue: one row per training step, columns = the principal's instances (overlay), the
    collaborator's foreground ``M_c`` and border ``B_c``.

    Args:
        rows: list of ``{"step": int, "label": [H, W] int, "foreground": [H, W], "border": [H, W]}``.
    """
    plt = _plt()
    fig, axes = plt.subplots(len(rows), 3, figsize=(size * 3, size * len(rows)), squeeze=False)
    for ax_row, r in zip(axes, rows):
        ax_row[0].imshow(overlay(image, _np(r["label"])))
        ax_row[1].imshow(_np(r["foreground"]), cmap="gray", vmin=0, vmax=1)
        ax_row[2].imshow(_np(r["border"]), cmap="gray", vmin=0, vmax=1)
        for ax, name in zip(ax_row, ("instances (principal)", "foreground M_c", "border B_c")):
            _zoom(ax, zoom)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}", fontsize=8)
        ax_row[0].set_ylabel(f"step {r['step']}", fontsize=9)
    fig.tight_layout()
    return fig


__all__ = ["show_stride_maps", "show_windows", "show_encodings", "show_progression"]

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

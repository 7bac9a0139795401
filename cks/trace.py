"""Consistency trace: where the principal's instance masks and the collaborator's ``M_c`` sit on the true cells,
snapshot by snapshot. It tells a collapse (every ``m_i`` and ``M_c`` falling towards 0, the failure that
``L_MC`` of Sec. III-C is there to prevent) from masks that merely spread over the neighbours.

For each snapshot of a run (``run/snapshots/step_*.pt``), on labelled images:

* ``m_c_cells`` / ``m_c_background``: mean ``M_c = sigmoid(fg_logits)`` on the true foreground / background;
* ``mask_own``: mean of every instance mask ``m_i`` (``[S, S]`` window at the cell's true centroid, as in
  training) over the pixels of its own cell; ``mask_own_confident``: the fraction of those pixels with
  ``m_i >= 0.5`` (what a prediction keeps);
* ``mask_neighbours``: mean ``m_i`` over the pixels of the *other* true cells inside window i. Eq. 8's overlap
  term ``m_i sum_{j != i} m_j`` is what keeps this low;
* ``mask_peak``: median over the windows of ``max m_i`` (below 0.5, a prediction at threshold 0.5 is empty);
* ``prior_on``: whether the prior of Eq. 4 was on (pi > 0) in the last training step before the snapshot.

Each statistic is a mean over the pixels of all windows of one image (one vectorised gather, no loop over
cells), then averaged over the images weighted by their number of cells. Used by ``benchmarks/consistency_trace.py`` and the consistency-ablation chapter (07b).
"""
from __future__ import annotations

import numpy as np

from .errors import CksDataError

__all__ = ["mask_statistics", "consistency_trace", "plot_consistency_trace"]

KEYS = ("m_c_cells", "m_c_background", "mask_own", "mask_own_confident", "mask_neighbours", "mask_peak")
#: panel titles of :func:`plot_consistency_trace`
TITLES = {"m_c_cells": "M_c on the true cells", "m_c_background": "M_c on the background",
          "mask_own": "m_i on its own cell", "mask_own_confident": "own-cell pixels with m_i >= 0.5",
          "mask_neighbours": "m_i on the neighbours' cells", "mask_peak": "max of m_i (median window)"}


def mask_statistics(masks, seg_batch, seg_origin, own_ids, labels, m_c=None) -> dict:
    """The trace statistics of one batch of instance masks (module docstring).

    Args:
        masks: ``[K, S, S]`` instance masks ``m_i`` in [0, 1] (sigmoid of the segmentor's logits).
        seg_batch: ``[K]`` image of each window. seg_origin: ``[K, 2]`` top-left (y, x) of each window.
        own_ids: ``[K]`` label id of the cell each window is for.
        labels: ``[B, H, W]`` true instance labels (0 = background).
        m_c: ``[B, H, W]`` collaborator foreground ``M_c`` in [0, 1], or None (a supervised run).
    Returns:
        ``{key: float}`` for every key of :data:`KEYS` (NaN where there is nothing to average, e.g. no
        neighbour pixel in any window; ``m_c_*`` NaN without ``m_c``).
    """
    import torch

    from .windows import gather_windows

    masks = torch.as_tensor(masks, dtype=torch.float32)
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
    if masks.ndim != 3 or labels.ndim != 3:
        raise CksDataError(f"mask_statistics: masks [K, S, S] and labels [B, H, W], got {tuple(masks.shape)} and "
                           f"{tuple(labels.shape)}")
    nan = float("nan")

    def mean(x: torch.Tensor) -> float:
        return float(x.mean()) if x.numel() else nan

    out = dict.fromkeys(KEYS, nan)
    if m_c is not None:
        m_c = torch.as_tensor(np.asarray(m_c), dtype=torch.float32)
        fg = labels > 0
        out["m_c_cells"], out["m_c_background"] = mean(m_c[fg]), mean(m_c[~fg])
    if masks.shape[0] == 0:
        return out
    # off-image window pixels read label 0: neither own cell nor neighbour
    lw = gather_windows(labels, torch.as_tensor(seg_batch), torch.as_tensor(seg_origin), masks.shape[-1])
    own = lw == torch.as_tensor(own_ids, dtype=torch.float32)[:, None, None]
    other = (lw > 0) & ~own
    out["mask_own"], out["mask_own_confident"] = mean(masks[own]), mean((masks[own] >= 0.5).float())
    out["mask_neighbours"] = mean(masks[other])
    out["mask_peak"] = float(masks.amax(dim=(1, 2)).median())
    return out


def consistency_trace(run_dir, samples: list[dict], max_snapshots: int | None = None) -> list[dict]:
    """:func:`mask_statistics` at every snapshot of a run, on labelled images.

    Args:
        run_dir: run folder (``snapshots/step_*.pt``, else ``checkpoint.pt``) or one checkpoint file.
        samples: dicts with ``image`` and ``label`` (and optional ``cell_type``). For a size-normalised run they
            are at native resolution and each is rescaled so its cells (from its masks) have ``size.diameter``
            px, as in training; for a fixed-scale run give them at the training scale.
        max_snapshots: keep this many snapshots, evenly spaced (the last always kept).
    Returns:
        one dict per snapshot: ``step``, ``prior_on``, ``n_cells`` and the :data:`KEYS`, each the mean over the
        images (weighted by their number of cells for the mask statistics).
    """
    import torch

    from .checkpoint import load_checkpoint
    from .config import Config
    from .data.normalize import normalize_cell_size
    from .run_maps import _collaborator, _image_tensor, snapshot_files
    from .models.principal import Principal
    from .points import centroids
    from .schedule import loss_config_at

    if not samples or any(s.get("label") is None for s in samples):
        raise CksDataError("consistency_trace: give at least one image, each with its label image (masks)")
    files = snapshot_files(run_dir, max_snapshots)
    rows, scaled = [], None
    for f in files:
        ck = load_checkpoint(f)
        cfg = Config.from_dict(ck["config"])
        if scaled is None:
            scaled = normalize_cell_size(samples, cfg.size.diameter, use_masks=True) if cfg.size.normalize else samples
        principal = Principal(cfg, scale=float(ck.get("scale", 1.0)))
        principal.load_state_dict(ck.get("principal_raw", ck["principal"]))  # the weights beside this collaborator (cks.ema)
        principal.eval()
        collab = _collaborator(ck)
        step = int(ck.get("step", 0))
        per_image, weights = [], []
        for s in scaled:  # loop over images; the cells of an image are one batch
            lab = np.asarray(s["label"])
            ids, pts = centroids(lab)
            if len(ids) == 0:
                continue
            x = _image_tensor(s["image"])[None]
            ct = torch.tensor([max(int(s.get("cell_type", 0) or 0), 0)])
            with torch.no_grad():
                out = principal(x, torch.from_numpy(pts)[None])
                m_c = None if collab is None else torch.sigmoid(collab(x, ct)["fg_logits"])
            own = torch.from_numpy(ids.astype(np.int64))[out["seg_index"]]
            per_image.append(mask_statistics(torch.sigmoid(out["seg_logits"]), out["seg_batch"], out["seg_origin"],
                                             own, lab[None], m_c))
            weights.append(len(ids))
        if not per_image:
            raise CksDataError("consistency_trace: no image has a labelled cell")
        w = np.asarray(weights, float)
        last = max(step - 1, 0)  # the snapshot at step k holds the weights after training steps 0 .. k - 1
        row = {"step": step, "prior_on": float(loss_config_at(cfg, last).prior_scale) > 0, "n_cells": int(w.sum())}
        for k in KEYS:
            v = np.asarray([p[k] for p in per_image], float)
            ok = np.isfinite(v)
            row[k] = float(np.average(v[ok], weights=w[ok])) if ok.any() else float("nan")
        rows.append(row)
    return rows


def plot_consistency_trace(runs: dict, keys=("mask_own", "mask_neighbours", "m_c_cells"), axes=None):
    """One panel per statistic of :data:`KEYS`, one line per run, against the training step; the snapshots taken
    after the prior of Eq. 4 was switched off are drawn hollow.

    Args:
        runs: ``{name: rows}`` with rows from :func:`consistency_trace` (or ``{name: {"rows": rows}}``, as in
            ``results/consistency_trace/*.json``).
        keys: which statistics, one panel each. axes: matplotlib axes (``len(keys)``), or None for a new figure.
    Returns:
        the matplotlib figure.
    """
    import matplotlib.pyplot as plt

    bad = [k for k in keys if k not in KEYS]
    if bad:
        raise CksDataError(f"plot_consistency_trace: unknown statistic(s) {bad}; choose from {list(KEYS)}")
    if axes is None:
        _, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
        axes = axes[0]
    for name, rows in runs.items():
        rows = rows["rows"] if isinstance(rows, dict) else rows
        steps = [r["step"] for r in rows]
        for ax, k in zip(axes, keys):
            line, = ax.plot(steps, [r[k] for r in rows], "-", label=name)
            on = [r["prior_on"] for r in rows]
            ax.scatter(steps, [r[k] for r in rows], s=28, zorder=3, edgecolors=line.get_color(),
                       facecolors=[line.get_color() if o else "none" for o in on])
    for ax, k in zip(axes, keys):
        ax.set_title(TITLES[k], fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylim(-0.02, 1.02)
        ax.axhline(0.5, color="0.7", lw=0.8, ls=":")
    axes[0].legend(fontsize=7, loc="best")
    fig = axes[0].figure
    fig.tight_layout()
    return fig

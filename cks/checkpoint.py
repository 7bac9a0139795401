"""Atomic checkpoints and model loading.

A checkpoint is one ``torch.save`` file holding the configuration (as a dict), the weights of the
principal model (and the collaborator while training), the optimiser state, the step and every
RNG state, so ``--resume`` continues a killed run exactly. It is written to ``<path>.tmp``,
flushed to disk and then renamed over ``<path>`` (``os.replace`` is atomic on POSIX), so a
``kill -9`` at any moment leaves either the previous or the new checkpoint, never half of one.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from .config import Config
from .errors import CksCheckpointError, CksConfigError

FORMAT_VERSION = 1


def atomic_save(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (:func:`cks.data.writers.atomic_write_bytes`)."""
    import io

    from .data.writers import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(buf.getvalue(), path)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint file or a run folder (``<run>/checkpoint.pt``) with clear errors."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.exists():
        raise CksCheckpointError(f"{p}: no checkpoint found; pass a run folder written by `cks train` or a .pt file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated / not a torch file
        raise CksCheckpointError(f"{p}: not a readable cks checkpoint ({type(e).__name__}); "
                                 "re-run training or point at another file") from None
    if not isinstance(ckpt, dict) or "config" not in ckpt or "principal" not in ckpt:
        raise CksCheckpointError(f"{p}: not a cks checkpoint (missing config/principal weights)")
    return ckpt


def load_model(path: str | os.PathLike, device: str = "cpu", weights: str = "model"):
    """The trained principal model (eval mode) of a run folder or checkpoint file.

    ``model.size_model`` is the run's learned size regressor (``size_model.json`` beside the checkpoint,
    :mod:`cks.size_model`) or None; :func:`cks.predict.predict` uses it to find each image's cell size.
    ``weights``: ``"model"`` (default) the run's model, i.e. the moving average for a run trained with
    ``train.ema`` (:mod:`cks.ema`); ``"training"`` the weights training itself reached (``principal_raw``; the same
    as ``"model"`` for a run without the average). The size regressor was fitted on the model's weights."""
    if weights not in ("model", "training"):
        raise CksConfigError(f"load_model: weights must be 'model' or 'training', got {weights!r}")
    from .models.principal import Principal

    ckpt = load_checkpoint(path)
    try:
        cfg = Config.from_dict(ckpt["config"])
        model = Principal(cfg, scale=float(ckpt.get("scale", 1.0)))
    except (CksConfigError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise CksCheckpointError(f"{path}: checkpoint config is incompatible with this cks version "
                                 f"({type(e).__name__}: {e}); re-train or use a matching cks version") from None
    try:
        model.load_state_dict(ckpt.get("principal_raw", ckpt["principal"]) if weights == "training"
                              else ckpt["principal"])
    except (RuntimeError, TypeError, AttributeError, KeyError) as e:
        first = (str(e).splitlines() or [""])[0]
        raise CksCheckpointError(f"{path}: weights do not fit the model built from its config ({first}); "
                                 "the checkpoint was edited or comes from another model, re-train") from None
    from .size_model import find_size_model

    model.size_model = find_size_model(path)  # the learned size regressor of the run, if fitted (cks.size_model)
    return model.to(device).eval()

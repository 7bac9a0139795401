"""A training run's folder: ``config.json``, ``checkpoint.pt``, ``metrics.jsonl``, ``snapshots/``, and resuming.

* ``checkpoint.pt`` (atomic, :func:`cks.checkpoint.atomic_save`): config, both models' weights, the optimiser,
  the step, every RNG state, the training scale and the wall / CPU seconds so far — everything a resumed run
  needs to continue exactly where a killed one stopped (``tests/test_train.py`` checks bit-identical weights);
  with ``train.ema`` the principal's moving average is ``principal`` (the model) and its training weights
  ``principal_raw`` (:mod:`cks.ema`);
* ``snapshots/step_XXXXXX.pt``: weights only, at ``train.snapshots`` evenly spaced steps (``cks diagnose``);
* ``metrics.jsonl``: one JSON row per logged step (losses; validation scores at ``train.val_every``), plus
  event rows (``extended``: a resumed run with a larger step budget; ``resumed``: rows logged after the last
  checkpoint are superseded). :func:`read_history` gives the clean history;
* ``size_model.json``: the learned cell-size regressor, fitted when training stops (:mod:`cks.size_model`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from .checkpoint import atomic_save, load_checkpoint, rng_state, set_rng_state
from .config import Config
from .errors import CksCheckpointError, CksDataError
from .schedule import finetune_start, prior_end

#: config fields a resumed run may change: extending the step budget, and the two schedule fractions
#: (fine-tune point, end of the prior) so that an extended run keeps the steps at which they acted
EXTENDABLE = {"train.steps", "train.finetune_from", "train.val_every", "train.checkpoint_every", "loss.prior_until"}


def config_changes(old: dict, new: dict) -> dict[str, list]:
    """``{"section.key": [old, new]}`` for every differing field of two config dicts."""
    out = {}
    for sec in set(old) | set(new):
        a, b = old.get(sec, {}), new.get(sec, {})
        for k in set(a) | set(b):
            va, vb = a.get(k), b.get(k)
            if (list(va) if isinstance(va, (list, tuple)) else va) != (list(vb) if isinstance(vb, (list, tuple)) else vb):
                out[f"{sec}.{k}"] = [va, vb]
    return out


def append_row(out: Path | None, row: dict) -> None:
    """One row of ``metrics.jsonl`` (no-op without a run folder)."""
    if out is not None:
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")


def restore(ckpt_path: Path, cfg: Config, module, opt, device, log_to: Path | None, ema=None) -> tuple[int, float, float]:
    """Load a run's checkpoint into ``module`` and ``opt`` (and the RNG states) for ``cfg``.

    ``ema`` (a :class:`cks.ema.WeightAverage`, with ``train.ema``): the average is restored from ``principal`` and
    the module's principal from ``principal_raw``.

    Only :data:`EXTENDABLE` fields may differ from the checkpoint's config (logged as an ``extended`` row);
    rows logged after the checkpoint are marked superseded. Returns ``(step, wall_s, cpu_s)`` so far.
    """
    ck = load_checkpoint(ckpt_path)
    old = Config.from_dict(ck["config"])
    changed = config_changes(old.to_dict(), cfg.to_dict())
    if set(changed) - EXTENDABLE:
        raise CksCheckpointError(f"{ckpt_path}: was written with another configuration "
                                 f"({', '.join(sorted(set(changed) - EXTENDABLE))} differ); resume with the same "
                                 "preset/--set values or use a new --out folder")
    start = int(ck["step"])
    if changed:  # an extension is part of the run's record
        append_row(log_to, {"step": start, "event": "extended", "changes": changed,
                            "finetune_step_before": finetune_start(old), "finetune_step_now": finetune_start(cfg),
                            "prior_off_step_before": prior_end(old), "prior_off_step_now": prior_end(cfg)})
    if ema is not None:
        if "principal_raw" not in ck:
            raise CksCheckpointError(f"{ckpt_path}: has no principal_raw weights although train.ema is set")
        ema.load_state_dict(ck["principal"])
        module.principal.load_state_dict(ck["principal_raw"])
    else:
        module.principal.load_state_dict(ck["principal"])
    if module.collaborator is not None:
        module.collaborator.load_state_dict(ck["collaborator"])
    module.to(device)
    opt.load_state_dict(ck["optimizer"])
    set_rng_state(ck["rng"])
    if log_to is not None and (log_to / "metrics.jsonl").exists():
        append_row(log_to, {"step": start, "event": "resumed", "note": "lines above with a larger step were "
                                                                       "logged after the last checkpoint and are superseded"})
    return start, float(ck.get("wall_s", 0.0)), float(ck.get("cpu_s", 0.0))


def save(out: Path, cfg: Config, module, opt, step: int, scale: float, wall_s: float, cpu_s: float,
         snapshot: bool = False, ema=None) -> None:
    """The checkpoint (and, with ``snapshot``, a weights-only snapshot of this step).

    ``ema`` given: ``principal`` is the moving average (the model every reader loads), ``principal_raw`` the
    training weights."""
    weights = {"config": cfg.to_dict(),
               "principal": (ema.state_dict() if ema is not None else module.principal.state_dict()),
               "collaborator": module.collaborator.state_dict() if module.collaborator else None,
               "step": step, "scale": scale, "version": 1}
    if ema is not None:
        weights["principal_raw"] = module.principal.state_dict()
    if snapshot:
        atomic_save(weights, out / "snapshots" / f"step_{step:06d}.pt")
    atomic_save({**weights, "optimizer": opt.state_dict(), "rng": rng_state(), "wall_s": wall_s, "cpu_s": cpu_s},
                out / "checkpoint.pt")


def read_history(run_dir: str | os.PathLike) -> list[dict]:
    """The rows of ``run_dir/metrics.jsonl`` as one history: event lines dropped, and rows logged after the
    last checkpoint of an interrupted segment (superseded by a ``resumed`` marker) removed."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise CksDataError(f"{path}: no training history; is {run_dir} a run folder of `cks train`?")
    rows: list[dict] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        if r.get("event") == "resumed":
            rows = [x for x in rows if x["step"] <= r["step"]]
        elif "event" not in r:
            rows.append(r)
    return rows


__all__ = ["EXTENDABLE", "config_changes", "append_row", "restore", "save", "read_history"]

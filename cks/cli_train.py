"""``cks train``: the preset by --labels (:data:`DEFAULT_PRESETS`; on ``--resume``, the run's own), the training images
and their labels, the CPU defaults, and the run itself.

Part of the ``cks`` command line (:mod:`cks.cli` builds the parser and turns every :class:`cks.errors.CksError`
into a one-line ``error: ...`` and exit status 2). Training itself is :func:`cks.train.train`.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from .errors import CksError

__all__ = ["cmd_train", "nuclear_prior_note", "default_preset", "preset_config", "resumed_preset", "DEFAULT_PRESETS",
           "OLD_DEFAULT_PRESET", "CPU_STEPS", "CPU_CROP"]


def _load_training(a, spec, scale, labels, keep_masks=False):
    from .data.spec import load_dataset

    samples = load_dataset(spec, scale=scale, points="nuclei" if labels == "nuclei" else "auto")
    return _prepare_labels(a, samples, labels, keep_masks)


def _prepare_labels(a, samples, labels, keep_masks=False):
    """Masks -> centroid points (supervised); points: drop the masks, check the points, optional jitter.

    ``keep_masks`` (``loss.foreground_from=masks``, a diagnostic): point training keeps the masks for L_S only.
    """
    from .points import centroids, jitter, validate_points

    rng = np.random.default_rng(a.seed)
    for s in samples:
        where, pts, (h, w) = s.get("image_path") or s["name"], s.get("points"), s["image"].shape[-2:]
        if labels == "masks":
            if s.get("label") is None:
                raise CksError(f"{where}: --labels masks needs an instance label image; add one (label_file) "
                               "or train from points with --labels points")
            s["point_ids"], s["points"] = centroids(s["label"])
            continue
        if keep_masks and s.get("label") is None:
            raise CksError(f"{where}: loss.foreground_from=masks needs an instance label image for every training image")
        if not keep_masks:
            s["label"] = None  # point supervision: masks never reach the trainer
        if pts is None or len(pts) == 0:
            raise CksError(f"{where}: no points; give point labels (or --labels masks)")
        validate_points(pts, (h, w), name=str(where), allow_empty=False)
        if a.jitter > 0:
            s["points"] = jitter(pts, a.jitter, rng, shape=(h, w))
    return samples


#: `cks train` on a machine without a GPU: a budget a 2-core laptop can spend (the paper's 90,000 steps of
#: 512-px crops take days there); ~1.8 s per CKS step with convnext_atto on 2 cores
CPU_STEPS, CPU_CROP = 2000, 256


def _cpu_defaults(a) -> dict:
    """Steps and crop size: the user's, else the preset's on a GPU, else CPU_STEPS / CPU_CROP (printed)."""
    import torch

    out = {}
    if a.steps is not None:
        out["train.steps"] = a.steps
    if a.crop_size is not None:
        out["train.crop_size"] = a.crop_size
    if torch.cuda.is_available():
        return out
    given = {x.split("=", 1)[0].strip() for x in (a.set or [])}
    if "train.steps" not in out and "train.steps" not in given:
        out["train.steps"] = CPU_STEPS
        print(f"train: no GPU: {CPU_STEPS} steps by default (the paper's 90,000 are for a GPU); set --steps, "
              "--minutes or --cpu-minutes to change it")
    if "train.crop_size" not in out and "train.crop_size" not in given:
        out["train.crop_size"] = CPU_CROP
    return out


#: the preset `cks train` uses when --preset is not given, by --labels (since issue #9 session 45; ``base`` before):
#: clicks or centroids -> ``phase_points`` (the Usiigaci tuning split's choice), points detected on nuclei ->
#: ``nuclear_pairwise`` (the DeepCell tuning split's choice at 4,800 steps: ``nuclear_points`` with L_PW), masks ->
#: ``supervised`` (the same configuration the base gave in supervised mode).
#: Python's :func:`cks.get_preset` keeps ``"base"`` as its default.
DEFAULT_PRESETS = {"points": "phase_points", "nuclei": "nuclear_pairwise", "masks": "supervised"}
#: what `cks train` used for every kind of labels before :data:`DEFAULT_PRESETS`
OLD_DEFAULT_PRESET = "base"


def default_preset(labels: str, preset: str | None) -> str:
    """``preset`` if given, else :data:`DEFAULT_PRESETS` for ``labels``."""
    if preset:
        return preset
    if labels not in DEFAULT_PRESETS:
        raise CksError(f"--labels must be one of {', '.join(DEFAULT_PRESETS)}, got {labels!r}")
    return DEFAULT_PRESETS[labels]


def preset_config(preset: str, labels: str, size: str | None):
    """The configuration of ``preset`` at ``size`` for ``labels``: ``--labels masks`` trains any preset supervised."""
    from .config import get_preset, with_overrides

    cfg = get_preset(preset, size=size)
    if labels == "masks" and cfg.loss.mode != "supervised":
        cfg = with_overrides(cfg, {"loss.mode": "supervised"})
    return cfg


def resumed_preset(run_config: dict | None, labels: str, size: str | None, sets=()) -> tuple[str, str | None]:
    """``(preset, note)`` for ``--resume`` without ``--preset``, so that repeating a run's own command with
    ``--resume`` keeps working after :data:`DEFAULT_PRESETS` replaced :data:`OLD_DEFAULT_PRESET`.

    The run's ``config.json`` (``run_config``) is compared, outside the ``train`` section and the settings a resumed
    run may extend (:data:`cks.run_folder.EXTENDABLE`) or that ``cks train`` derives from the data
    (``collaborator.n_cell_types``), with the new default and then the old one, each with ``sets`` (the command's
    ``--set``) applied: the new default if it matches (no note), else the old one with a note saying so.

    Raises:
        CksError: neither matches (the run was trained with another ``--preset`` or other ``--set`` values): the
        message names the first differing settings and asks for the run's own ``--preset`` and ``--set``.
    """
    from .config import Config, with_overrides
    from .run_folder import EXTENDABLE, config_changes

    new = default_preset(labels, None)
    if run_config is None:
        return new, None
    stored = Config.from_dict(run_config).to_dict()
    skip = set(EXTENDABLE) | {"collaborator.n_cell_types"}

    def differs(preset: str) -> list[str]:
        built = with_overrides(preset_config(preset, labels, size), list(sets or [])).to_dict()
        return [k for k in sorted(config_changes(stored, built)) if not k.startswith("train.") and k not in skip]

    changed = differs(new)
    if not changed:
        return new, None
    if not differs(OLD_DEFAULT_PRESET):
        return OLD_DEFAULT_PRESET, (f"train: --resume: this run was trained with preset {OLD_DEFAULT_PRESET!r}, `cks "
                                    f"train`'s default before {new!r} became the default for --labels {labels}; "
                                    f"continuing it with {OLD_DEFAULT_PRESET!r}")
    raise CksError(f"--resume: the run in --out was trained with another configuration than preset {new!r} (the "
                   f"default for --labels {labels}) or {OLD_DEFAULT_PRESET!r} (the default before) with these --set "
                   f"values; it differs from {new!r} in {', '.join(changed[:5])}: give the --preset (and --set) "
                   f"it was trained with (see its config.json), or use a new --out folder")


def nuclear_prior_note(labels: str, cfg) -> str | None:
    """A hint for CKS from nuclear points whose prior switches off (preset ``nuclear_points``), else None."""
    lc = cfg.loss
    if labels != "nuclei" or lc.mode != "cks" or lc.prior_until >= 1 or lc.prior_scale_after > 0 or lc.prior_scale == 0:
        return None
    return (f"train: note: points from nuclei, and the prior of Eq. 4 stops at {lc.prior_until:g} of the run; without "
            "it CKS can shrink to the nuclei (the points sit on them). --preset nuclear_pairwise (the default for "
            "--labels nuclei; nuclear_points without L_PW) keeps a weak prior to "
            "the end (DeepCell tuning AP50 0.27 vs 0.18 with the base preset, issue #9)")


def per_type_heads(cfg, samples, explicit: bool = False) -> tuple:
    """``(cfg, note)``: with one prior width per cell type (``loss.prior_d`` of more than one entry, Table VI's
    per-type row) the collaborator gets one output head per cell type found in ``samples`` (the author's
    practice, diff #10 of the anchor notes), and ``note`` says so (None when nothing changes). A run compared with
    a single-d run then differs in the heads as well as in d; ``--set collaborator.n_cell_types=N`` on the
    single-d run is the control. ``explicit``: the user set ``collaborator.n_cell_types`` (e.g. 1, per-type d with
    one head); it is kept."""
    from .config import with_overrides

    n_types = max((int(s.get("cell_type", 0) or 0) for s in samples), default=0) + 1
    if explicit or cfg.collaborator.n_cell_types >= n_types or len(cfg.loss.prior_d) <= 1:
        return cfg, None
    note = (f"train: note: loss.prior_d gives one d per cell type, so the collaborator gets one head per cell type "
            f"({n_types}, collaborator.n_cell_types; was {cfg.collaborator.n_cell_types}). On DeepCell (book chapter "
            f"7c) a head per line collapsed on every line but HeLa with the paper's L_M (test AP50 0.12, against "
            f"0.71 with one head, 4,800 steps): --set collaborator.n_cell_types=1 keeps one head (loss.consistency_collaborator=soft_entropy kept every "
            f"head alive there but stayed below one head: test AP50 0.63 / 0.69, two seeds)")
    return with_overrides(cfg, {"collaborator.n_cell_types": n_types}), note


def cmd_train(a) -> dict:
    from .config import with_overrides
    from .data.spec import load_dataset, parse_spec

    out = Path(a.out)
    if (out / "checkpoint.pt").exists() and not (a.resume or a.overwrite):
        raise CksError(f"{out}: already holds a run (checkpoint.pt); --resume continues it, --overwrite replaces it, "
                       f"or give another --out")
    if a.resume and a.overwrite:
        raise CksError("--resume continues the run in --out and --overwrite replaces it: give one of them")
    if a.resume and not a.preset:
        stored = out / "config.json"
        try:
            run_config = json.loads(stored.read_text()) if stored.exists() else None
        except (OSError, ValueError):  # unreadable: the checkpoint's own config decides (run_folder.restore)
            run_config = None
        a.preset, note = resumed_preset(run_config, a.labels, a.size, a.set or [])
        if note:
            print(note)
    a.preset = default_preset(a.labels, a.preset)
    cfg = preset_config(a.preset, a.labels, a.size)
    if a.labels in ("points", "nuclei") and cfg.loss.mode == "supervised":
        raise CksError(f"preset {a.preset!r} is fully supervised; use --labels masks or a CKS preset")
    cfg = with_overrides(cfg, _cpu_defaults(a))
    cfg = with_overrides(cfg, a.set or [])
    note = nuclear_prior_note(a.labels, cfg)
    if note:
        print(note)
    spec_scale = parse_spec(a.data)[2]
    keep = cfg.loss.foreground_from == "masks"  # the true-foreground diagnostic keeps the masks for L_S
    if cfg.size.normalize:
        if a.scale is not None or spec_scale is not None:
            raise CksError("this preset rescales every image to cells of size.diameter px (cell-size normalisation); "
                           "drop --scale / @SCALE, give the cells' size with --diameter, or keep a fixed scale with "
                           "--set size.normalize=false")
        from .data.normalize import median_scale, normalize_cell_size

        samples = load_dataset(a.data, scale=1.0, points="nuclei" if a.labels == "nuclei" else "auto")
        if a.size_from == "masks" and a.labels != "masks":  # sizes from the masks before point training drops them
            samples = normalize_cell_size(samples, cfg.size.diameter, "masks")
        samples = _prepare_labels(a, samples, a.labels, keep)  # checks the points (jitter: px of the input images)
        if a.size_from != "masks" or a.labels == "masks":
            samples = normalize_cell_size(samples, cfg.size.diameter, a.size_from, a.diameter,
                                          use_masks=a.labels == "masks")
        scale = median_scale(samples)
        ds = np.array([s["cell_diameter"] for s in samples])
        print(f"train: cell size ({samples[0]['cell_diameter_source']}) median {np.median(ds):.1f} px "
              f"(range {ds.min():.1f}-{ds.max():.1f}) -> {cfg.size.diameter:g} px; scales "
              f"{min(s['scale'] for s in samples):.2f}-{max(s['scale'] for s in samples):.2f}")
    else:
        if a.diameter is not None:
            scale = cfg.size.diameter / a.diameter
        else:
            scale = a.scale if a.scale is not None else (spec_scale or 1.0)
        samples = _load_training(a, a.data, scale, a.labels, keep)
    given = {str(x).split("=", 1)[0].strip() for x in (a.set or [])}
    cfg, note = per_type_heads(cfg, samples, explicit="collaborator.n_cell_types" in given)
    if note:
        print(note)
    val = None
    if a.val:
        val = load_dataset(a.val, scale=1.0, points="none")  # scored at native resolution
        if any(v.get("label") is None for v in val):
            raise CksError(f"{a.val}: validation needs instance masks")
    print(f"train: {len(samples)} images ({sum(len(s['points'] if s.get('points') is not None else []) for s in samples)}"
          f" points) at scale {scale}, preset {a.preset}, size {a.size}, mode {cfg.loss.mode}, {cfg.train.steps} steps")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun: one process per GPU / CPU slot
        import torch
        import torch.distributed as dist
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    backup = _set_aside(out, cfg) if a.overwrite else None
    try:
        r = _train_run(a, cfg, samples, val, scale)
    except Exception:
        if backup is not None:
            _restore(out, backup)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    return r


#: the files of a run that `cks train --overwrite` replaces (cks.size_model.FILE_NAME is size_model.json)
RUN_FILES = ("checkpoint.pt", "config.json", "metrics.jsonl", "size_model.json", "snapshots")


def _set_aside(out: Path, cfg) -> Path:
    """``--overwrite``: move the old run's files into ``out/.overwritten`` (so none is mixed into the new run, and
    a failed start gives them back); refuse when the new run would start from the checkpoint being replaced."""
    init = cfg.train.init_principal
    if init and Path(os.path.expandvars(init)).resolve() == (out / "checkpoint.pt").resolve():
        raise CksError(f"train.init_principal={init} is the checkpoint --overwrite replaces; copy it out of {out} "
                       f"first, or train into another --out")
    backup = out / ".overwritten"
    shutil.rmtree(backup, ignore_errors=True)
    backup.mkdir(parents=True)
    for name in RUN_FILES:
        if (out / name).exists():
            shutil.move(str(out / name), str(backup / name))
    return backup


def _restore(out: Path, backup: Path) -> None:
    """Undo :func:`_set_aside` after a failed start: the new run's files go, the old run's come back."""
    for name in RUN_FILES:
        if (backup / name).exists():
            if (out / name).is_dir():
                shutil.rmtree(out / name)
            else:
                (out / name).unlink(missing_ok=True)
            shutil.move(str(backup / name), str(out / name))
    shutil.rmtree(backup, ignore_errors=True)


def _train_run(a, cfg, samples, val, scale) -> dict:
    from .train import train

    r = train(cfg, samples, val, out_dir=a.out, resume=a.resume, max_minutes=a.minutes, scale=scale,
              max_cpu_minutes=a.cpu_minutes)
    vals = [h for h in r["history"] if "val_ap50" in h]
    last = {k: v for k, v in (vals[-1] if vals else {}).items() if k.startswith("val_")}
    score = (f"; validation at step {vals[-1]['step']}: AP50 {last['val_ap50']:.3f}, Dice {last['val_dice']:.3f}"
             if last else "")
    print(f"train: stopped at step {r['step']} of {cfg.train.steps}; checkpoint {Path(a.out) / 'checkpoint.pt'}{score}")
    return {"step": r["step"], **last}

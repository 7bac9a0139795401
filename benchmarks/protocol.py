"""One command per protocol and model: train, predict the report split, score with bootstrap intervals, record.

    python benchmarks/protocol.py --protocol usiigaci_ablation --model table5_entropy_principal
    python benchmarks/protocol.py --protocol deepcell_nuclei --model table6_per_type_d
    python benchmarks/protocol.py --protocol deepcell_nuclei --model cks2_from_usiigaci \\
        --preset table6_constant_d --set train.init_principal=/path/to/usiigaci_supervised_run

Writes ``results/<protocol>/<model>.json`` (via :mod:`benchmarks.record`). The run folder
(``--runs-dir``/<protocol>/<model>) keeps its checkpoint, so a killed command continues where it stopped
when run again (``cks train --resume``). Needs ``CKS_DATA_DIR``. Threads: ``OMP_NUM_THREADS`` (default 1,
so two commands can share a 2-core machine).

Protocols (:data:`PROTOCOLS`) fix the data, the label kind, the budget and the overrides every model of
the protocol shares; a model is a preset (the model name by default) plus the protocol's overrides.
What differs from the paper is written into each result's ``note``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cks.data.registry import SPLITS  # noqa: E402

_DC = SPLITS["deepcell2016_covertlab"]
_USI = dict(train="usiigaci_nih3t3_phase/train:set1-16@0.5", tune="usiigaci_nih3t3_phase/train:set17-20",
            report="usiigaci_nih3t3_phase/val:set46-50")
_SHORT = ["train.crop_size=256", "train.val_every=250", "train.checkpoint_every=100", "train.finetune_from=0.8"]
_AUTHOR_MC = ["loss.collapse_exponent=0.5"]
#: Per-cell-type prior width d (Eq. 4), indexed by cks.data.readers.CELL_TYPES, at the 0.5x training scale.
#: Grouped as the paper does (20 / 15 / 10 by cell size) from the cell lines' typical diameters: HeLa,
#: NIH3T3, MCF10A ~55-60 px native (d 20), BMDM ~53 px (d 15), RAW264.7 ~30 px (d 10); LIVECell lines 20.
_PER_TYPE_D = "loss.prior_d=" + ",".join(["20"] * 9 + ["20", "20", "15", "20", "10"])

_PRIOR_NOTE = ("the prior of Eq. 4 on for the first half of the run unless the preset says otherwise (loss.prior_until, "
               "default 0.5 since session 7 of issue #9; the paper: the whole run)")
_THRESHOLD_NOTE = "the score threshold is chosen on the tuning split (max F1 at IoU 0.5), not fixed at 0.5"
_SN_NOTE = ("; cell-size normalised (issue #9): each training image rescaled so its cells' median equivalent "
            "diameter is {diameter} px (from the masks for supervised runs, estimated from the points for CKS), prior d = "
            "0.7 cell diameters unless the overrides say otherwise, L_MC minimum area 0.45 of a cell (exponent 0.5); "
            + _PRIOR_NOTE + "; predict estimates each image's cell size with the run's learned size regressor "
            "(cks.size_model, fitted on the training images when training stops; the per-field sizes record their "
            "source), or, for runs scored before it existed, by a scale search (the scale at which the model's top "
            "detection scores are highest); " + _THRESHOLD_NOTE)
#: replaces _SN_NOTE in the note of a run whose configuration turns size normalisation off (size.normalize=False)
_FIXED_SCALE_NOTE = ("; one fixed scale for every image, 0.5x (size.normalize=False, as in the paper; the prior d in "
                     "px as the preset and overrides set it, L_MC in its absolute form unless they say otherwise); "
                     "predict shows every image at that scale; " + _PRIOR_NOTE + "; " + _THRESHOLD_NOTE)
_USI_SN = dict(train="usiigaci_nih3t3_phase/train:set1-16", tune=_USI["tune"], report=_USI["report"])

PROTOCOLS = {
    "usiigaci_points_v2": dict(
        **_USI_SN, labels="points", steps=4000, cpu_minutes=45, tune_threshold=True,
        sets=["train.crop_size=256", "train.val_every=500", "train.checkpoint_every=100", "train.finetune_from=0.8"],
        note="Usiigaci NIH3T3 phase (16 training fields, not LIVECell's 3,253 images), points = mask centroids "
             "(CKS) or masks (supervised), convnext_atto from random init, {steps} steps of one 256-px crop, "
             "seed {seed} (paper: 90k steps, convnext_small, ImageNet init)" + _SN_NOTE),
    "usiigaci_ablation_v2": dict(
        **_USI_SN, labels="points", steps=800, cpu_minutes=12, tune_threshold=True, sets=_SHORT,
        note="Usiigaci NIH3T3 phase (16 training fields), points = mask centroids, convnext_atto from random init, "
             "{steps} steps of one 256-px crop (paper: 90k steps, convnext_small, ImageNet init), seed {seed}"
             + _SN_NOTE),
    "deepcell_nuclei_v2": dict(
        train="deepcell2016_covertlab:" + _DC["train"], tune="deepcell2016_covertlab:" + _DC["val"],
        report="deepcell2016_covertlab:" + _DC["test"], labels="nuclei", steps=800, cpu_minutes=12,
        tune_threshold=True, sets=_SHORT, preset_sets={"table6_per_type_d": [_PER_TYPE_D]},
        note="DeepCell 2016 phase (10 training fields of 4 cell lines, not A431's 500 images); points from the "
             "nuclear channel (cks.points.points_from_nuclei), the model sees phase only; test = MCF10A + validation "
             "HeLa/MCF10A; convnext_atto random init, {steps} steps of one 256-px crop, seed {seed}" + _SN_NOTE),
    "usiigaci_ablation": dict(
        **_USI, labels="points", steps=800, cpu_minutes=12,
        sets=_SHORT + _AUTHOR_MC,
        note="Usiigaci NIH3T3 phase (16 training fields at 0.5x, not LIVECell's 3,253 images), points = mask "
             "centroids, convnext_atto from random init, {steps} steps of one 256-px crop (paper: 90k steps, "
             "convnext_small, ImageNet init), seed {seed}; every row uses the author's L_MC exponent 0.5 (the "
             "paper's exponent 1 collapses on this data, see results/usiigaci_points/cks_base.json)"),
    "usiigaci_masks": dict(
        **_USI, labels="masks", steps=800, cpu_minutes=12, sets=_SHORT,
        note="fully supervised (masks), Usiigaci NIH3T3 phase 16 fields at 0.5x instead of LIVECell; convnext_atto "
             "from random init, {steps} steps of one 256-px crop (paper: 90k steps, convnext_small), seed {seed}"),
    "deepcell_nuclei": dict(
        train="deepcell2016_covertlab:" + _DC["train"] + "@0.5", tune="deepcell2016_covertlab:" + _DC["val"],
        report="deepcell2016_covertlab:" + _DC["test"], labels="nuclei", steps=800, cpu_minutes=12,
        sets=_SHORT + _AUTHOR_MC, preset_sets={"table6_per_type_d": [_PER_TYPE_D]},
        note="DeepCell 2016 phase (10 training fields of 4 cell lines at 0.5x, not A431's 500 images); points "
             "from the nuclear channel by cks.points.points_from_nuclei (default LoG parameters), the model sees "
             "phase only; test = MCF10A + validation HeLa/MCF10A (cell lines/fields not trained on); "
             "convnext_atto random init, {steps} steps of one 256-px crop, seed {seed}, author's L_MC exponent 0.5"),
}


def note_for_config(template: str, cfg: dict, steps_reached: int | None = None) -> str:
    """The protocol's note for one run's configuration (``config.json`` as a dict): its budget and seed fill
    ``{steps}`` and ``{seed}`` ("N steps", or "N of M planned steps" for a run stopped by its CPU budget) and
    ``{diameter}`` (its ``size.diameter``, 32 where the configuration does not say), and the fixed-scale text
    replaces the size-normalisation one where the run turned normalisation off; a run whose ``backbone.name`` is
    not the protocol's ``convnext_atto`` names its own backbone."""
    train = cfg.get("train", {})
    planned = int(train["steps"]) if "steps" in train else None
    if planned is None:
        steps = f"{steps_reached:,}" if steps_reached else "?"
    elif steps_reached is not None and steps_reached < planned:
        steps = f"{steps_reached:,} of {planned:,} planned"
    else:
        steps = f"{planned:,}"
    note = template.replace("{steps}", steps).replace("{seed}", str(train.get("seed", "?")))
    if not cfg.get("size", {}).get("normalize", True):
        note = note.replace(_SN_NOTE, _FIXED_SCALE_NOTE)
    note = note.replace("convnext_atto", str(cfg.get("backbone", {}).get("name", "convnext_atto")))
    return note.replace("{diameter}", f"{float(cfg.get('size', {}).get('diameter', 32.0)):g}")


def run_note(template: str, run_dir: Path, steps_reached: int | None = None) -> str:
    """:func:`note_for_config` for a run folder (its ``config.json``; "?" where it has none)."""
    cfg = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}
    return note_for_config(template, cfg, steps_reached)


def run_train(proto: dict, a, run_dir: Path) -> None:
    labels = "masks" if a.labels == "masks" else proto["labels"] if a.labels is None else a.labels
    preset = a.preset or a.model
    sets = list(proto["sets"]) + list(proto.get("preset_sets", {}).get(preset, [])) + list(a.set or [])
    from cks.config import get_preset, with_overrides

    train_spec = os.path.expandvars(a.train) if a.train else proto["train"]  # recorded as given ($VARS kept)
    if "@" not in train_spec and not with_overrides(get_preset(preset), [x for x in sets if x.startswith("size.")]).size.normalize:
        train_spec += "@0.5"  # a preset with the paper's fixed scale (Table VI): the v1 protocols' 0.5x
    cmd = [sys.executable, "-m", "cks", "train", "--data", train_spec, "--val", proto["tune"],
           "--labels", labels, "--preset", preset, "--size", a.size, "--steps", str(a.steps or proto["steps"]),
           "--cpu-minutes", str(a.cpu_minutes or proto["cpu_minutes"]), "--out", str(run_dir),
           "--seed", str(a.seed), "--set", f"train.seed={a.seed}", *sets]
    if a.jitter:
        cmd += ["--jitter", str(a.jitter)]
    if (run_dir / "checkpoint.pt").exists():
        cmd.append("--resume")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "command.txt").write_text(" ".join(cmd) + "\n")
    with open(run_dir / "train.log", "a") as log:
        subprocess.run(cmd, check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


def _predict_all(model, samples, threshold: float, size: str = "auto", size_from: str = "auto", tta: str = "none"):
    from cks.evaluation import predict_many
    from cks.predict import scores_by_label
    from cks.size import median_diameter

    kw = {"size_from": size_from} if size == "auto" else {}  # auto: the model's own size estimate, found by size_from
    out = predict_many(model, samples, size=size, score_threshold=threshold, tta=tta, **kw)
    sizes = [{"name": s["name"], "true_diameter": median_diameter(s["label"]), "estimated_diameter": p[2]["diameter"],
              "scale": p[2]["scale"], "source": p[2]["diameter_source"]} for s, p in zip(samples, out)]
    return [p[0] for p in out], [scores_by_label(p[1]) for p in out], sizes


def predict_and_score(spec: str, run_dir: Path, n_boot: int, tune_spec: str | None = None,
                      size_points: str | None = None, size_from: str = "auto", tta: str = "none") -> dict:
    """Predict every report image at native size, score, bootstrap.

    With ``tune_spec``, the score threshold is chosen first on the tuning split (:mod:`cks.threshold`,
    max F1 at IoU 0.5); else it is 0.5 (``predict``'s default). Records each image's cell-size estimate.
    ``size_points`` (``"nuclei"`` or ``"auto"``, :func:`cks.data.spec.load_dataset`'s ``points``): each image's
    cell size is measured at its points (``predict(points=...)``) instead of estimated by the model;
    otherwise the model estimates it as ``size_from`` says (:func:`cks.predict.predict`). ``tta``: predict's mask
    test-time augmentation (:mod:`cks.tta`), on the tuning and the report split alike (the protocols: "none").
    """
    from cks.bootstrap import evaluate_with_intervals
    from cks.checkpoint import load_model
    from cks.data.spec import load_dataset
    from cks.threshold import DEFAULT_GRID, apply_threshold, tune_score_threshold

    model = load_model(run_dir)
    extra, threshold = {}, 0.5
    pts, size = (size_points, "points") if size_points else ("none", "auto")
    if tune_spec:
        tune = load_dataset(tune_spec, scale=1.0, points=pts)
        tl, ts, tsizes = _predict_all(model, tune, DEFAULT_GRID[0], size, size_from, tta)
        tuned = tune_score_threshold(tl, ts, [s["label"] for s in tune])
        threshold = tuned["threshold"]
        extra = {"threshold_tuning": {"split": tune_spec, "rule": "max pooled F1 at IoU 0.5", **tuned},
                 "tune_sizes": tsizes}
        cut = [apply_threshold(l, s, threshold) for l, s in zip(tl, ts)]
        lines = cell_line_groups([c[0] for c in cut], [c[1] for c in cut], tune)
        if lines:
            extra["tune_cell_lines"] = lines
    samples = load_dataset(spec, scale=1.0, points=pts)
    t0 = time.perf_counter()
    labels, scores, sizes = _predict_all(model, samples, DEFAULT_GRID[0] if tune_spec else threshold, size, size_from,
                                         tta)
    secs = time.perf_counter() - t0
    if tune_spec:
        cut = [apply_threshold(l, s, threshold) for l, s in zip(labels, scores)]
        labels, scores = [c[0] for c in cut], [c[1] for c in cut]
    r = evaluate_with_intervals(labels, scores, [s["label"] for s in samples], n_boot=n_boot)
    return {**r, "images": [s["name"] for s in samples], "score_threshold": threshold, "predict_s": round(secs, 2),
            "count_ratio": r["n_pred"] / max(r["n_gt"], 1), "sizes": sizes,
            "size_groups": size_groups(labels, scores, samples),
            **({"cell_lines": cell_line_groups(labels, scores, samples)} if _has_lines(samples) else {}), **extra}


def _has_lines(samples) -> bool:
    return len({s.get("cell_type_name") for s in samples} - {None}) > 1


def cell_line_groups(labels, scores, samples) -> dict:
    """``{cell line: {"ap50", "dice", "n_images", "n_gt", "n_pred"}}`` pooled over each line's images (DeepCell);
    ``{}`` when the samples name fewer than two cell lines."""
    if not _has_lines(samples):
        return {}
    out = {}
    for line in sorted({s.get("cell_type_name") for s in samples} - {None}):
        idx = [i for i, s in enumerate(samples) if s.get("cell_type_name") == line]
        m = _pooled(labels, scores, samples, idx)
        out[line] = {"ap50": m["ap50"], "dice": m["dice"], "n_images": len(idx), "n_gt": m["n_gt"],
                     "n_pred": m["n_pred"]}
    return out


#: field groups by median equivalent cell diameter at the 0.5x scale of the v1 protocols (issue #9's table)
SIZE_GROUPS = (("small (< 24 px at 0.5x)", 0.0, 24.0), ("medium (24-30 px)", 24.0, 30.0), ("large (>= 30 px)", 30.0, 1e9))


def size_groups(labels, scores, samples) -> list[dict]:
    """AP50 / Dice / counts pooled over the fields of each size group, and per field (native predictions)."""
    from cks.size import median_diameter

    half = [median_diameter(s["label"]) * 0.5 for s in samples]
    out = []
    for name, lo, hi in SIZE_GROUPS:
        idx = [i for i, d in enumerate(half) if lo <= d < hi]
        if not idx:
            continue
        r = _pooled(labels, scores, samples, idx)
        out.append({"group": name, "fields": [samples[i]["name"] for i in idx],
                    "median_diameter_at_half": [round(half[i], 1) for i in idx], "ap50": r["ap50"], "ap75": r["ap75"],
                    "dice": r["dice"], "n_gt": r["n_gt"], "n_pred": r["n_pred"]})
    return out


def _pooled(labels, scores, samples, idx) -> dict:
    """``cks.metrics.evaluate`` over the images ``idx`` of a split, pooled."""
    from cks.metrics import evaluate

    return evaluate([labels[i] for i in idx], [scores[i] for i in idx], [samples[i]["label"] for i in idx])


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--protocol", required=True, choices=sorted(PROTOCOLS))
    p.add_argument("--model", required=True, help="result name (default preset: the same name)")
    p.add_argument("--preset", help="preset if it differs from --model")
    p.add_argument("--labels", choices=["points", "masks", "nuclei"], help="default: the protocol's")
    p.add_argument("--size", default="convnext_atto")
    p.add_argument("--steps", type=int)
    p.add_argument("--cpu-minutes", type=float)
    p.add_argument("--train", help="training data spec instead of the protocol's (e.g. a folder of self-training "
                   "labels, benchmarks/pseudo_labels.py); $VARS are expanded, the result records it as given")
    p.add_argument("--jitter", type=float, default=0.0, help="point jitter sigma (px at training scale)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", nargs="*", help="extra overrides (stated in the note)")
    p.add_argument("--note", default="", help="appended to the protocol's note")
    p.add_argument("--runs-dir", default=os.environ.get("CKS_RUNS_DIR", str(ROOT / "runs")))
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--eval-only", action="store_true",
                   help="skip training: score the run already in --runs-dir (e.g. after a change to predict)")
    p.add_argument("--size-from", choices=["model", "refined", "points"], default="model",
                   help="each image's cell size at prediction: the model's own estimate (default), that estimate "
                        "refined at the model's detections (predict(size_from='refined')), or measured at "
                        "the image's points (the protocol's: nuclear points for labels 'nuclei', else centroids)")
    p.add_argument("--tta", choices=["none", "flips", "d4"], default="none",
                   help="predict's mask test-time augmentation (cks.tta) on the tuning and report split (default none)")
    p.add_argument("--result-name", help="name of the result file (default: --model); e.g. to score a run twice")
    a = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    proto = PROTOCOLS[a.protocol]
    run_dir = Path(a.runs_dir) / a.protocol / a.model
    t0 = time.time()
    from cks.provenance import git_commit

    commit_at_start = git_commit()  # the code this process runs, not HEAD when it finishes
    if not a.eval_only:
        run_train(proto, a, run_dir)
    elif not (run_dir / "checkpoint.pt").exists():
        raise SystemExit(f"--eval-only: no checkpoint in {run_dir}; train it first (drop --eval-only)")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    size_points = None
    if a.size_from == "points":
        size_points = "nuclei" if proto["labels"] == "nuclei" else "auto"  # the protocol's points, whatever a run learned from
    res = predict_and_score(proto["report"], run_dir, a.bootstrap, proto["tune"] if proto.get("tune_threshold") else None,
                            size_points, "refined" if a.size_from == "refined" else "auto", a.tta)
    eval_path = run_dir / ("eval.json" if not a.result_name else f"eval_{a.result_name}.json")
    eval_path.write_text(json.dumps(res, indent=1))
    hist = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines() if l.strip()]
    cpu_min = max((h.get("cpu_s", 0.0) for h in hist), default=0.0) / 60
    wall_s = max((h.get("time_s", 0.0) for h in hist), default=0.0)
    steps_reached = max((int(h.get("step", 0)) for h in hist), default=0)
    note = run_note(proto["note"], run_dir, steps_reached) + (f"; extra overrides {a.set}" if a.set else "") + (
        f"; each image's cell size at prediction measured at its {size_points if size_points == 'nuclei' else 'centroid'}"
        f" points (predict(points=...)), not estimated by the model" if size_points else "") + (
        "; each image's cell size at prediction: the learned regressor's estimate refined at the model's own "
        "confident detections (predict(size_from='refined'))" if a.size_from == "refined" else "") + (
        f"; masks predicted with test-time augmentation predict(tta={a.tta!r}) on the tuning and report split"
        if a.tta != "none" else "") + (
        f"; points jittered with sigma {a.jitter} px (training scale)" if a.jitter else "") + (
        f"; trained on {a.train} instead of the protocol's training spec" if a.train else "") + (
        f"; {a.note}" if a.note else "")
    from benchmarks.record import main as record

    out = record(["--protocol", a.protocol, "--model", a.result_name or a.model, "--run", str(run_dir), "--eval", str(eval_path),
                  "--note", note, "--reported-on", proto["report"], "--tuned-on", proto["tune"],
                  "--cpu-minutes", f"{cpu_min:.2f}", "--wall-s", f"{wall_s:.1f}", "--commit", commit_at_start,
                  "--command", "python benchmarks/protocol.py " + " ".join(argv if argv is not None else sys.argv[1:])])
    print(f"{a.protocol}/{a.model}: AP50 {res['ap50']:.3f} {res['ci95']['ap50']} Dice {res['dice']:.3f} "
          f"({res['n_gt']} cells, {cpu_min:.1f} CPU-min, total {time.time() - t0:.0f} s) -> {out}")
    return out


if __name__ == "__main__":
    main()

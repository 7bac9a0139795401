"""Can the collaborator see the cells at all? Train it alone on the true foreground and measure its ceiling.

    python benchmarks/collaborator_ceiling.py --name a1_true --preset base --target true
    python benchmarks/collaborator_ceiling.py --name c1_true --preset texture_collaborator --target true
    python benchmarks/collaborator_ceiling.py --name a1_disks --preset base --target disks
    python benchmarks/collaborator_ceiling.py --name a1_ring --preset base --target disks --radius 0.3 --ring 0.8
    python benchmarks/collaborator_ceiling.py --name a1_geodesic --preset base --target geodesic --radius 0.5
    python benchmarks/collaborator_ceiling.py --name cks_runs --runs $CKS_RUNS_DIR/tune/d07_c1_po05pi1 ...

CKS hands shape from the collaborator to the principal (L_S, Eq. 8): the principal's masks can only be as
good as the collaborator's ``M_c``. This measures that upper bound on the Usiigaci fields, all shown at
their true cell size (``size.diameter`` px, from the masks):

* ``--target true``: the collaborator of ``--preset`` (its ``collaborator.*``; ``--set`` to change it) is
  trained with binary cross-entropy on the TRUE foreground (label > 0) of train/set1-16, 4 random
  256-px crops per step, Adam at ``train.lr``. This is more than CKS ever gives it: its ceiling.
* ``--target disks``: the same network trained with the paper's L_M (Eq. 6, linear; ``--consistency entropy``:
  L_CE, Eq. 5) against cell-sized
  disks around the true points (Voronoi-clipped, radius ``--radius`` x ``size.diameter``): what the
  majority vote of L_M makes of a shape-free target such as the early ``M_p``.
* ``--target geodesic``: the same, against the union of the geodesic regions around the true points
  (:func:`cks.baselines.geodesic_disks`, each of the area of a disk of ``--radius`` x ``size.diameter``, grown
  through dark pixels at ``--beta``): what L_M makes of a target that follows the image
  (``loss.collaborator_target = "geodesic"``, ours; here the brightness is standardised over the whole field,
  in training over each crop).
* ``--runs``: the collaborators of trained CKS runs, as they are, and the foreground (union of the predicted
  masks, at the true cell size, score threshold 0.5) of those runs' principal models, supervised runs included.

Score: foreground IoU of ``M_c >= 0.5`` with the true foreground on the tuning split train/set17-20
(:func:`cks.diagnose.collaborator_foreground_fraction`; mean over the fields), next to the IoU of the
disks themselves (radius ``--radius`` x each field's median cell diameter). Writes
``results/collaborator_ceiling/<name>.json``. What differs from the paper: 16 Usiigaci fields instead of
LIVECell, random init, a few hundred steps; the paper never trains the collaborator on masks (this is a
diagnostic, not a method).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN, TUNE = "usiigaci_nih3t3_phase/train:set1-16", "usiigaci_nih3t3_phase/train:set17-20"


def true_size(samples, target: float) -> list[float]:
    """Per image, the scale at which its cells (median equivalent diameter of the masks) are ``target`` px."""
    from cks.size import median_diameter

    return [target / median_diameter(s["label"]) for s in samples]


def disk_foreground(label, radius: float):
    """Union of Voronoi-clipped disks of ``radius`` px around the mask centroids: ``[H, W]`` bool."""
    from cks.baselines import voronoi_disks
    from cks.points import centroids

    return voronoi_disks(centroids(label)[1], label.shape, radius) > 0


def geodesic_foreground(image, label, radius: float, beta: float):
    """Union of the geodesic regions (:func:`cks.baselines.geodesic_disks`) around the mask centroids: ``[H, W]`` bool."""
    from cks.baselines import geodesic_disks
    from cks.points import centroids

    return geodesic_disks(image, centroids(label)[1], radius, beta) > 0


def crops_at_scale(samples, scales, radius_rel: float, target: float, ring_rel: float = 0.0, beta: float | None = None):
    """Each sample at its scale as (normalised image [C, H, W], true fg [H, W], disks [H, W]) float32 arrays.

    ``beta`` given: the "disks" are the geodesic regions of that beta (:func:`geodesic_foreground`), not Voronoi disks.

    ``ring_rel > radius_rel``: the disk target is 1 inside ``radius_rel``, 0.5 (no vote under L_M, Eq. 7) out to
    ``ring_rel`` cell diameters and 0 beyond: an uncertain ring, as an early ``M_p`` has between the points.
    """
    import numpy as np

    from cks.data.io import image_batch
    from cks.data.readers import rescale_sample

    out = []
    for s, sc in zip(samples, scales):
        r = rescale_sample(s, sc)
        x = image_batch(r["image"].astype(np.float32))[0].numpy()
        if beta is None:
            disks = disk_foreground(r["label"], radius_rel * target).astype(np.float32)
        else:
            disks = geodesic_foreground(x, r["label"], radius_rel * target, beta).astype(np.float32)
        if ring_rel > radius_rel:
            disks = 0.5 * (disks + disk_foreground(r["label"], ring_rel * target))
        out.append((x, (r["label"] > 0).astype(np.float32), disks.astype(np.float32)))
    return out


def principal_fg_iou(run, samples) -> float:
    """Mean over ``samples`` of the foreground IoU of a run's predicted masks (union), each field at its true size."""
    import numpy as np

    from cks.checkpoint import load_model
    from cks.run_maps import foreground_iou
    from cks.predict import predict
    from cks.size import median_diameter

    model = load_model(run)
    return float(np.mean([foreground_iou(predict(model, s["image"], diameter=median_diameter(s["label"]))[0], s["label"])
                          for s in samples]))


def train_alone(cfg, data, target: str, steps: int, crop: int = 256, batch: int = 4, seed: int = 0,
                evaluate=None, every: int = 0, consistency: str = "linear"):
    """Train ``Collaborator(cfg.collaborator)`` on ``data`` (``crops_at_scale``) for ``steps`` Adam steps."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from cks.losses.consistency import collaborator_entropy_loss, collaborator_linear_loss
    from cks.models.collaborator import Collaborator

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    col = Collaborator(cfg.collaborator)
    opt = torch.optim.Adam(col.parameters(), cfg.train.lr)
    history = []
    for step in tqdm(range(1, steps + 1), desc=f"collaborator ({target})", dynamic_ncols=True):
        xs, ys = [], []
        for _ in range(batch):
            x, fg, disks = data[rng.integers(len(data))]
            h, w = fg.shape
            y0, x0 = int(rng.integers(0, max(1, h - crop))), int(rng.integers(0, max(1, w - crop)))
            xs.append(x[:, y0:y0 + crop, x0:x0 + crop])
            ys.append((fg if target == "true" else disks)[y0:y0 + crop, x0:x0 + crop])
        x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        logits = col(x)["fg_logits"]
        if target == "true":
            loss = F.binary_cross_entropy_with_logits(logits, y)
        elif consistency == "entropy":
            loss = collaborator_entropy_loss(logits, y)
        else:
            loss = collaborator_linear_loss(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if evaluate is not None and every and (step % every == 0 or step == steps):
            col.eval()
            history.append({"step": step, "fg_iou": round(evaluate(col), 4)})
            col.train()
    return col.eval(), history


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="results/collaborator_ceiling/<name>.json")
    p.add_argument("--preset", default="base")
    p.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. collaborator.foreground=16,32,64,128,256")
    p.add_argument("--target", choices=["true", "disks", "geodesic"], default="true")
    p.add_argument("--radius", type=float, default=0.5, help="disk radius in cell diameters (--target disks / geodesic)")
    p.add_argument("--beta", type=float, default=3.0, help="--target geodesic: cost of bright pixels (loss.prior_geodesic_beta)")
    p.add_argument("--ring", type=float, default=0.0,
                   help="--target disks: no vote (target 0.5) from --radius out to this many cell diameters (0: off)")
    p.add_argument("--consistency", choices=["linear", "entropy"], default="linear",
                   help="--target disks: the paper's L_M (linear, Eq. 6) or L_CE (Eq. 5, Table V)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--runs", nargs="*", default=[], help="instead: score these run folders (collaborator and principal)")
    a = p.parse_args(argv)
    import numpy as np

    from benchmarks.record import one_thread
    from cks.checkpoint import load_checkpoint
    from cks.config import Config, get_preset
    from cks.data.spec import load_dataset
    from cks.run_maps import _collaborator, collaborator_foreground_fraction, foreground_iou

    t0 = one_thread()
    tune = load_dataset(TUNE, scale=1.0, points="none")

    def score(col, target):  # mean over the tuning fields of the per-field foreground IoU
        f = collaborator_foreground_fraction(col, tune, true_size(tune, target))
        return float(np.mean(f["iou"]))

    res = {"what": "foreground IoU of the collaborator's M_c >= 0.5 with the true foreground, Usiigaci tuning "
                   "split, every field at its true cell size", "tune": TUNE}
    if a.runs:
        rows = {}
        for run in a.runs:
            ck = load_checkpoint(run)
            cfg = Config.from_dict(ck["config"])
            col = _collaborator(ck)
            rows[Path(run).name] = {"step": int(ck.get("step", 0)),
                                    "fg_iou": None if col is None else round(score(col, cfg.size.diameter), 4),
                                    "principal_fg_iou": round(principal_fg_iou(run, tune), 4),
                                    "collaborator.foreground": None if col is None else list(cfg.collaborator.foreground),
                                    "collaborator_target": cfg.loss.collaborator_target}
            print(Path(run).name, rows[Path(run).name], flush=True)
        res["runs"] = rows
    else:
        cfg = get_preset(a.preset, size="convnext_atto", overrides=a.set or None)
        target = float(cfg.size.diameter)
        train = load_dataset(TRAIN, scale=1.0, points="none")
        if a.ring and a.target != "disks":
            p.error("--ring is for --target disks only")
        data = crops_at_scale(train, true_size(train, target), a.radius, target, a.ring,
                              a.beta if a.target == "geodesic" else None)
        col, history = train_alone(cfg, data, a.target, a.steps, evaluate=lambda c: score(c, target),
                                   every=max(1, a.steps // 4), consistency=a.consistency)
        res.update(train=TRAIN, preset=a.preset, overrides=a.set, target=a.target, steps=a.steps,
                   radius_rel=a.radius if a.target != "true" else None,
                   ring_rel=a.ring if a.target == "disks" and a.ring > a.radius else None,
                   beta=a.beta if a.target == "geodesic" else None,
                   consistency=a.consistency if a.target != "true" else None,
                   collaborator_foreground=list(cfg.collaborator.foreground), history=history,
                   fg_iou=history[-1]["fg_iou"])
    from cks.size import median_diameter

    res["disk_fg_iou"] = round(float(np.mean([foreground_iou(disk_foreground(s["label"], a.radius * median_diameter(s["label"])),
                                                             s["label"]) for s in tune])), 4)
    res["disk_radius_rel"] = a.radius
    if a.target == "geodesic" and not a.runs:  # the target itself on the tuning fields, each at its true size
        regions = crops_at_scale(tune, true_size(tune, target), a.radius, target, beta=a.beta)
        res["geodesic_fg_iou"] = round(float(np.mean([foreground_iou(t, fg) for _, fg, t in regions])), 4)
    runs_dir = os.environ.get("CKS_RUNS_DIR")
    args = [f"$CKS_RUNS_DIR/{os.path.relpath(x, runs_dir)}" if runs_dir and x.startswith(runs_dir.rstrip("/") + "/")
            else x for x in (argv if argv is not None else sys.argv[1:])]
    res["command"] = "python benchmarks/collaborator_ceiling.py " + " ".join(args)
    res["wall_s"] = round(time.time() - t0, 1)
    from cks.provenance import git_commit, hardware

    res.update(git_commit=git_commit(), hardware=hardware())
    out = ROOT / "results" / "collaborator_ceiling" / f"{a.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k not in ("hardware",)}, indent=1))
    print("->", out)
    return res


if __name__ == "__main__":
    main()

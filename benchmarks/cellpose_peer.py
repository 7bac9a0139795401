"""Cellpose 3 peer baseline on Usiigaci NIH3T3: fully supervised, trained FROM SCRATCH, CPU, at 0.5x.

Runs in the cellpose venv (cellpose 3.1.1.x, no cks import; reading matches cks.data.readers.read_usiigaci):

  <cellpose-venv>/bin/python benchmarks/cellpose_peer.py --data $CKS_DATA_DIR/usiigaci_nih3t3_phase \
      --out runs/cellpose_peer --epochs 150 --cpu-minutes 30 --threads 1
  CKS_DATA_DIR=$CKS_DATA_DIR PYTHONPATH=. python -m cks evaluate \
      --pred runs/cellpose_peer/pred --gt usiigaci_nih3t3_phase/val:set46-50 \
      --json runs/cellpose_peer/eval.json --bootstrap 1000

What it does / how it differs from a plain `python -m cellpose --train ...`:
- Data: train/set1..16 masks (largest 4-connected component per id, as cks), images and labels resized to
  0.5x (image: cv2 INTER_AREA = 2x2 block mean; labels: nearest, cks' pixel-centre rule) like our 0.5x runs.
- Network: CellposeModel(pretrained_model=False, model_type=None) = the default 'cyto3' CPnet architecture
  (nbase 2-32-64-128-256, diam_mean 30) with random init; any model download is patched to raise.
- Optimiser: the Cellpose CLI's from-scratch defaults: SGD lr 0.2, momentum 0.9, weight decay 1e-5,
  batch 8, bsize 224, all training images per epoch; train_seg's own LR schedule (10-epoch warm-up, halving
  over the last 50 epochs when n_epochs > 100), rescale augmentation to diam_mean 30 (train_seg defaults).
- Budget: train_seg has no callback, so (1) a probe run of --probe-epochs epochs measures CPU s/epoch
  (its weights are thrown away; its CPU time counts), (2) the real run gets n_epochs = min(--epochs,
  epochs that fit the remaining --cpu-minutes) so its LR schedule completes, and (3) as a safety net a
  wrapper around train._loss_fn_seg stops training when process CPU time (time.process_time, from process
  start, incl. reading/flows/probe) passes the budget; then the weights at that step are saved and used.
- Prediction: val/set46..50 at 0.5x, diameter = the training mean of per-image median diameters at 0.5x
  (net.diam_labels, i.e. images are rescaled by 30/diam), flow_threshold 0.4, cellprob_threshold 0,
  min_size 15 (defaults); labels upsampled to native 1022x1024 (nearest). Score per cell = mean
  sigmoid(cellprob) over its pixels. Output pred/setNN/raw.labels.tif + raw.csv, the layout of
  `cks predict` (`cks evaluate` matches keys by trailing path parts: setNN/raw <-> .../setNN/raw.tif).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import tifffile
import torch
from scipy import ndimage


def parse_sets(text: str) -> list[int]:
    """'1-16' or '1,3,5-7' -> list of ints."""
    out = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def keep_largest_component(label: np.ndarray) -> np.ndarray:
    """Largest 4-connected component of each id (ties: the later one in raster order, as cks)."""
    out = np.zeros_like(label, dtype=np.int32)
    four = ndimage.generate_binary_structure(2, 1)
    for i, sl in enumerate(ndimage.find_objects(label), start=1):
        if sl is None:
            continue
        comp, n = ndimage.label(label[sl] == i, structure=four)
        size = np.bincount(comp.ravel(), minlength=n + 1)[1:]
        best = n - int(np.argmax(size[::-1]))  # last of the largest
        out[sl][comp == best] = i
    return out


def nearest_resize(label: np.ndarray, out_hw) -> np.ndarray:
    """cks.data.readers.resize_label: source pixel containing the output pixel centre."""
    iy, ix = [np.minimum(((np.arange(o) + 0.5) * (n / o)).astype(np.int64), n - 1)
              for n, o in zip(label.shape, out_hw)]
    return label[iy[:, None], ix[None, :]]


def read_set(folder: Path, scale: float):
    """(image at scale float32 [H, W], label at scale int32, native (H, W))."""
    img = tifffile.imread(folder / "raw.tif").astype(np.float32)
    lab = cv2.imread(str(folder / "instances_ids.png"), cv2.IMREAD_UNCHANGED)
    assert lab is not None and lab.ndim == 2 and lab.shape == img.shape, folder
    lab = keep_largest_component(lab.astype(np.int32))
    hw = img.shape
    out_hw = (int(round(hw[0] * scale)), int(round(hw[1] * scale)))
    if out_hw != hw:
        img = cv2.resize(img, out_hw[::-1], interpolation=cv2.INTER_AREA)
        lab = nearest_resize(lab, out_hw)
    return img, lab, hw


class OutOfBudget(Exception):
    pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="usiigaci_nih3t3_phase folder (train/setN, val/setN)")
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--cpu-minutes", type=float, default=30.0, help="process CPU budget for everything up to "
                   "the end of training (reading, flows, probe, training); prediction is not counted")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scale", type=float, default=0.5)
    p.add_argument("--train-sets", default="1-16")
    p.add_argument("--pred-sets", default="46-50")
    p.add_argument("--probe-epochs", type=int, default=2, help="0: no probe, only the hard CPU stop")
    p.add_argument("--lr", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")  # train_seg's loss log
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    from importlib.metadata import version
    from cellpose import dynamics, models, train, utils

    def no_download(*_a, **_k):
        raise RuntimeError("cellpose_peer: a pretrained-model download was attempted (must train from scratch)")
    utils.download_url_to_file = models.cache_model_path = no_download

    t0 = time.time()
    budget_s = a.cpu_minutes * 60
    data, out = Path(a.data), Path(a.out)
    (out / "pred").mkdir(parents=True, exist_ok=True)

    # ---- data (flows computed once here; train_seg skips labels that already carry flows)
    imgs, labs = [], []
    for n in parse_sets(a.train_sets):
        img, lab, _ = read_set(data / "train" / f"set{n}", a.scale)
        imgs.append(img)
        labs.append(lab)
    flows = dynamics.labels_to_flows(labs, device=torch.device("cpu"))
    cpu_data = time.process_time()

    # ---- fresh network, no weights (the 'cyto3' architecture)
    model = models.CellposeModel(gpu=False, pretrained_model=False, model_type=None, diam_mean=30.0, nchan=2)
    assert not model.pretrained_model, model.pretrained_model
    net = model.net
    kw = dict(channels=[0, 0], normalize=True, SGD=True, learning_rate=a.lr, weight_decay=1e-5, momentum=0.9,
              batch_size=8, bsize=224, rescale=True, min_train_masks=5, save_every=10**9,
              save_path=str(out), model_name="cellpose_peer")
    bpe = -(-len(imgs) // kw["batch_size"])  # batches per epoch

    real_loss = train._loss_fn_seg
    state = {"calls": 0, "limit": None, "losses": [], "cpu_at_call": []}

    def guarded_loss(lbl, y, device):  # called once per training batch (no test set is given)
        if state["limit"] is not None and time.process_time() >= state["limit"]:
            raise OutOfBudget
        state["calls"] += 1
        state["cpu_at_call"].append(time.process_time())
        loss = real_loss(lbl, y, device)
        state["losses"].append(float(loss.detach()))
        return loss
    train._loss_fn_seg = guarded_loss

    # ---- probe: CPU seconds per epoch (weights reset afterwards)
    s_per_epoch, cpu_probe, overhead = None, 0.0, 0.0
    if a.probe_epochs > 0 and a.epochs > 0:
        init = copy.deepcopy(net.state_dict())
        c = time.process_time()
        train.train_seg(net, train_data=imgs, train_labels=flows, n_epochs=a.probe_epochs,
                        **{**kw, "model_name": "probe"})
        cpu_probe = time.process_time() - c
        t = state["cpu_at_call"]  # steady state: the last epoch's batches (no first-step warm-up)
        s_per_epoch = t[-1] - t[-1 - bpe] if len(t) > bpe else cpu_probe / a.probe_epochs
        overhead = max(0.0, cpu_probe - a.probe_epochs * s_per_epoch)  # setup + warm-up, paid again below
        net.load_state_dict(init)
        (out / "models" / "probe").unlink(missing_ok=True)
    left = budget_s - time.process_time() - overhead
    n_epochs = a.epochs if s_per_epoch is None else max(1, min(a.epochs, int(left // s_per_epoch)))
    print(f"probe: {s_per_epoch} CPU s/epoch (+{overhead:.1f} s setup); {left:.0f} CPU s left "
          f"-> n_epochs={n_epochs}", flush=True)

    # ---- training, hard-stopped at the CPU budget
    state.update(calls=0, limit=budget_s, losses=[])
    c_train, w_train = time.process_time(), time.time()
    hard_stop = False
    try:
        train.train_seg(net, train_data=imgs, train_labels=flows, n_epochs=n_epochs, **kw)
    except OutOfBudget:
        hard_stop = True
        net.save_model(str(out / "models" / "cellpose_peer"))
    train._loss_fn_seg = real_loss
    epochs_done = state["calls"] / bpe
    cpu_train = time.process_time() - c_train
    cpu_total = time.process_time()
    wall_train, wall_train_only = time.time() - t0, time.time() - w_train
    diam = float(net.diam_labels.item())
    print(f"trained {epochs_done:g} epochs, {cpu_train:.0f} CPU s ({cpu_train / max(epochs_done, 1e-9):.1f} "
          f"s/epoch), hard_stop={hard_stop}, diam_labels={diam:.2f}", flush=True)

    # ---- predict report fields
    c_pred, n_cells = time.process_time(), {}
    net.eval()
    for n in parse_sets(a.pred_sets):
        img, _, hw = read_set(data / "val" / f"set{n}", a.scale)
        masks, fl, _ = model.eval(img, channels=[0, 0], diameter=diam, flow_threshold=0.4,
                                  cellprob_threshold=0.0, normalize=True)
        _, masks = np.unique(masks, return_inverse=True)  # labels 1..n
        masks = masks.reshape(img.shape).astype(np.int32)
        k = int(masks.max())
        prob = 1.0 / (1.0 + np.exp(-fl[2].astype(np.float64)))
        score = ndimage.mean(prob, masks, index=np.arange(1, k + 1)) if k else np.zeros(0)
        label = nearest_resize(masks, hw)  # exact 2x repeat at 0.5x: the mean over native pixels is the same
        yy, xx = np.indices(hw)
        area = np.bincount(label.ravel(), minlength=k + 1)[1:]
        cy = np.bincount(label.ravel(), yy.ravel(), minlength=k + 1)[1:] / np.maximum(area, 1)
        cx = np.bincount(label.ravel(), xx.ravel(), minlength=k + 1)[1:] / np.maximum(area, 1)
        d = out / "pred" / f"set{n}"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "raw.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label", "score", "y", "x", "area"])
            for i in range(k):
                w.writerow([i + 1, f"{score[i]:.5f}", f"{cy[i]:.2f}", f"{cx[i]:.2f}", int(area[i])])
        tifffile.imwrite(d / "raw.labels.tif", label.astype(np.int32))
        n_cells[f"set{n}"] = k
        print(f"set{n}: {k} cells", flush=True)

    rec = dict(method="cellpose3_from_scratch", cellpose=version("cellpose"), torch=torch.__version__,
               threads=a.threads, mkldnn=bool(model.mkldnn),
               epochs_requested=a.epochs, epochs_planned=n_epochs, epochs=epochs_done, hard_stop=hard_stop,
               cpu_minutes=round(cpu_total / 60, 3),  # process CPU from start to end of training
               cpu_s_breakdown=dict(data_and_flows=round(cpu_data, 2), probe=round(cpu_probe, 2),
                                    train=round(cpu_train, 2), predict=round(time.process_time() - c_pred, 2)),
               cpu_s_per_epoch_probe=s_per_epoch, cpu_s_setup_probe=overhead,
               cpu_s_per_epoch_train=cpu_train / max(epochs_done, 1e-9),
               wall_s=round(wall_train, 1), wall_s_train=round(wall_train_only, 1),
               wall_s_total=round(time.time() - t0, 1), budget_cpu_minutes=a.cpu_minutes,
               settings=dict(scale=a.scale, train_sets=parse_sets(a.train_sets), pred_sets=parse_sets(a.pred_sets),
                             pretrained=None, diam_mean=30.0, diameter_pred=diam, flow_threshold=0.4,
                             cellprob_threshold=0.0, min_size=15, seed=a.seed, probe_epochs=a.probe_epochs,
                             **{k: v for k, v in kw.items() if k not in ("save_path", "save_every")}),
               batch_losses=[round(v, 5) for v in state["losses"]],
               n_cells=n_cells, weights=str(out / "models" / "cellpose_peer"))
    (out / "run.json").write_text(json.dumps(rec, indent=2))
    print(json.dumps({k: rec[k] for k in ("epochs", "cpu_minutes", "wall_s", "hard_stop")}))


if __name__ == "__main__":
    main()

"""End-to-end CPU speed: cks against the author's ``lacss`` (image in, label image out).

    CKS_DATA_DIR=... CKS_LACSS_PYTHON=/path/to/lacss-venv/bin/python \
    python benchmarks/speed_vs_lacss.py --threads 2 --rounds 3 --repeat 3 --warmup 1 \
        --out results/speed_vs_lacss.json

The lacss environment (never a cks requirement): a throwaway venv with CPU ``jax/jaxlib 0.4.38``,
``flax 0.10.4``, ``numpy<2`` and the other packages of lacss-anchor-notes section 9, then
``pip install lacss==0.15.2 xtrain==0.4.3 --no-deps`` and ``vedo``.

One driver runs every measurement as its own subprocess, interleaved round by round (the order
is rotated each round, so slow drift of the machine's load hits every configuration alike):

* ``lacss/tiled544`` — ``lacss`` 0.15.2 ``small`` preset (ConvNeXt-tiny backbone, 3D heads
  removed), random init, ``Predictor((module, params))`` with its defaults (544-px tiles, step
  480, 256 cells per tile): 1 tile at 512x512, 2 tiles at 520x704;
* ``lacss/onetile`` — the same model with ``Predictor(..., grid_size=G, step_size=G - 32)``,
  ``G`` = the image's longer side rounded up to 32 px: one tile covering the whole image;
* ``cks/convnext_tiny`` and ``cks/convnext_small`` — ``cks.predict.predict(model, image,
  scale=1.0)`` of a random-init :class:`cks.models.principal.Principal` (one tile);
* ``cks/convnext_tiny_stride4`` — an explanatory row, not the paper's model: ``convnext_tiny`` with the
  detection head at stride 4 only (``detector.strides=(4,)``), the layout of lacss' current ``small``
  (the paper, and cks by default, run the shared head at strides 4, 8, 16 and 32).

Every subprocess gets the same threads: CPU affinity to the same ``--threads`` cores (this also
sizes XLA's thread pool), ``OMP/MKL/OPENBLAS_NUM_THREADS``, ``torch.set_num_threads`` and, for one
thread, ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``. It builds
the model, runs ``--warmup`` untimed calls (jit compilation, first-call allocation) and then times
``--repeat`` calls of the public predict function on the same image, from the raw uint16 array to
the label image (normalisation, tiling/padding, model, decoding, NMS, mask pasting or contour
filling included).

Cell counts with random weights. Both models are random-init, so their detections are not
cells; the counts are made comparable as follows and reported per configuration:

* ``lacss`` computes a fixed number of instance slots per tile (``cells_per_grid``, default 256)
  whatever the image holds, so its model time does not depend on the count. With random weights
  every slot is a valid detection (scores ~0.85-0.95) and each mask covers ~86 % of its 96x96
  window, so the default box NMS (``nms_iou=0.4``) would cut 256 cells to ~36; this driver passes
  ``nms_iou=0`` (``--lacss-nms-iou``), which skips that NMS, so lacss returns all 256 instances
  per tile (2 x 256 with two tiles). Skipping the NMS only removes work from lacss.
* ``cks`` would detect nothing (score prior 0.01). As in :mod:`cks.bench`, its detection head
  still runs in full but its output maps are replaced by maps that encode ``--cells`` cells on a
  jittered grid (neighbours > 8 px apart, so the point NMS keeps every one); decoding, NMS, the
  segmentation head over all cells and pasting then run on exactly that many cells. The default
  (``auto``) is the largest instance count lacss produces at that size (256 per 544-px tile), so
  cks segments at least as many cells as lacss does.

``instances`` is the number of segmented detections, ``labels`` the number of distinct labels left
in the output image (overlapping random masks hide some), ``mean_area`` their mean pixel area.

The ratios are lacss time / cks time; "lacss best" is the faster of its two configurations.
Timings on a shared or busy machine are not representative; look at ``load_avg``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
#: Source image, under $CKS_DATA_DIR (the test images are crops of it); --image overrides.
DEFAULT_IMAGE = os.path.join(os.environ.get("CKS_DATA_DIR", ""), "usiigaci_nih3t3_phase/val/set46/raw.tif")
#: Python of the throwaway lacss environment (lacss-anchor-notes section 9); --lacss-python overrides.
DEFAULT_LACSS_PY = os.environ.get("CKS_LACSS_PYTHON", "lacss-venv/bin/python")
CELLS_PER_GRID = 256  # lacss Predictor default
LACSS_GRID, LACSS_STEP = 544, 480  # lacss Predictor defaults


# ----------------------------------------------------------------------------------------------
# helpers shared by the driver and the workers (stdlib + numpy only at import time)


def _parse_size(s: str) -> tuple[int, int]:
    h, w = s.lower().split("x")
    return int(h), int(w)


def _lacss_tiles(h: int, w: int, grid: int = LACSS_GRID, step: int = LACSS_STEP) -> int:
    """Number of tiles lacss' Predictor uses (checked against the real count in the worker)."""
    return len(range(0, max(h - (grid - step), 1), step)) * len(range(0, max(w - (grid - step), 1), step))


def _one_tile_grid(h: int, w: int) -> int:
    return 32 * math.ceil(max(h, w) / 32)


def _label_stats(label) -> tuple[int, float]:
    import numpy as np

    ids, counts = np.unique(np.asarray(label), return_counts=True)
    keep = ids > 0
    n = int(keep.sum())
    return n, float(counts[keep].mean()) if n else 0.0


def _timed(fn, warmup: int, repeat: int):
    t0 = time.perf_counter()
    for _ in range(warmup):
        out = fn()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, warm, times


# ----------------------------------------------------------------------------------------------
# workers


def worker_cks(a) -> dict:
    import numpy as np
    import torch
    from torch import nn

    torch.set_num_threads(a.threads)
    from cks.config import get_preset
    from cks.grid import detection_targets
    from cks.models.principal import Principal
    from cks.predict import predict

    image = np.load(a.image)
    h, w = image.shape
    t0 = time.perf_counter()
    torch.manual_seed(a.seed)
    size, _, variant = a.config.partition("_stride")
    cfg = get_preset("base", size=size, overrides={"detector.strides": (int(variant),)} if variant else None)
    model = Principal(cfg).eval()
    n_params = sum(p.numel() for p in model.parameters())
    from cks.bench import grid_points

    pts = grid_points(a.cells, (h, w), a.seed, margin=8.0, jitter=2.0)[None]
    valid = torch.ones(pts.shape[:2], dtype=torch.bool)

    class ForcedDetections(nn.Module):
        """Runs the real detection head, then returns maps that encode ``pts`` (cached per map size)."""

        def __init__(self, head):
            super().__init__()
            self.head = head
            self.cache = {}

        def forward(self, feats):
            logits, offsets = self.head(feats)  # the real head's cost stays in the timing
            key = tuple((s, tuple(v.shape)) for s, v in logits.items())
            if key not in self.cache:
                gen = torch.Generator().manual_seed(a.seed)
                fl, fo = {}, {}
                for s, v in logits.items():
                    tgt, off = detection_targets(pts, valid, s, tuple(v.shape[-2:]), cfg.detector.smoothing_radius)
                    fl[s] = tgt * 8 - 4 + torch.rand(tgt.shape, generator=gen)  # positives ~ +4..5, others ~ -4..-3
                    fo[s] = off
                self.cache[key] = (fl, fo)
            return self.cache[key]

    model.detector = ForcedDetections(model.detector)
    seen = {}
    hook = model.register_forward_hook(lambda m, i, o: seen.__setitem__("instances", int(o["seg_points"].shape[0])))
    setup = time.perf_counter() - t0

    def fn():
        return predict(model, image, scale=1.0)

    with torch.inference_mode():
        fn()  # first call: count the instances, then remove the hook
        hook.remove()
        (label, table), warm, times = _timed(fn, max(a.warmup - 1, 0), a.repeat)
    labels, mean_area = _label_stats(label)
    return {"impl": "cks", "config": a.config, "backbone": cfg.backbone.name, "params": n_params, "tiles": 1,
            "instances": seen.get("instances", -1), "labels": labels, "table_rows": int(len(table["label"])),
            "mean_area": mean_area, "setup_s": setup, "warmup_s": warm, "times_s": times,
            "versions": {"torch": torch.__version__}, "torch_threads": torch.get_num_threads()}


def worker_lacss(a) -> dict:
    import importlib.metadata
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("lacss").setLevel(logging.ERROR)
    import numpy as np
    import jax
    import jax.numpy as jnp
    from lacss.deploy.predict import Predictor
    from lacss.modules import Lacss

    image = np.load(a.image)
    h, w = image.shape
    img = image[..., None]  # (H, W, 1); lacss normalises and repeats to 3 channels itself
    t0 = time.perf_counter()
    module = Lacss.get_preconfigued("small")
    module.detector_3d = None
    module.segmentor_3d = None
    params = module.init(jax.random.PRNGKey(a.seed), jnp.zeros((64, 64, 3)))["params"]
    n_params = int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
    if a.config == "tiled544":
        kw = {}  # Predictor defaults: grid_size 544, step_size 480, cells_per_grid 256
    elif a.config == "onetile":
        g = _one_tile_grid(h, w)
        kw = {"grid_size": g, "step_size": g - 32}
    else:
        raise SystemExit(f"unknown lacss config {a.config}")
    pred = Predictor((module, params), **kw)
    setup = time.perf_counter() - t0

    def fn():
        return pred.predict(img, output_type="label", nms_iou=a.lacss_nms_iou)

    calls = {"n": 0}
    model_fn = pred._model_fn

    def counting(*args, **kwargs):  # counts tiles in the first call only
        calls["n"] += 1
        return model_fn(*args, **kwargs)

    pred._model_fn = counting
    fn()
    pred._model_fn = model_fn
    out, warm, times = _timed(fn, max(a.warmup - 1, 0), a.repeat)
    labels, mean_area = _label_stats(out["pred_label"])
    return {"impl": "lacss", "config": a.config, "backbone": f"convnext {module.backbone.base_type}", "params": n_params,
            "tiles": calls["n"], "grid_size": pred.grid_size, "step_size": pred.step_size,
            "cells_per_grid": pred.cells_per_grid, "nms_iou": a.lacss_nms_iou,
            "instances": int(len(out["pred_scores"])), "labels": labels, "mean_area": mean_area,
            "setup_s": setup, "warmup_s": warm, "times_s": times,
            "versions": {"jax": jax.__version__, "lacss": importlib.metadata.version("lacss")}}


def worker_main(a) -> None:
    t = time.perf_counter()
    r = worker_cks(a) if a.worker == "cks" else worker_lacss(a)
    r.update(size=a.size, median_s=statistics.median(r["times_s"]), threads=a.threads,
             affinity=sorted(os.sched_getaffinity(0)), process_s=time.perf_counter() - t)
    print("RESULT " + json.dumps(r), flush=True)


# ----------------------------------------------------------------------------------------------
# driver


def _write_images(src: str, sizes: list[tuple[int, int]], folder: Path) -> dict:
    """Crop each size from the top-left of ``src`` (a real phase-contrast field); saved as .npy in ``folder``."""
    import numpy as np

    try:
        import tifffile

        full = tifffile.imread(src)
        origin = src
    except Exception as e:  # no data: a smooth random field with blobs, so the run still works
        print(f"could not read {src} ({e}); using a synthetic image", file=sys.stderr)
        rng = np.random.default_rng(0)
        full = (rng.normal(30000, 3000, (1024, 1024))).astype(np.uint16)
        origin = "synthetic"
    full = np.asarray(full)
    if full.ndim == 3:
        full = full[0] if full.shape[0] <= 4 else full[..., 0]
    out = {}
    for h, w in sizes:
        if full.shape[0] < h or full.shape[1] < w:
            reps = (math.ceil(h / full.shape[0]), math.ceil(w / full.shape[1]))
            full = np.tile(full, reps)
        p = folder / f"image_{h}x{w}.npy"
        np.save(p, np.ascontiguousarray(full[:h, :w]))
        out[f"{h}x{w}"] = str(p)
    return {"source": origin, "paths": out}


def _pin(cores: list[int]):
    def fn():
        os.sched_setaffinity(0, cores)
    return fn


def _run_job(job: dict, a, image: str, cores: list[int], timeout: float) -> dict:
    env = dict(os.environ)
    n = str(a.threads)
    env.update(OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, NUMEXPR_NUM_THREADS=n,
               VECLIB_MAXIMUM_THREADS=n, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""))
    if a.threads == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                            " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
    py = a.lacss_python if job["impl"] == "lacss" else a.cks_python
    cmd = [py, str(Path(__file__).resolve()), "--worker", job["impl"], "--config", job["config"],
           "--size", job["size"], "--image", image, "--threads", n, "--warmup", str(a.warmup),
           "--repeat", str(a.repeat), "--cells", str(job["cells"]), "--seed", str(a.seed),
           "--lacss-nms-iou", str(a.lacss_nms_iou)]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=_pin(cores), timeout=timeout,
                       cwd=str(ROOT))
    lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"{job['impl']}/{job['config']} {job['size']} failed (rc {p.returncode}):\n"
                           f"{p.stderr[-3000:]}\n{p.stdout[-1000:]}")
    r = json.loads(lines[-1][len("RESULT "):])
    r["wall_s"] = time.perf_counter() - t
    return r


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def summarise(results: list[dict], sizes: list[str]) -> tuple[list[dict], list[dict]]:
    rows = []
    for size in sizes:
        by = {}
        for r in results:
            if r["size"] == size:
                by.setdefault((r["impl"], r["config"]), []).append(r)
        for (impl, config), rs in by.items():
            meds = [r["median_s"] for r in rs]
            rows.append({"size": size, "impl": impl, "config": config, "backbone": rs[0]["backbone"],
                         "params_M": rs[0]["params"] / 1e6, "tiles": rs[0]["tiles"],
                         "instances": rs[0]["instances"], "labels": rs[0]["labels"],
                         "mean_area": rs[0]["mean_area"], "median_s": statistics.median(meds),
                         "round_medians_s": meds, "min_s": min(min(r["times_s"]) for r in rs),
                         "max_s": max(max(r["times_s"]) for r in rs), "rounds": len(rs)})
    ratios = []
    for size in sizes:
        rs = {(r["impl"], r["config"]): r for r in rows if r["size"] == size}
        lacss = {k[1]: v for k, v in rs.items() if k[0] == "lacss"}
        if not lacss:
            continue
        best = min(lacss, key=lambda c: lacss[c]["median_s"])
        for (impl, config), r in rs.items():
            if impl != "cks":
                continue
            item = {"size": size, "cks": config, "cks_median_s": r["median_s"], "lacss_best": best,
                    "lacss_best_median_s": lacss[best]["median_s"],
                    "ratio_lacss_best": lacss[best]["median_s"] / r["median_s"]}
            for c, lr in lacss.items():
                item[f"ratio_lacss_{c}"] = lr["median_s"] / r["median_s"]
            ratios.append(item)
    return rows, ratios


def markdown(rows: list[dict], ratios: list[dict], a) -> str:
    out = [f"End to end (image in, label image out), random init, {a.threads} thread(s), "
           f"median over {a.rounds} round(s) of per-round medians of {a.repeat} call(s).", "",
           "| size | implementation | backbone | params (M) | tiles | instances | labels | mean area (px) "
           "| median s/image | min-max s |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        out.append(f"| {r['size']} | {r['impl']} {r['config']} | {r['backbone']} | {r['params_M']:.1f} | {r['tiles']} "
                   f"| {r['instances']} | {r['labels']} | {r['mean_area']:.0f} | {r['median_s']:.3f} "
                   f"| {r['min_s']:.2f}-{r['max_s']:.2f} |")
    out += ["", "| size | cks | lacss tiled544 / cks | lacss onetile / cks | lacss best / cks |", "|---|---|---:|---:|---:|"]
    for q in ratios:
        out.append(f"| {q['size']} | {q['cks']} | {q.get('ratio_lacss_tiled544', float('nan')):.2f}x "
                   f"| {q.get('ratio_lacss_onetile', float('nan')):.2f}x "
                   f"| {q['ratio_lacss_best']:.2f}x ({q['lacss_best']}) |")
    return "\n".join(out)


def driver_main(a) -> None:
    from cks.provenance import cpu_model, git_commit

    sizes = [_parse_size(s) for s in a.sizes.split(",")]
    size_names = [f"{h}x{w}" for h, w in sizes]
    avail = sorted(os.sched_getaffinity(0))
    if a.threads > len(avail):
        raise SystemExit(f"--threads {a.threads} > {len(avail)} available cores")
    cores = avail[:a.threads]
    jobs = []
    for (h, w), name in zip(sizes, size_names):
        cells = int(a.cells) if a.cells != "auto" else CELLS_PER_GRID * _lacss_tiles(h, w)
        for impl, config in (("lacss", "tiled544"), ("cks", "convnext_tiny"), ("lacss", "onetile"),
                             ("cks", "convnext_small"), ("cks", "convnext_tiny_stride4")):
            if impl == "lacss" and a.skip_lacss:
                continue
            if config in a.skip.split(","):
                continue
            jobs.append({"impl": impl, "config": config, "size": name, "cells": cells})
    results = []
    started = time.time()
    meta = {"command": " ".join([sys.executable] + sys.argv), "git_commit": git_commit(), "cpu": cpu_model(),
            "cores_available": len(avail), "cores_used": cores, "threads": a.threads, "rounds": a.rounds,
            "repeat": a.repeat, "warmup": a.warmup, "cells": a.cells, "lacss_nms_iou": a.lacss_nms_iou,
            "load_avg_start": _load(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with tempfile.TemporaryDirectory(prefix="speed_vs_lacss_") as tmp:
        images = _write_images(a.image, sizes, Path(tmp))
        meta["image_source"] = images["source"]
        meta["image_crop"] = "top-left crop of the source, raw uint16"
        for rnd in range(a.rounds):
            k = rnd % len(jobs)
            order = jobs[k:] + jobs[:k]  # rotate the interleaved order each round
            if rnd % 2:
                order = order[::-1]
            for job in order:
                r = _run_job(job, a, images["paths"][job["size"]], cores, a.timeout)
                r["round"] = rnd
                results.append(r)
                print(f"round {rnd + 1}/{a.rounds} {job['impl']:5s} {job['config']:14s} {job['size']:8s} "
                      f"median {r['median_s']:.3f} s  instances {r['instances']}  labels {r['labels']}  "
                      f"(subprocess {r['wall_s']:.0f} s, load {_load()})", flush=True)
    meta["load_avg_end"] = _load()
    meta["wall_s"] = time.time() - started
    rows, ratios = summarise(results, size_names)
    md = markdown(rows, ratios, a)
    print()
    print(md)
    print(f"\ntotal wall time {meta['wall_s']:.0f} s; load average start {meta['load_avg_start']} end {meta['load_avg_end']}")
    if a.out:
        out = Path(a.out)
        if not out.is_absolute():
            out = ROOT / out
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"meta": meta, "summary": rows, "ratios": ratios, "markdown": md,
                                   "runs": results}, indent=1))
        print(f"wrote {out}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--threads", type=int, default=2, help="threads (and pinned cores) per subprocess")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (one subprocess per config per round)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per subprocess")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls per subprocess (compile, first call)")
    p.add_argument("--sizes", default="512x512,520x704", help="comma-separated HxW")
    p.add_argument("--cells", default="auto",
                   help="cells forced on cks; 'auto' = 256 x lacss' 544-px tile count at that size")
    p.add_argument("--lacss-nms-iou", type=float, default=0.0,
                   help="lacss box-NMS IoU (0 skips it, keeping all instances; lacss default 0.4)")
    p.add_argument("--image", default=DEFAULT_IMAGE, help="source image (tif) the test images are cropped from")
    p.add_argument("--out", default="results/speed_vs_lacss.json", help="JSON output ('' for none)")
    p.add_argument("--lacss-python", default=DEFAULT_LACSS_PY)
    p.add_argument("--cks-python", default=sys.executable)
    p.add_argument("--skip", default="", help="comma-separated configs to leave out (e.g. convnext_small)")
    p.add_argument("--skip-lacss", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=3600, help="seconds per subprocess")
    p.add_argument("--seed", type=int, default=0)
    # worker mode
    p.add_argument("--worker", choices=["cks", "lacss"], help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--size", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        a.cells = int(a.cells)
        worker_main(a)
    else:
        driver_main(a)


if __name__ == "__main__":
    main()

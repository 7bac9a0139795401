"""Speed and memory benchmark (prints figures and ratios; never asserts wall-clock numbers).

    python -m cks.bench                 # all measurements, one subprocess each
    python -m cks.bench --quick         # smaller repeat counts

Measurements (each in its own subprocess, so peak memory is honest; peak RSS includes the
~0.7 GB of importing torch, reported separately as ``base_rss``):

1. ``seg`` — segmentation head forward+backward at 520x704 for n = 500, 2000, 4000 cells
   (training mode) and forward-only inference for the same n; time per cell shows whether the
   cost grows linearly in n.
2. ``infer`` — inference of the principal model (``convnext_small`` by default) on a 520x704
   image with n cells, split into backbone (ConvNeXt), FPN, detection head, segmentation head and
   decode + NMS + paste. The detection maps are replaced by maps that encode n cells on a jittered
   grid, so decode/NMS/paste run on n detections even with random weights; the pasted masks are the
   head's windows shifted to 10 % fill (random weights fill ~50 % of a window, 10x a real cell).
3. ``tiles`` (with ``--model RUN --image PATH``) — end-to-end :func:`cks.predict.predict` of a *trained* model
   on one real image mirrored out to S x S px (S = 512 ... 4000; above the tile size the image is cut into
   overlapping tiles), so cell counts are real: time, time per megapixel, cells found and peak RSS per size.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median_time(fn, repeat: int) -> float:
    import statistics

    fn()  # warm-up
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def grid_points(n: int, hw=(520, 704), seed: int = 0, margin: float = 4.0, jitter: float = 0.6):
    """``n`` cell locations ``[n, 2]`` (y, x) on a grid ``margin`` px inside ``hw``, each moved by up to
    ``jitter / 2`` px (neighbours stay > 8 px apart for n up to ~area/100, so NMS keeps all of them)."""
    import math

    import torch

    g = torch.Generator().manual_seed(seed)
    ny = max(1, round(math.sqrt(n * hw[0] / hw[1])))
    nx = math.ceil(n / ny)
    yy, xx = torch.meshgrid(torch.linspace(margin, hw[0] - 1 - margin, ny),
                            torch.linspace(margin, hw[1] - 1 - margin, nx), indexing="ij")
    pts = torch.stack([yy.flatten(), xx.flatten()], 1)[:n]
    return pts + (torch.rand(pts.shape, generator=g) - 0.5) * jitter


def run_seg(n: int, size: str, repeat: int, train: bool) -> dict:
    import torch

    from .config import get_preset
    from .models.principal import Principal

    torch.manual_seed(0)
    cfg = get_preset("base", size=size)
    model = Principal(cfg)
    x = torch.randn(1, 1, 520, 704)
    with torch.no_grad():
        feat4 = model.features(x)[4]
    pts = grid_points(n)
    bi = torch.zeros(n, dtype=torch.long)
    base = _rss_mb()
    if train:
        def fn():
            logits, _ = model.segmentor(feat4, pts, bi)
            logits.sigmoid().mean().backward()
    else:
        def fn():
            with torch.no_grad():
                for i in range(0, n, model.inference_chunk):
                    model.segmentor(feat4, pts[i:i + model.inference_chunk], bi[i:i + model.inference_chunk])
    t = _median_time(fn, repeat)
    return {"what": "seg_train" if train else "seg_infer", "n": n, "size": size, "time_s": t,
            "ms_per_cell": 1000 * t / n, "base_rss_mb": base, "peak_rss_mb": _rss_mb()}


def run_infer(n: int, size: str, repeat: int) -> dict:
    import torch

    from .config import get_preset
    from .models.backbone import match_channels, pad_to_multiple
    from .grid import detection_targets
    from .models.detector import decode
    from .models.principal import Principal
    from .windows import native_windows, paste_labels

    torch.manual_seed(0)
    cfg = get_preset("base", size=size)
    model = Principal(cfg).eval()
    x = torch.randn(1, 1, 520, 704)
    xp = pad_to_multiple(match_channels(x, cfg.backbone.in_channels), 32)
    pts = grid_points(n)[None]
    valid = torch.ones(1, n, dtype=torch.bool)
    times = {}
    with torch.no_grad():
        times["backbone"] = _median_time(lambda: model.backbone.encoder(xp), repeat)
        enc = model.backbone.encoder(xp)
        times["fpn"] = _median_time(lambda: model.backbone.fpn(enc), repeat)
        feats = dict(zip(model.backbone.strides, model.backbone.fpn(enc)))
        times["detection_head"] = _median_time(lambda: model.detector(feats), repeat)
        logits, offsets = {}, {}
        for s in cfg.detector.strides:
            tgt, off = detection_targets(pts, valid, s, tuple(feats[s].shape[-2:]), cfg.detector.smoothing_radius)
            logits[s] = tgt * 8 - 4 + torch.rand_like(tgt)  # positives ~ +4..5, negatives ~ -4..-3
            offsets[s] = off
        dets = decode(logits, offsets, (520, 704), cfg.detector.min_score, cfg.detector.nms_radius,
                      cfg.detector.max_output)
        dp, ds = dets[0]
        bi = torch.zeros(len(dp), dtype=torch.long)

        def seg():
            outs = [model.segmentor(feats[4], dp[i:i + model.inference_chunk], bi[i:i + model.inference_chunk])
                    for i in range(0, len(dp), model.inference_chunk)]
            return torch.cat([o[0] for o in outs]), torch.cat([o[1] for o in outs])

        times["segmentation_head"] = _median_time(seg, repeat)
        lg, org = seg()
        # random weights give masks covering ~half of each window (10x a real cell); shift each window's
        # logits so 10 % of it is on (~920 px, still larger than a typical cell) to paste realistic masks
        lg = lg - torch.quantile(lg.flatten(1), 0.9, dim=1)[:, None, None]

        def post():
            d = decode(logits, offsets, (520, 704), cfg.detector.min_score, cfg.detector.nms_radius,
                       cfg.detector.max_output)
            paste_labels(lg, d[0][1], bi, org, (1, 520, 704), score_threshold=0.5)

        times["decode_nms_paste"] = _median_time(post, repeat)
        # an image shown at 1/1.5 of its size: predict's two ways back to the input's resolution (one of them runs)
        native, sc = (780, 1056), ds
        probs = torch.sigmoid(lg).half()

        def back_label():
            on = (probs.float() >= 0.5).to(torch.int8) * 2 - 1
            lab = paste_labels(on, sc, bi, org, (1, 520, 704), score_threshold=0.5)[0]
            torch.nn.functional.interpolate(lab[None].float(), size=native, mode="nearest")

        def back_bilinear():
            on, norg = native_windows(probs, org, (1.5, 1.5), 0.5)
            paste_labels(on.to(torch.int8) * 2 - 1, sc, bi, norg, (1, *native), score_threshold=0.5)

        back = {"label": _median_time(back_label, repeat), "bilinear": _median_time(back_bilinear, repeat)}
    total = sum(times.values())
    return {"what": "infer", "n": n, "n_detected": int(len(dp)), "size": size, **{k + "_s": v for k, v in times.items()},
            "total_s": total, "decode_nms_paste_fraction": times["decode_nms_paste"] / total, "peak_rss_mb": _rss_mb(),
            "back_label_s": back["label"], "back_bilinear_s": back["bilinear"]}


def run_tiles(side: int, model_path: str, image_path: str, repeat: int) -> dict:
    """predict() on ``image_path`` mirrored (numpy 'symmetric' padding) to ``side`` x ``side`` px."""
    import numpy as np

    from .checkpoint import load_model
    from .data.io import read_image
    from .predict import predict

    model = load_model(model_path)
    img = read_image(image_path)
    h, w = img.shape[-2:]
    big = np.pad(img, ((0, 0), (0, max(0, side - h)), (0, max(0, side - w))), mode="symmetric")[:, :side, :side]
    base = _rss_mb()
    label, table = predict(model, big)
    t = _median_time(lambda: predict(model, big), repeat)
    return {"what": "tiles", "side": side, "megapixels": side * side / 1e6, "cells": int(len(table["label"])),
            "time_s": t, "s_per_megapixel": t / (side * side / 1e6), "base_rss_mb": base, "peak_rss_mb": _rss_mb()}


def _write_json(path: str, rows: list[dict], command: str, extra: dict) -> None:
    """Measurements plus provenance (commit, CPU, cores, torch) as JSON."""
    import os

    import torch

    from .provenance import cpu_model, git_commit

    commit, cpu = git_commit(), cpu_model()
    meta = {"command": command, "git_commit": commit, "cpu": cpu, "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, **extra}
    Path(path).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))


def _sub(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-m", "cks.bench", "--one", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- reading results back (the book)
def speed_results(root=None) -> dict | None:
    """cks against the author's lacss (``benchmarks/speed_vs_lacss.py`` -> ``speed_vs_lacss.json``): its Markdown
    table, one provenance line and ``ratio`` = {(size, cks config): lacss best-case time / cks time}; None if absent."""
    from .report import default_results_dir

    path = Path(root or default_results_dir()) / "speed_vs_lacss.json"
    if not path.is_file():
        return None
    r = json.loads(path.read_text())
    m = r["meta"]
    prov = (f"commit {str(m.get('git_commit', ''))[:7]}, {m.get('cpu')}, {m.get('threads')} threads, median over "
            f"{m.get('rounds')} interleaved rounds of {m.get('repeat')} calls, random init, warm-up excluded")
    return {"markdown": r["markdown"], "provenance": prov,
            "ratio": {(x["size"], x["cks"]): x["ratio_lacss_best"] for x in r["ratios"]}}


def scaling_markdown(root=None) -> str:
    """Inference time against image size (``python -m cks.bench --model RUN --image IMG --json
    results/bench_tiles.json``), with its provenance; "not yet measured" if absent."""
    from .report import NOT_MEASURED, default_results_dir
    from .viz import markdown_table

    path = Path(root or default_results_dir()) / "bench_tiles.json"
    if not path.is_file():
        return f"*{NOT_MEASURED}*"
    r = json.loads(path.read_text())
    rows = {f"{x['side']} x {x['side']}": {"megapixels": x["megapixels"], "cells": x["cells"], "seconds": x["time_s"],
                                          "s per megapixel": x["s_per_megapixel"], "peak RSS (MB)": round(x["peak_rss_mb"])}
            for x in r["rows"]}
    m = r["meta"]
    return (markdown_table(rows, digits=2) + f"\n\n*Provenance:* `{m['command']}`, commit {str(m['git_commit'])[:7]}, "
            f"{m['cpu']}, {m['threads']} threads, torch {m['torch']}.")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m cks.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example: python -m cks.bench --quick --size convnext_atto")
    p.add_argument("--one", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--quick", action="store_true", help="fewer repeats")
    p.add_argument("--seg-size", default="convnext_small", help="model size for the segmentation-head benchmark")
    p.add_argument("--size", default="convnext_small", help="model size for the inference split")
    p.add_argument("--cells", default="500,2000,4000")
    p.add_argument("--model", help="trained run folder: measure image-size scaling only (with --image)")
    p.add_argument("--image", help="real image mirrored out to each size of --sides")
    p.add_argument("--sides", default="512,1024,2048,4000")
    p.add_argument("--json", help="also write the measurements (with commit and hardware) to this file")
    a = p.parse_args(argv)
    if a.one is not None:  # one measurement, in this subprocess
        kind, args = a.one[0], a.one[1:]
        import torch
        torch.set_num_threads(max(1, torch.get_num_threads()))
        run = {"seg_train": lambda n, size, rep: run_seg(int(n), size, int(rep), True),
               "seg_infer": lambda n, size, rep: run_seg(int(n), size, int(rep), False),
               "infer": lambda n, size, rep: run_infer(int(n), size, int(rep)),
               "tiles": lambda side, model, image, rep: run_tiles(int(side), model, image, int(rep))}[kind]
        print(json.dumps(run(*args)))
        return
    command = " ".join(["python -m cks.bench", *(argv if argv is not None else sys.argv[1:])])
    if a.model:
        if not a.image:
            p.error("--model needs --image (a real image to mirror out to each size)")
        rows = []
        for side in [int(s) for s in a.sides.split(",")]:
            r = _sub(["tiles", str(side), a.model, a.image, "1" if a.quick else "3"])
            rows.append(r)
            print(f"tiles {side:5d}^2: {r['time_s']:.2f} s, {r['s_per_megapixel']:.2f} s/MP "
                  f"(x{r['s_per_megapixel'] / rows[0]['s_per_megapixel']:.2f} of the {rows[0]['side']}^2 rate), "
                  f"{r['cells']} cells, peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
        print(json.dumps(rows))
        if a.json:
            _write_json(a.json, rows, command, {"model": a.model, "image": a.image})
        return
    rep = 2 if a.quick else 5
    cells = [int(c) for c in a.cells.split(",")]
    rows = []
    for kind in ("seg_train", "seg_infer"):
        for n in cells:
            r = _sub([kind, str(n), a.seg_size, str(rep)])
            rows.append(r)
            print(f"{kind:9s} n={n:5d}  {r['time_s']:.3f} s  {r['ms_per_cell']:.3f} ms/cell  "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB (after setup {r['base_rss_mb']:.0f} MB)", flush=True)
        base = [r for r in rows if r["what"] == kind]
        print(f"  linearity ({kind}): time ratio {cells[-1]}/{cells[0]} cells = "
              f"{base[-1]['time_s'] / base[0]['time_s']:.2f} (cell ratio {cells[-1] / cells[0]:.1f})", flush=True)
    for n in cells:
        r = _sub(["infer", str(n), a.size, str(rep)])
        rows.append(r)
        parts = "  ".join(f"{k[:-2]} {r[k]:.3f}s" for k in r if k.endswith("_s") and k != "total_s"
                          and not k.startswith("back_"))
        print(f"infer {a.size} n={n} (detected {r['n_detected']}): total {r['total_s']:.3f} s | {parts} | "
              f"decode/NMS/paste = {100 * r['decode_nms_paste_fraction']:.1f} % of the model time", flush=True)
        print(f"  masks back to a 1.5x input: label path {r['back_label_s']:.3f} s, bilinear "
              f"{r['back_bilinear_s']:.3f} s (x{r['back_bilinear_s'] / r['back_label_s']:.2f}; "
              f"{100 * r['back_bilinear_s'] / r['total_s']:.1f} % of the model time)", flush=True)
    print(json.dumps(rows))
    if a.json:
        _write_json(a.json, rows, command, {})


if __name__ == "__main__":
    main()

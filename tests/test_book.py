"""Every chapter executes in smoke mode (papermill) and its glued numbers are finite and in range."""
import json
import math
import os
from pathlib import Path

import pytest

from cks.config import BASE

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p for p in (ROOT / "book").glob("[0-9]*.md"))

RANGES = {"qs_steps": (1, 10_000), "qs_ap50": (0.0, 1.0), "qs_dice": (0.0, 1.0)}
# the quickstart's demo must segment once it has run its 600 steps (preset "demo": AP50 0.95, Dice 0.87; with L_PW
# left on, inherited from the base, it read 0.00 / 0.13 and the book showed it); its minutes cap may stop it sooner
# on a loaded machine, and then the floor does not apply
QS_FULL_STEPS, QS_FLOOR = 600, {"qs_ap50": 0.5, "qs_dice": 0.5}


# chapters 07-10: ablations, nuclear points, results, own images
_P = (0.0, 1.0)  # a proportion or score
RANGES.update({
    "ch07_n_train": (1, 1000), "ch07_n_val_cells": (1, 100_000),
    **{f"ch07_{m}_{v}": ((1, 1_000_000) if m == "steps" else _P)
       for m in ("steps", "ap50", "dice") for v in ("single", "constant", "full")},
    "ch07b_n_points": (1, 1_000_000),
    **{f"ch07b_{m}_{v}": ((1, 1_000_000) if m == "steps" else _P)
       for m in ("steps", "ap50", "dice") for v in ("entropy_principal", "entropy_collaborator", "linear")},
    "ch07c_n_types": (1, 14),
    **{f"ch07c_{m}_{v}": ((1, 1_000_000) if m == "steps" else _P)
       for m in ("steps", "ap50", "map") for v in ("no_prior", "constant_d", "per_type_d")},
    "ch07d_params_a1_b1": (1_000, 10_000_000), "ch07d_params_a3_b2": (1_000, 10_000_000),
    "ch07d_params_principal": (1_000_000, 1_000_000_000),
    **{f"ch07d_ap50_{v}": _P for v in ("a1_b1", "a2_b1", "a3_b1", "a1_b2", "a3_b2")},
    **{f"ch07d_{m}_{v}": _P for m in ("agree", "correct") for v in ("a1_b1", "a3_b2")},
    "ch08_load_s": (0, 3600), "ch08_n_points": (1, 1_000_000), "ch08_exactly_one": _P, "ch08_in_background": _P,
    "ch08_steps": (1, 1_000_000), "ch08_train_s": (0, 36_000), "ch08_radius_voronoi": (0.5, 100),
    "ch08_radius_watershed": (0.5, 100),
    **{f"ch08_{k}_{m}": _P for k in ("cks", "voronoi", "watershed") for m in ("dice", "ap50")},
    "ch09_n_files": (0, 100_000), "ch09_n_protocols": (0, 1000), "ch09_n_ablation_rows": (0, 100),
    "ch09_speed_tiny_520": (0.01, 1000), "ch09_speed_s4_520": (0.01, 1000), "ch09_speed_tiny_512": (0.01, 1000),
    "ch10_n_points": (1, 100_000), "ch10_exactly_one": _P, "ch10_train_s": (0, 3600), "ch10_cells_val0": (0, 10_000),
    "ch10_ap50": _P, "ch10_dice": _P, "ch10_cells_whole": (0, 100_000), "ch10_cells_tiled": (0, 100_000),
})

# chapters 02-06: data and points, detection, segmentation head, collaborator, CKS training
_F = (0.0, 1.0)  # a fraction, AP or Dice
RANGES.update({
    "ch2_usi_images": (1, 100), "ch2_usi_cells": (1, 100_000), "ch2_usi_median_area": (10, 100_000),
    "ch2_dc_images": (1, 100), "ch2_dc_cells": (1, 100_000), "ch2_dc_median_area": (10, 100_000),
    **{f"ch2_cov_{k}": _F for k in ("usi_centroid", "usi_jitter", "dc_centroid", "nuclei_one", "nuclei_none",
                                    "nuclei_multiple", "nuclei_background")},
    "ch3_steps": (1, 1_000_000), "ch3_n_gt": (1, 1_000_000), "ch3_ap5": _F, "ch3_ap2": _F,
    **{f"ch3_ap5_s{s}": _F for s in (4, 8, 16, 32)},
    "ch4_steps": (1, 1_000_000), "ch4_window": (8, 512), "ch4_fw": (2, 128), "ch4_n_gt": (1, 1_000_000),
    "ch4_sup_fps": (0.0, 10_000.0), **{f"ch4_sup_{m}": _F for m in ("dice", "ap50", "ap75", "map")},
    "ch5_params_fg": (1_000, 10_000_000), "ch5_params_border": (100, 10_000_000), "ch5_steps": (1, 1_000_000),
    "ch5_L_S": (0.0, 100.0), "ch5_L_M": _F, "ch5_L_B": _F, "ch5_L_MC": (0.0, 100.0), "ch5_L_CE": (0.0, 100.0),
    "ch5_d": (0.5, 200.0), "ch5_pi": (0.0, 100.0), "ch5_grad_lm_at_0": (0.999, 1.001), "ch5_grad_lm_at_half": (-1e-3, 1e-3),
    "ch5_min_frac_paper": (0.09, 0.11), "ch5_closed_paper": (0.099, 0.101),
    "ch5_min_frac_author": (0.026, 0.032), "ch5_closed_author": (0.028, 0.03),
    "ch5_min_px_paper": (800, 1050), "ch5_min_px_author": (230, 300), "ch5_cell_frac": _F,
    "ch5_window": (8, 512), "ch5_S_demo": (8, 512),
    "ch6_n_gt": (1, 1_000_000), "ch6_cks_steps": (1, 1_000_000), "ch6_sup_steps": (1, 1_000_000),
    **{f"ch6_{k}_{m}": _F for k in ("cks", "sup") for m in ("dice", "ap50", "ap75", "map")},
})

# cell size (chapters 01, 02, 05, 06, 07c, 10): diameters in px, errors in %, scales within the guards of the library
_D = (1.0, 300.0)  # a cell diameter in px (native or model resolution)
_PCT = (0.0, 100.0)


def _cross(delta: float, exponent: float, diameter: float, window: int = BASE.segmentor.window) -> tuple:
    """Range of ch5_minarea_*: mask area / cell area where L_MC's push equals L_S's pull, a_min = S^2 (e delta)^(1/(e+1))
    (cks.losses.cks.effective_collapse_delta), read off a log grid of 200 points over 10^-1.5..10 (step ~3 %)."""
    x = window ** 2 * (exponent * delta) ** (1 / (exponent + 1)) / (math.pi * diameter ** 2 / 4)
    return (0.95 * x, 1.05 * x)


RANGES.update({
    "ch2_size_usi_n": (1, 100), "ch2_size_usi_min": _D, "ch2_size_usi_max": _D, "ch2_size_usi_ratio": (1.0, 20.0),
    "ch2_size_fields": (1, 1000), **{f"ch2_size_{k}_{p}": _PCT for k in ("within", "mederr")
                                      for p in ("centroid", "nuclei")},
    "ch5_minarea_paper19": _cross(0.01, 1.0, 19.0), "ch5_minarea_author19": _cross(0.01, 0.5, 19.0),
    "ch5_minarea_relative": (0.95 * BASE.loss.collapse_min_area, 1.05 * BASE.loss.collapse_min_area),
    **{f"ch6_diag_{k}_{m}": _F for k in ("cks", "sup") for m in ("matched", "iou", "disk")},
    **{f"ch6_diag_{k}_count": (0.0, 50.0) for k in ("cks", "sup")},
    **{f"ch6_diag_{k}_n": (0, 1_000_000) for k in ("cks", "sup")},
    **{f"ch6_diag_{k}_offset": (-200.0, 200.0) for k in ("cks", "sup")},  # px; masks live in one window
    "ch6_size_target": (4.0, 256.0), "ch6_size_n": (1, 1000), "ch6_size_true_min": _D, "ch6_size_true_max": _D,
    "ch6_size_err_median": _PCT, "ch6_size_err_max": _PCT,
    "ch6_size_scale_min": (0.25, 4.0), "ch6_size_scale_max": (0.25, 4.0),  # normalize_cell_size's 4x guard
    "ch6_size_val_true": _D, "ch6_size_pred_cks": _D, "ch6_size_pred_sup": _D, "ch6_size_dice_cks": _F,
    "ch6_size_dice_sup": _F,
    "ch6_size_passes_cks": (1, 12), "ch6_size_passes_sup": (1, 12),  # the scale search: 9 crops + 1
    "ch07c_d_rel": (0.05, 2.0), "ch07c_d_base": (1.0, 100.0), "ch07c_base_diameter": (4.0, 256.0),
    "ch10_diameter": _D, "ch10_rois_n": (0, 10_000), "ch10_clicked_n": (1, 10_000), "ch10_rois_agree": (0.0, 1.0), "ch10_scale_val0": (0.05, 20.0),
})


def glued(nb: dict) -> dict:
    out = {}
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook", {})
            if meta.get("name"):  # displayed or not (cks.viz.glue: display=False adds a mime prefix)
                text = o.get("data", {}).get(meta.get("mime_prefix", "") + "text/plain", "nan")
                text = "".join(text) if isinstance(text, list) else text
                out[meta["name"]] = float(text.strip("'\""))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_smoke(path, tmp_path, monkeypatch):
    """Executes the chapter in smoke mode — or, when ``book/run_chapters.py`` has just executed it
    (``_build/src/book/<chapter>.ipynb`` newer than the source, as in CI), checks that notebook
    instead, so nothing runs twice."""
    done = ROOT / "_build" / "src" / "book" / (path.stem + ".ipynb")
    if done.exists() and done.stat().st_mtime > path.stat().st_mtime:
        out = done
    else:
        jupytext = pytest.importorskip("jupytext")
        pm = pytest.importorskip("papermill")
        monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        monkeypatch.setenv("CKS_STATIC_FIGURES", "1")
        out = tmp_path / (path.stem + ".ipynb")
        pm.execute_notebook(jupytext.read(path), str(out), parameters={"SMOKE": True}, kernel_name="python3",
                            cwd=str(path.parent), progress_bar=False)
    nb = json.loads(out.read_text())
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "a chapter has exactly one parameters cell"
    values = glued(nb)
    assert values, "chapter glues no numbers"
    for name, v in values.items():
        assert math.isfinite(v), name
        if name in RANGES:
            lo, hi = RANGES[name]
            assert lo <= v <= hi, (name, v)
    if values.get("qs_steps", 0) >= QS_FULL_STEPS:
        for name, floor in QS_FLOOR.items():
            assert values[name] >= floor, (name, values[name], "the quickstart's demo does not segment")

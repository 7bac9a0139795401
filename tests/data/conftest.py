"""Fixtures for the data-layer tests: tiny data sets written in each on-disk layout."""

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image


def disc_label(shape, centres, radius):
    """int32 label with one disc per centre (ids 1..N)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    lab = np.zeros(shape, np.int32)
    for k, (cy, cx) in enumerate(centres, start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = k
    return lab


def grid_centres(shape, step, margin):
    ys = range(margin, shape[0] - margin + 1, step)
    return [(y, x) for y in ys for x in range(margin, shape[1] - margin + 1, step)]


def save_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def save_tif(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, arr)


@pytest.fixture
def usiigaci_tree(tmp_path):
    """root/{train/set1, train/set2, val/set46} with raw.tif + instances_ids.png (64 x 80)."""
    root = tmp_path / "usiigaci_nih3t3_phase"
    shape = (64, 80)
    centres = grid_centres(shape, 20, 12)
    rng = np.random.default_rng(0)
    for sub in ("train/set1", "train/set2", "val/set46"):
        lab = disc_label(shape, centres, 6).astype(np.uint8)
        lab[0:2, 0:2] = 1  # detached 4-px fragment of cell 1
        save_tif(root / sub / "raw.tif", (30000 + 1000 * rng.random(shape)).astype(np.uint16))
        save_png(root / sub / "instances_ids.png", lab)
    return root, centres


def deepcell_maps(shape, centres, radius=7):
    """(interior, edge) uint8 0/255 maps of discs, plus a 3-px speck in the interior map."""
    inner = disc_label(shape, centres, radius - 2) > 0
    outer = disc_label(shape, centres, radius) > 0
    interior = (inner * 255).astype(np.uint8)
    interior[1, 1:4] = 255  # speck, < min_area
    edge = ((outer & ~inner) * 255).astype(np.uint8)
    return interior, edge


def nuclear_image(shape, centres, sigma=3.0, amp=3000.0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, 200.0)
    for cy, cx in centres:
        img += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    return img.astype(np.uint16)


@pytest.fixture
def deepcell_tree(tmp_path):
    """A DeepCell-like tree: HeLa_joint/set1 (PNG), BMDM (TIFF maps), validation_data/HeLa."""
    root = tmp_path / "deepcell2016_covertlab"
    shape = (72, 96)
    centres = grid_centres(shape, 22, 14)
    phase = (20000 + np.arange(shape[0] * shape[1]).reshape(shape) % 500).astype(np.uint16)
    interior, edge = deepcell_maps(shape, centres)
    nuc = nuclear_image(shape, centres)
    d = root / "training_data" / "HeLa_joint" / "set1"
    save_png(d / "phase.png", phase), save_png(d / "nuclear.png", nuc)
    save_png(d / "feature_0.png", edge), save_png(d / "feature_1.png", interior)
    d = root / "training_data" / "BMDM"
    save_png(d / "phase.png", phase), save_png(d / "nuclear.png", nuc)
    save_tif(d / "feature_0.tif", edge), save_tif(d / "feature_1.tif", interior)
    d = root / "validation_data" / "HeLa"
    save_tif(d / "RawImages" / "phase.tif", phase), save_tif(d / "RawImages" / "farred.tif", nuc)
    save_tif(d / "Validation" / "hela_validation_edge.tif", edge.astype(np.uint16) * 257)
    save_tif(d / "Validation" / "hela_validation_interior.tif", interior.astype(np.uint16) * 257)
    return root, centres


@pytest.fixture
def real_data():
    """The real data folder from CKS_DATA_DIR (skips when unset)."""
    value = os.environ.get("CKS_DATA_DIR")
    if not value or not Path(value).is_dir():
        pytest.skip("CKS_DATA_DIR not set: real-data test skipped")
    return Path(value)


@pytest.fixture
def helpers():
    """The builder functions of this module, for tests that need custom fixtures."""
    from types import SimpleNamespace

    return SimpleNamespace(disc_label=disc_label, grid_centres=grid_centres, save_png=save_png,
                           save_tif=save_tif, deepcell_maps=deepcell_maps, nuclear_image=nuclear_image)

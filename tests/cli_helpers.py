"""Helpers and module fixtures of the ``cks`` command-line tests (tests/test_cli*.py): tiny generated data sets in
the Usiigaci layout and tiny runs trained through the CLI. Test modules import the fixtures they use by name.
"""
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from cks.cli import main
from cks.data.synthetic import synthetic_sample

REPO = Path(__file__).resolve().parents[1]
TINY = ["--size", "test", "--set", "segmentor.window=48", "train.crop_size=96"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def write_set(folder: Path, seed: int, size=(128, 128)) -> dict:
    """One Usiigaci set folder: raw.tif (uint16) + instances_ids.png (uint8)."""
    s = synthetic_sample(size, n_cells=10, radius=(7, 11), seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "raw.tif", (s["image"][0] * 10000 + 20000).clip(0, 65535).astype(np.uint16))
    Image.fromarray(s["label"].astype(np.uint8)).save(folder / "instances_ids.png")
    return s


def run_cli(capsys, *argv):
    """``(exit status, stdout, stderr)`` of ``cks argv``."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc, err, *needles):
    """Exit 2, exactly one stderr line ``error: ...`` that contains every needle, no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])


def no_tmp_files(folder: Path) -> bool:
    return not [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("usiigaci")
    samples = {f"set{i}": write_set(root / f"set{i}", seed=i) for i in (1, 2, 3)}
    return root, samples


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A CKS run trained from points for 3 steps through the CLI."""
    out = tmp_path_factory.mktemp("run") / "RUN"
    assert main(["train", "--data", str(data[0]), "--labels", "points", "--out", str(out), "--steps", "3", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def segmenting_run(data, tmp_path_factory):
    """A supervised run trained long enough (60 steps) to draw masks, so mask thresholds change them."""
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("seg") / "RUN"
    assert main(["train", "--data", str(data[0]), "--labels", "masks", "--preset", "supervised", "--out", str(out),
                 "--steps", "60", *TINY, "train.lr=0.003", "train.finetune_lr=0.003", "train.checkpoint_every=1000"]) == 0
    return out

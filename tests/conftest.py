"""Fixtures shared by several test modules (pytest finds this file by name)."""
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from cks.data.synthetic import synthetic_sample


def write_set(folder, seed, size=(128, 128)):
    """One Usiigaci-layout set folder: raw.tif + instances_ids.png (as tests/cli_helpers.py)."""
    s = synthetic_sample(size, n_cells=10, radius=(7, 11), seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / "raw.tif", (s["image"][0] * 10000 + 20000).clip(0, 65535).astype(np.uint16))
    Image.fromarray(s["label"].astype(np.uint8)).save(folder / "instances_ids.png")
    return s


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """Data on disk and a CKS run trained from points for 2 steps, with a snapshot after each step."""
    from cks.config import get_preset
    from cks.train import train

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("data")
    samples = [write_set(root / f"set{i}", seed=i) for i in (1, 2)]
    run = tmp_path_factory.mktemp("runs") / "RUN"
    cfg = get_preset("base", size="test", overrides={"segmentor.window": 48, "train.crop_size": 96, "train.steps": 2,
                                                      "train.checkpoint_every": 1000})
    for k in (1, 2):
        train(cfg, [dict(s, label=None) for s in samples], out_dir=run, resume=True, stop_at=k, progress=False)
        (run / "snapshots").mkdir(exist_ok=True)
        ck = torch.load(run / "checkpoint.pt", weights_only=False)
        ck.pop("optimizer")
        torch.save(ck, run / "snapshots" / f"step_{k:06d}.pt")
    return root, samples, run

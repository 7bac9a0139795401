"""The public face: ``import cks`` gives the few names a user needs, and the README's Python story runs."""
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

import cks
from cks.data.synthetic import synthetic_sample

ROOT = Path(__file__).resolve().parents[1]


def test_exports_resolve_and_predict_train_are_functions():
    for name in cks.__all__:
        assert getattr(cks, name) is not None
    import importlib

    importlib.import_module("cks.predict")  # importing the modules must not shadow the functions
    importlib.import_module("cks.train")

    assert callable(cks.predict) and cks.predict.__module__ == "cks.predict"
    assert callable(cks.train) and cks.train.__module__ == "cks.train"


def test_python_story_runs(tmp_path):
    torch.manual_seed(0)
    samples = [synthetic_sample((96, 96), n_cells=6, seed=s) for s in range(2)]
    cfg = cks.get_preset("base", size="test", overrides={"train.steps": 3, "train.crop_size": 96,
                                                         "segmentor.window": 32, "size.diameter": 16})
    cks.train(cfg, samples, out_dir=tmp_path / "run", progress=False)
    tifffile.imwrite(tmp_path / "field.tif", samples[0]["image"][0])
    # the README's lines
    model = cks.load_model(tmp_path / "run")
    image = cks.read_image(tmp_path / "field.tif")
    label, table = cks.predict(model, image, diameter=16)
    cks.write_labels(label, tmp_path / "out" / "field.labels.tif")
    cks.write_table(table, tmp_path / "out" / "field.csv")
    r = cks.evaluate_model(model, samples, size="true")
    assert tifffile.imread(tmp_path / "out" / "field.labels.tif").shape == image.shape[-2:]
    assert set(cks.read_table_scores(tmp_path / "out" / "field.csv")) == set(np.unique(label[label > 0]).tolist())
    assert 0.0 <= r["ap50"] <= 1.0 and r["n_gt"] == sum(len(np.unique(s["label"])) - 1 for s in samples)
    assert [z["diameter"] for z in r["sizes"]] == pytest.approx([z["true_diameter"] for z in r["sizes"]])


def test_readme_python_example_names_exist():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "README.md has a ```python block with the Python API"
    used = set(re.findall(r"\bcks\.([A-Za-z_]+)\(", block.group(1)))
    assert used and used <= set(cks.__all__), used - set(cks.__all__)
    assert len(block.group(1).strip().splitlines()) <= 10

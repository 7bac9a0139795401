"""cks.chapter: the setup every chapter shares, and the rule that chapters do not re-implement the library."""
import ast
import sys
from pathlib import Path

import jupytext
import numpy as np
import pytest
import torch

import cks
from cks import chapter

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p for p in (ROOT / "book").glob("[0-9]*.md"))


def test_profile_picks_the_mode_and_applies_overrides():
    smoke, full = {"steps": 300, "crop": 128}, {"steps": 20000, "crop": 512}
    assert chapter.profile(True, smoke, full) == smoke and chapter.profile(False, smoke, full) == full
    assert chapter.profile(False, smoke, full, steps=7, crop=None) == {"steps": 7, "crop": 512}
    chosen = chapter.profile(True, smoke, full, steps=5)
    assert smoke == {"steps": 300, "crop": 128} and chosen["steps"] == 5  # the inputs are not changed
    with pytest.raises(KeyError, match="stesp"):
        chapter.profile(True, smoke, full, stesp=5)


def test_setup_seeds_torch_and_sets_threads():
    before = torch.get_num_threads()
    try:
        chapter.setup(3, threads=1)
        a = torch.rand(4)
        assert torch.get_num_threads() == 1
        chapter.setup(3)
        assert torch.equal(a, torch.rand(4)) and torch.get_num_threads() == 1  # None leaves threads alone
        with pytest.raises(ValueError, match="threads"):
            chapter.setup(0, threads=0)
    finally:
        torch.set_num_threads(before)


def test_real_or_generated_without_data(monkeypatch):
    monkeypatch.delenv("CKS_DATA_DIR", raising=False)
    train, val, source = chapter.real_or_generated("a:set1", "b:set2", generated={"size": (64, 64), "n_cells": 4})
    assert source == chapter.GENERATED_SOURCE and (len(train), len(val)) == (2, 1)
    assert train[0]["image"].shape[-2:] == (64, 64) and len(train[0]["points"]) == 4
    assert not np.array_equal(train[0]["image"], val[0]["image"])  # different seeds per set
    a, b, c, _ = chapter.real_or_generated("a", "b", "c", n_generated=(1, 1, 2), generated={"size": (32, 32)})
    assert (len(a), len(b), len(c)) == (1, 1, 2)
    with pytest.raises(ValueError, match="2 entries for 3 specs"):
        chapter.real_or_generated("a", "b", "c", n_generated=(1, 1))
    with pytest.raises(ValueError, match="at least one"):
        chapter.real_or_generated()


def test_real_or_generated_with_data(monkeypatch, tmp_path):
    monkeypatch.setenv("CKS_DATA_DIR", str(tmp_path))
    calls = []
    import cks.data.spec as spec

    monkeypatch.setattr(spec, "load_dataset", lambda s, **kw: calls.append((s, kw)) or [{"name": s}])
    train, val, source = chapter.real_or_generated("x:set1", "y:set2", source="Usiigaci", split="train")
    assert source == "Usiigaci" and train == [{"name": "x:set1"}] and val == [{"name": "y:set2"}]
    assert calls == [("x:set1", {"split": "train"}), ("y:set2", {"split": "train"})]


def test_setup_colab_does_nothing_outside_colab(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.delenv("CKS_DATA_DIR", raising=False)
    assert chapter.setup_colab() is False
    import os

    assert "CKS_DATA_DIR" not in os.environ


def test_setup_colab_in_colab_sets_the_folder_and_fetches(monkeypatch, tmp_path):
    from cks.data import registry

    monkeypatch.setitem(sys.modules, "google.colab", object())
    monkeypatch.setenv("CKS_DATA_DIR", "unset-below")  # recorded, so teardown restores the caller's value ...
    monkeypatch.delenv("CKS_DATA_DIR")  # ... even though setup_colab sets it outside monkeypatch
    fetched = []
    monkeypatch.setattr(registry, "fetch_book_data", lambda: fetched.append(True))
    assert chapter.setup_colab(str(tmp_path)) is True
    import os

    assert os.environ["CKS_DATA_DIR"] == str(tmp_path) and fetched == [True]


def _library_names() -> set[str]:
    """Public top-level functions and classes defined anywhere in cks, plus what ``cks`` exports."""
    names = set(cks.__all__)
    for path in (ROOT / "cks").rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                names.add(node.name)
    return names


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_defines_no_library_name(path):
    """A chapter that defines a function or class the library already has is re-implementing library code."""
    nb = jupytext.read(path)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    defined = {n.name for n in ast.walk(ast.parse(code)) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert not defined & _library_names(), f"{path.name} re-defines {sorted(defined & _library_names())}"


def test_library_name_check_can_fail():
    assert {"predict", "evaluate", "profile"} <= _library_names()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_has_no_copied_setup(path):
    """The generated-data fallback and the Colab download are cks.chapter calls, not copies in each chapter."""
    text = path.read_text()
    assert "fetch_book_data()" not in text and 'setdefault("CKS_DATA_DIR"' not in text
    assert "torch.set_num_threads(" not in text  # cks.chapter.setup

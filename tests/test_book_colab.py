"""The Colab path of the book: every chapter has one Colab-only install cell, the Colab copies name the
repository, and the badge points at the copy of the same chapter on the Colab branch."""
import importlib.util
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p for p in (ROOT / "book").glob("[0-9]*.md"))


def _run_chapters():
    spec = importlib.util.spec_from_file_location("run_chapters", ROOT / "book" / "run_chapters.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_colab_copy_names_the_repository(path):
    rc = _run_chapters()
    nb = jupytext.read(path)
    copy = rc.colab_copy(nb, "someone/cks")
    cell = next(c for c in copy.cells if c.cell_type == "code" and "google.colab" in c.source)
    assert 'CKS_REPOSITORY = "someone/cks"' in cell.source and rc.COLAB_PLACEHOLDER not in cell.source
    assert cell.source.lstrip().startswith("import sys, os\nif \"google.colab\" in sys.modules:")
    # outside Colab nothing of it runs: install, clone and download all sit in the indented if-block
    lines = cell.source.split("\n")
    block = []
    for line in lines[2:]:
        if not line.startswith("    "):
            break
        block.append(line)
    text = "\n".join(block)
    assert "pip install" in text and "git clone" in text and "setup_colab()" in text
    assert not any(k in "\n".join(lines[2 + len(block):]) for k in ("pip install", "git clone", "setup_colab"))

def test_badge_and_url(tmp_path):
    rc = _run_chapters()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title"), nbformat.v4.new_code_cell("1")])
    p = tmp_path / "x.ipynb"
    nbformat.write(nb, p)
    url = rc.colab_url("someone/cks", "colab", "book/03_detection")
    assert url == "https://colab.research.google.com/github/someone/cks/blob/colab/03_detection.ipynb"
    rc.add_badge(p, url)
    cells = nbformat.read(p, as_version=4).cells
    assert cells[0].source == "# Title" and url in cells[1].source and "colab-badge.svg" in cells[1].source
    with pytest.raises(ValueError, match="Colab install cell"):
        rc.colab_copy(nb, "someone/cks")  # a notebook without the install cell


def test_fetch_book_data_fetches_every_book_set(tmp_path, monkeypatch):
    from cks.data import registry

    calls = []
    monkeypatch.setattr(registry, "fetch", lambda name, root: calls.append((name, root)))
    monkeypatch.setenv("CKS_DATA_DIR", str(tmp_path / "d"))
    root = registry.fetch_book_data()
    assert root == tmp_path / "d" and root.is_dir()
    assert [c[0] for c in calls] == list(registry.BOOK_DATASETS) and all(c[1] == root for c in calls)

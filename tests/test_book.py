"""Every chapter executes in smoke mode (papermill) and its glued numbers are finite and in range."""
import json
import math
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p for p in (ROOT / "book").glob("[0-9]*.md"))

RANGES = {"qs_steps": (1, 10_000), "qs_ap50": (0.0, 1.0), "qs_dice": (0.0, 1.0)}


def glued(nb: dict) -> dict:
    out = {}
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook", {})
            if meta.get("name"):
                text = o.get("data", {}).get("text/plain", "nan")
                text = "".join(text) if isinstance(text, list) else text
                out[meta["name"]] = float(text.strip("'\""))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_chapter_smoke(path, tmp_path, monkeypatch):
    jupytext = pytest.importorskip("jupytext")
    pm = pytest.importorskip("papermill")
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / (path.stem + ".ipynb")
    pm.execute_notebook(jupytext.read(path), str(out), parameters={"SMOKE": True}, kernel_name="python3",
                        cwd=str(path.parent), progress_bar=False)
    values = glued(json.loads(out.read_text()))
    assert values, "chapter glues no numbers"
    for name, v in values.items():
        assert math.isfinite(v), name
        if name in RANGES:
            lo, hi = RANGES[name]
            assert lo <= v <= hi, (name, v)

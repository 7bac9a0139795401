"""Execute every chapter of ``_toc.yml`` once with papermill, then build the HTML from the results.

    python book/run_chapters.py --mode smoke            # CI: smoke parameters, CPU
    python book/run_chapters.py --mode full --no-build  # GPU runner: full parameters

Chapters are MyST Markdown (jupytext). Each is converted to a notebook, executed by papermill with
``SMOKE`` set by the mode (and ``CKS_DATA_DIR`` inherited), and written to ``_build/src/book/``
next to a copy of ``_config.yml``/``_toc.yml``; Jupyter Book then builds ``_build/src`` with
execution off (nothing runs twice) and ``-W -n --keep-going``. Prints each chapter's wall time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def chapters() -> list[str]:
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    out = [toc["root"]]
    for part in toc.get("chapters", []):
        out.append(part["file"])
    return out


def run(mode: str, build: bool = True, only: list[str] | None = None) -> dict[str, float]:
    import jupytext
    import papermill as pm

    src = ROOT / "_build" / "src"
    if src.exists():
        shutil.rmtree(src)
    (src / "book").mkdir(parents=True)
    shutil.copy(ROOT / "_config.yml", src / "_config.yml")
    shutil.copy(ROOT / "_toc.yml", src / "_toc.yml")
    env_path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + env_path if env_path else "")
    os.environ["CKS_STATIC_FIGURES"] = "1"  # cks.viewer draws static figures when executed headless
    times = {}
    for ch in chapters():
        path = ROOT / (ch + ".md")
        text = path.read_text()
        if "code-cell" not in text or (only and Path(ch).name not in only):
            shutil.copy(path, src / (ch + ".md"))
            continue
        nb = jupytext.read(path)
        t = time.time()
        pm.execute_notebook(nb, str(src / (ch + ".ipynb")), parameters={"SMOKE": mode == "smoke"},
                            kernel_name="python3", cwd=str(ROOT / "book"), progress_bar=False)
        times[ch] = time.time() - t
        print(f"{ch}: {times[ch]:.1f} s ({mode})", flush=True)
    if build:
        exe = Path(sys.executable).with_name("jupyter-book")
        cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(src), "-W", "-n", "--keep-going"]
        subprocess.run(cmd, check=True)
        print(f"HTML: {src / '_build' / 'html' / 'index.html'}")
    return times


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["smoke", "full"], default="smoke")
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--only", nargs="*")
    a = p.parse_args()
    run(a.mode, build=not a.no_build, only=a.only)
    sys.exit(0)

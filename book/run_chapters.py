"""Execute every chapter of ``_toc.yml`` once with papermill, then build the HTML from the results.

    python book/run_chapters.py --mode smoke            # CI: smoke parameters, CPU
    python book/run_chapters.py --mode full --no-build  # GPU runner: full parameters

Chapters are MyST Markdown (jupytext). Each is converted to a notebook, executed by papermill with
``SMOKE`` set by the mode (and ``CKS_DATA_DIR`` inherited), and written to ``_build/src/book/``
next to a copy of ``_config.yml``/``_toc.yml``; Jupyter Book then builds ``_build/src`` with
execution off (nothing runs twice) and ``-W -n --keep-going``. Prints each chapter's wall time.

Colab: with ``--colab-repo OWNER/NAME`` (default ``$CKS_REPOSITORY``, which the GitHub workflow sets to
``github.repository``) each executed chapter gets an "Open in Colab" badge that opens
``_build/colab/<chapter>.ipynb`` from the ``--colab-branch`` (default ``colab``) of that repository; those
unexecuted Colab copies are written here with the repository filled into their Colab-only install cell,
and the workflow pushes them to that branch. Without a repository no badge is drawn (a badge to an
unknown address would be a dead link).
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


COLAB_PLACEHOLDER = "OWNER/NAME"


def colab_url(repo: str, branch: str, chapter: str) -> str:
    return f"https://colab.research.google.com/github/{repo}/blob/{branch}/{Path(chapter).name}.ipynb"


def colab_copy(nb, repo: str):
    """An unexecuted chapter notebook whose Colab-only install cell names ``repo``; raises if it has none."""
    import copy

    nb = copy.deepcopy(nb)
    cells = [c for c in nb.cells if c.cell_type == "code" and COLAB_PLACEHOLDER in c.source]
    if len(cells) != 1:
        raise ValueError(f"expected one Colab install cell with {COLAB_PLACEHOLDER!r}, found {len(cells)}")
    cells[0].source = cells[0].source.replace(COLAB_PLACEHOLDER, repo)
    return nb


def add_badge(ipynb: Path, url: str) -> None:
    """Insert an "Open in Colab" badge (raw HTML: no Sphinx image warning) after the chapter's title cell."""
    import nbformat

    nb = nbformat.read(ipynb, as_version=4)
    badge = (f'<a href="{url}" target="_blank" rel="noopener"><img alt="Open in Colab" '
             'src="https://colab.research.google.com/assets/colab-badge.svg"></a>')
    nb.cells.insert(1, nbformat.v4.new_markdown_cell(badge))
    nbformat.write(nb, ipynb)


def run(mode: str, build: bool = True, only: list[str] | None = None, colab_repo: str | None = None,
        colab_branch: str = "colab") -> dict[str, float]:
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
        if colab_repo:
            out = ROOT / "_build" / "colab" / (Path(ch).name + ".ipynb")
            out.parent.mkdir(parents=True, exist_ok=True)
            jupytext.write(colab_copy(nb, colab_repo), out, fmt="ipynb")
            add_badge(src / (ch + ".ipynb"), colab_url(colab_repo, colab_branch, ch))
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
    p.add_argument("--colab-repo", default=os.environ.get("CKS_REPOSITORY") or None,
                   help="OWNER/NAME on GitHub: add Colab badges and write _build/colab/ (default $CKS_REPOSITORY)")
    p.add_argument("--colab-branch", default="colab", help="branch that holds the Colab copies (default colab)")
    a = p.parse_args()
    run(a.mode, build=not a.no_build, only=a.only, colab_repo=a.colab_repo, colab_branch=a.colab_branch)
    sys.exit(0)

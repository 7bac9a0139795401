"""Setup that every chapter of the book needs, written once: Colab, smoke/full profiles, real data or generated.

A chapter's first cells used to repeat the same lines (download the data in Colab, pick the smoke or full
settings, seed torch, read the real fields or fall back to generated cells). They live here so that a chapter
shows only what is particular to it::

    from cks.chapter import profile, real_or_generated, setup
    P = profile(SMOKE, smoke={"steps": 300, "train": "usiigaci_nih3t3_phase/train:set1-2@0.25"},
                full={"steps": 20000, "train": "usiigaci_nih3t3_phase/train:set1-20@0.5"}, steps=steps)
    setup(seed, threads)
    train_set, val_set, source = real_or_generated(P["train"], P["val"])

Nothing here runs on import.
"""
from __future__ import annotations

import os
import sys

from .data.registry import data_dir

#: where Colab keeps the book's data sets (``setup_colab``)
COLAB_DATA_DIR = "/content/cks_data"

#: the generated stand-in for real fields when ``CKS_DATA_DIR`` is not set: cells of 14-22 px, like Usiigaci at 1/4 size
GENERATED = {"size": (256, 256), "n_cells": 25, "radius": (7, 11)}

#: what ``real_or_generated`` says about the data it returns when it had to generate them
GENERATED_SOURCE = "GENERATED images (CKS_DATA_DIR not set)"


def in_colab() -> bool:
    """True inside Google Colab (its runtime module is loaded)."""
    return "google.colab" in sys.modules


def setup_colab(dest: str = COLAB_DATA_DIR) -> bool:
    """In Colab: point ``CKS_DATA_DIR`` at ``dest`` (unless it is set) and download the book's data sets there.

    Elsewhere it does nothing and returns False, so a chapter can call it unconditionally after installing cks.
    """
    if not in_colab():
        return False
    from .data.registry import fetch_book_data

    os.environ.setdefault("CKS_DATA_DIR", dest)
    fetch_book_data()
    return True


def setup(seed: int = 0, threads: int | None = None) -> None:
    """Seed torch (``torch.manual_seed``) and set its CPU threads (``None``: leave torch's default)."""
    import torch

    torch.manual_seed(seed)
    if threads is not None:
        if int(threads) < 1:
            raise ValueError(f"threads must be >= 1 (got {threads}); use 1 on a machine shared with other jobs")
        torch.set_num_threads(int(threads))


def profile(smoke_mode: bool, smoke: dict, full: dict, **overrides) -> dict:
    """The settings of one mode: a copy of ``smoke`` or ``full``, then every override that is not None.

    >>> profile(True, {"steps": 300, "crop": 128}, {"steps": 20000, "crop": 512}, steps=None, crop=96)
    {'steps': 300, 'crop': 96}

    An override the chosen settings do not name is an error (a typo would otherwise be ignored silently).
    """
    chosen = dict(smoke if smoke_mode else full)
    for key, value in overrides.items():
        if key not in chosen:
            raise KeyError(f"profile: unknown setting {key!r}; known: {sorted(chosen)}")
        if value is not None:
            chosen[key] = value
    return chosen


def has_real_data() -> bool:
    """True when ``CKS_DATA_DIR`` names a folder (the shared data sets, or the Colab download)."""
    return data_dir(required=False) is not None


def generated_sets(*n_images: int, seed: int = 1, **kwargs) -> list[list[dict]]:
    """Sets of generated samples (``cks.data.synthetic``), one list per count, each from its own seed.

    Set ``k`` (0, 1, ...) is drawn with seed ``seed + 50 * k``, so training, tuning and test images never repeat.
    ``kwargs`` replace entries of ``GENERATED`` (size, n_cells, radius).
    """
    from .data.synthetic import synthetic_dataset

    opts = {**GENERATED, **kwargs}
    return [synthetic_dataset(n, seed=seed + 50 * k, **opts) for k, n in enumerate(n_images)]


def real_or_generated(*specs, n_generated: tuple[int, ...] | None = None, source: str = "Usiigaci",
                      generated: dict | None = None, **load_kwargs) -> tuple:
    """Load each spec with ``cks.data.load_dataset`` when ``CKS_DATA_DIR`` is set; else generated stand-ins.

    Args:
        *specs: data set specs (``PATH:SELECTOR@SCALE``), e.g. a training and a validation spec.
        n_generated: how many generated images stand in for each spec (default 2 for the first, 1 for the rest).
        source: the name printed for real data.
        generated: entries of ``GENERATED`` to replace (size, n_cells, radius) for the stand-ins.
        **load_kwargs: passed to every ``load_dataset`` call (e.g. ``split=``, ``points="nuclei"``).

    Returns:
        ``(*sets, source)``: one list of samples per spec, then ``source`` or ``GENERATED_SOURCE``. Numbers from
        generated images say nothing about real cells; chapters print the source so a reader knows which ran.
    """
    if not specs:
        raise ValueError("real_or_generated needs at least one data set spec")
    if has_real_data():
        from .data.spec import load_dataset

        return (*[load_dataset(s, **load_kwargs) for s in specs], source)
    counts = tuple(n_generated) if n_generated is not None else (2,) + (1,) * (len(specs) - 1)
    if len(counts) != len(specs):
        raise ValueError(f"n_generated has {len(counts)} entries for {len(specs)} specs")
    return (*generated_sets(*counts, **(generated or {})), GENERATED_SOURCE)

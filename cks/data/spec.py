"""``load_dataset``: turn a compact data-set spec into a list of samples.

Spec grammar::

    SPEC     := PATH [":" SELECTOR] ["@" SCALE]
    SELECTOR := ITEM ("," ITEM)*
    ITEM     := NAME | PREFIX A "-" B | GLOB

* ``PATH`` is a folder in a supported layout (Usiigaci, DeepCell; searched recursively), a
  simple-list or COCO JSON file, or a single sample folder. A relative PATH that does not exist
  as given is looked up under ``CKS_DATA_DIR``.
* ``ITEM`` is matched against each sample's path relative to PATH (JSON: its name): it matches
  when it equals the path or a trailing part of it (``set1`` matches ``train/set1`` and
  ``HeLa_joint/set1``), or as a shell glob on the same (``set1?``, ``*/set2*``).
  ``PREFIX A-B`` is the numeric range ``PREFIXA .. PREFIXB`` (``set1-16``, ``HeLa_joint/set1-4``).
  An item that matches nothing is an error (catches typos).
* ``SCALE`` (float) resizes every sample with :func:`cks.data.readers.rescale_sample`.

Examples: ``usiigaci_nih3t3_phase/train:set1-16@0.5``,
``deepcell2016_covertlab:HeLa_joint/set1-4,BMDM``, ``a431/train.json``.
A list of specs is the concatenation of their samples.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import numpy as np

from cks.data.annotations import read_json_file
from cks.data.readers import find_samples, read_deepcell, read_paired, read_usiigaci, rescale_sample
from cks.data.registry import DATASETS, SPLITS, data_dir
from cks.errors import CksDataError
from cks.points import points_from_nuclei

__all__ = ["parse_spec", "resolve_path", "expand_selector", "match_item", "load_dataset"]

_RANGE = re.compile(r"^(.*\D)(\d+)-(\d+)$")


def resolve_path(path: str | Path) -> Path:
    """``path`` as given if it exists, else under ``CKS_DATA_DIR``; CksDataError if neither."""
    p = Path(path).expanduser()
    if p.exists():
        return p
    base = data_dir(required=False)
    if not p.is_absolute() and base is not None and (base / p).exists():
        return base / p
    where = f" or under CKS_DATA_DIR={base}" if base is not None else " (CKS_DATA_DIR is not set)"
    raise CksDataError(f"{path}: data set not found as given{where}; check the path or set CKS_DATA_DIR")


def parse_spec(spec: str) -> tuple[Path, str | None, float | None]:
    """Split ``PATH[:SELECTOR][@SCALE]`` into ``(resolved path, selector or None, scale or None)``."""
    text, scale = str(spec), None
    if "@" in text:
        head, tail = text.rsplit("@", 1)
        try:
            scale = float(tail)
            text = head
        except ValueError:
            pass
    for candidate, selector in ((text, None), *([text.rsplit(":", 1)] if ":" in text else [])):
        try:
            return resolve_path(candidate), (selector or None), scale
        except CksDataError:
            continue
    return resolve_path(text.split(":", 1)[0]), None, scale  # raises with a clear message


def expand_selector(selector: str) -> list[str]:
    """Split a selector into items, expanding numeric ranges (``set1-3`` -> set1, set2, set3)."""
    items = []
    for raw in selector.split(","):
        item = raw.strip().strip("/")
        if not item:
            continue
        m = _RANGE.match(item)
        if m and not any(ch in item for ch in "*?["):
            lo, hi = int(m.group(2)), int(m.group(3))
            if hi < lo:
                raise CksDataError(f"selector {item!r}: empty range {lo}-{hi}; write the lower bound first")
            items.extend(f"{m.group(1)}{k}" for k in range(lo, hi + 1))
        else:
            items.append(item)
    return items


def match_item(key: str, item: str) -> bool:
    """True if selector ``item`` matches the relative sample path ``key`` (see module docstring)."""
    parts = key.strip("/").split("/")
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    if any(ch in item for ch in "*?["):
        return any(fnmatch.fnmatchcase(t, item) for t in tails)
    return item in tails


def _select(keys: list[str], selector: str | None, where, strict: bool = True) -> np.ndarray:
    if selector is None:
        return np.ones(len(keys), bool)
    keep = np.zeros(len(keys), bool)
    for item in expand_selector(selector):
        hit = np.array([match_item(k, item) for k in keys], bool)
        if strict and not hit.any():
            shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
            raise CksDataError(f"{where}: selector item {item!r} matches no sample (available: {shown})")
        keep |= hit
    return keep


def _dataset_root(path: Path) -> Path:
    """Folder that sample names are relative to.

    The nearest enclosing folder named like a registered set (``usiigaci_nih3t3_phase``), else the
    top folder under CKS_DATA_DIR, else ``path`` (its folder for a JSON file).
    """
    base = data_dir(required=False)
    folder = path if path.is_dir() else path.parent
    for candidate in (folder.resolve(), *folder.resolve().parents):
        if candidate.name in DATASETS:
            return candidate
    if base is not None:
        try:
            rel = folder.resolve().relative_to(base.resolve())
            if rel.parts:
                return base.resolve() / rel.parts[0]
        except ValueError:
            pass
    return folder.resolve()


def _rel(folder: Path, base: Path) -> str:
    rel = folder.relative_to(base).as_posix() if folder.is_relative_to(base) else folder.name
    return folder.name if rel == "." else rel


def _load_one(spec, split, reader_kwargs) -> tuple[list[dict], float | None]:
    path, selector, scale = parse_spec(spec)
    root = _dataset_root(path)
    if path.is_file():
        samples = read_json_file(path, **reader_kwargs)
        keys = names = [s["name"] for s in samples]
    else:
        found = find_samples(path)
        if not found:
            raise CksDataError(f"{path}: no samples found (expected images each with a point file of the same name "
                               f"- img.tif + img.csv/.zip/.roi/.geojson - and/or a label image - img_masks.tif/.png "
                               f"or img.labels.tif -, Usiigaci set folders with raw.tif + instances_ids.png, DeepCell "
                               f"folders with phase.* + feature_1.*, or a .json list of image_file / label_file / "
                               f"locations)")
        base = path.resolve()
        keys = [_rel(f.resolve(), base) for _, f in found]
        names = [_rel(f.resolve(), root) for _, f in found]
        samples = None
    keep = _select(keys, selector, spec)
    if split is not None:
        table = SPLITS.get(root.name)
        if table is None or split not in table:
            known = sorted(table) if table else []
            raise CksDataError(f"{spec}: no split {split!r} defined for {root.name} (known: {known})")
        keep &= _select(names, table[split], spec, strict=False)
    if samples is None:
        samples = []
        for (layout, folder), use in zip(found, keep):
            if use:
                if layout == "paired":
                    samples.append(read_paired(folder, root=path.resolve()))
                    continue
                reader = read_usiigaci if layout == "usiigaci" else read_deepcell
                samples.append(reader(folder, root=root, **reader_kwargs))
    else:
        samples = [s for s, use in zip(samples, keep) if use]
    return samples, scale


def load_dataset(spec, split: str | None = None, scale: float | None = None, points: str = "auto",
                 nuclei_kwargs: dict | None = None, **reader_kwargs) -> list[dict]:
    """Load the samples described by ``spec`` (a string or a list of strings, see module docstring).

    Args:
        spec: data-set spec(s).
        split: optional named split of the set (``train``/``val``/``test``, see
            :data:`cks.data.registry.SPLITS`), intersected with the spec's selector.
        scale: resize factor for every sample (overrides ``@SCALE`` of the spec).
        points: ``"auto"`` (what the reader gives: label centroids or file locations),
            ``"centroid"`` (label centroids), ``"nuclei"`` (detected on ``sample["nuclear"]`` with
            :func:`cks.points.points_from_nuclei` and ``nuclei_kwargs``; before rescaling) or ``"none"``.
        reader_kwargs: passed to the layout / JSON reader (e.g. ``min_area`` for DeepCell,
            ``image_root`` for COCO).
    Returns:
        list of sample dicts (see :mod:`cks.data.readers`).
    """
    from cks.points import centroids

    specs = [spec] if isinstance(spec, (str, Path)) else list(spec)
    if points not in ("auto", "centroid", "nuclei", "none"):
        raise CksDataError(f"load_dataset: points must be auto, centroid, nuclei or none, not {points!r}")
    out = []
    for one in specs:
        samples, spec_scale = _load_one(one, split, reader_kwargs)
        factor = scale if scale is not None else spec_scale
        for s in samples:
            if points == "centroid":
                if s.get("label") is None:
                    raise CksDataError(f"{s['image_path']}: points='centroid' needs a label image; use points='auto'")
                s["point_ids"], s["points"] = centroids(s["label"])
            elif points == "nuclei":
                if s.get("nuclear") is None:
                    raise CksDataError(f"{s['image_path']}: points='nuclei' (cks train --labels nuclei) needs a "
                                       f"nuclear channel, which only the DeepCell layouts bring (nuclear.* / farred.* "
                                       f"/ dapi.* beside phase.*); for your own images make the points first: cks "
                                       f"points nuclei/*.tif --images IMAGES/ --out points.json, then cks train --data "
                                       f"points.json --labels points")
                s["points"], s["point_ids"] = points_from_nuclei(s["nuclear"], **(nuclei_kwargs or {})), None
            elif points == "none":
                s["points"], s["point_ids"] = None, None
            out.append(rescale_sample(s, factor) if factor not in (None, 1.0) else s)
    if not out:
        raise CksDataError(f"{spec}: the selection is empty; check the selector and split")
    return out

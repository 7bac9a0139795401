"""Cell-size normalisation of training samples: rescale each image so its cells have the target size.

"Cell size" is the median equivalent diameter ``sqrt(4 A / pi)`` of an image's cells
(:func:`cks.size.median_diameter`). Each sample is resized by ``target / D`` where ``D`` is its cell
size in its own pixels, taken from

* ``"masks"``: the sample's instance masks (supervised training, or any labelled set);
* ``"given"``: a diameter the user states (``cks train --diameter``), the same for every image;
* ``"points"``: an automatic estimate from the image and its point labels, no masks
  (:func:`cks.size.estimate_diameter`) — what CKS from points uses;
* ``"auto"``: ``"given"`` if a diameter is given, else ``"masks"`` when the sample's points were made
  from its masks for supervised training (``use_masks=True``), else ``"points"``.

Each returned sample records ``cell_diameter`` (px, before rescaling), ``cell_diameter_source`` and the
realised ``scale`` (:func:`cks.data.readers.rescale_sample`). The author's code does the same with a
32-px target (``CELL_SZ``, mean longer bounding-box side) on every training image.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import CksDataError
from .readers import rescale_sample

SOURCES = ("auto", "masks", "given", "points")


def sample_diameter(sample: dict, source: str = "auto", diameter: float | None = None,
                    use_masks: bool = False) -> tuple[float, str]:
    """``(D, source used)``: the cell size of one sample in its own pixels (see module docstring)."""
    from .. import size

    if source not in SOURCES:
        raise CksDataError(f"cell-size source must be one of {SOURCES}, got {source!r}")
    where = sample.get("image_path") or sample.get("name", "sample")
    if source == "auto":
        source = "given" if diameter is not None else "masks" if use_masks else "points"
    if source == "given":
        if diameter is None or not (math.isfinite(float(diameter)) and float(diameter) > 0):
            raise CksDataError(f"--diameter must be a positive number of px, got {diameter}")
        return float(diameter), source
    if source == "masks":
        if sample.get("label") is None:
            raise CksDataError(f"{where}: cell size from masks needs a label image; give --diameter or use points")
        d = size.median_diameter(sample["label"])
    else:
        pts = sample.get("points")
        if pts is None or len(pts) < 2:
            raise CksDataError(f"{where}: estimating the cell size needs at least 2 points; give --diameter")
        d = size.estimate_diameter(sample["image"], pts)
    if not (math.isfinite(d) and d > 0):
        raise CksDataError(f"{where}: could not measure the cell size (got {d}); give --diameter")
    return float(d), source


def normalize_cell_size(samples: list[dict], target: float, source: str = "auto", diameter: float | None = None,
                        use_masks: bool = False, max_factor: float = 4.0) -> list[dict]:
    """Rescale every sample so its cells have ``target`` px (median equivalent diameter).

    Args:
        samples: sample dicts at their native resolution (``cks.data``). target: ``size.diameter``.
        source / diameter / use_masks: where each sample's cell size comes from (module docstring).
        max_factor: a factor outside ``[1 / max_factor, max_factor]`` is an error (a wrong --diameter or a
            failed estimate would otherwise blow an image up or shrink it to nothing).
    Returns:
        new sample dicts (inputs untouched) with ``cell_diameter`` (px of the input), ``cell_diameter_source``,
        ``scale`` and ``native_image`` (the input image itself, for the size regressor of :mod:`cks.size_model`).
    """
    if not (math.isfinite(float(target)) and target > 0):
        raise CksDataError(f"target cell diameter must be > 0 px, got {target}")
    out = []
    for s in samples:
        d, used = sample_diameter(s, source, diameter, use_masks)
        factor = float(target) / d
        if not 1.0 / max_factor <= factor <= max_factor:
            where = s.get("image_path") or s.get("name", "sample")
            raise CksDataError(f"{where}: cell size {d:.1f} px ({used}) would rescale the image by {factor:.2f} to "
                               f"reach {target} px; check --diameter (px of this image) or give it explicitly")
        r = rescale_sample(s, factor)
        r["cell_diameter"], r["cell_diameter_source"] = d, used
        r["native_image"] = s.get("native_image", s["image"])  # a reference, not a copy (cks.size_model fits on it)
        out.append(r)
    return out


def median_scale(samples: list[dict]) -> float:
    """Median realised scale of normalised samples (the first-pass scale of :func:`cks.predict.predict`)."""
    return float(np.median([float(s.get("scale", 1.0)) for s in samples])) if samples else 1.0


__all__ = ["SOURCES", "sample_diameter", "normalize_cell_size", "median_scale"]

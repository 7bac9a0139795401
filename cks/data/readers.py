"""Readers for the folder layouts of the public cell sets, and sample rescaling.

A **sample** is a plain dict:

=================  =============================================================================
``image``          float32 ``[C, H, W]``, raw pixel values as float (not normalised)
``label``          int32 ``[H, W]`` instance ids (0 = background) or ``None``
``points``         float32 ``[N, 2]`` (y, x) point labels, or ``None``
``point_ids``      int32 ``[N]`` label id each point was made from (centroid points), else ``None``
``cell_type``      int (see :data:`CELL_TYPES`; COCO: the category id)
``cell_type_name`` str
``name``           str, path of the sample relative to the dataset root (``train/set1``)
``image_path``     str, the image file
``nuclear``        optional float32 ``[1, H, W]`` nuclear stain (DeepCell); only for making points
``mask``           optional bool ``[H, W]`` image-level foreground mask (simple JSON format)
``scale``          float, resize factor applied since reading (1.0 = original pixels)
=================  =============================================================================

Layouts read here (see each data folder's ``SOURCE.md``):

* Usiigaci: ``setN/raw.tif`` + ``setN/instances_ids.png``;
* DeepCell 2016 training: ``phase.*`` + ``feature_0.*`` (edge) + ``feature_1.*`` (interior)
  + a nuclear channel (``nuclear.*``, ``farred.*``, ``*Far-red*`` or ``dapi.*``);
* DeepCell 2016 validation: ``RawImages/phase.tif`` + ``RawImages/{farred,dapi}.tif``
  + ``Validation/*_edge.tif`` + ``Validation/*_interior.tif``;
* a plain folder of your own images (:func:`read_paired`): ``img.tif`` with a point file of the same name
  (``img.csv`` / ``.zip`` / ``.roi`` / ``.geojson``), an instance label image named as Cellpose names its masks
  (``img_masks.tif`` / ``.png``) or as ``cks predict`` writes its labels (``img.labels.tif``), or both.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cks.data.io import check_same_shape, read_image, read_label
from cks.errors import CksDataError
from cks.points import centroids

__all__ = [
    "CELL_TYPES",
    "cell_type_id",
    "make_sample",
    "keep_largest_component",
    "deepcell_instances",
    "read_usiigaci",
    "read_paired",
    "MASK_PARTNERS",
    "is_mask_file",
    "partner_mask_file",
    "read_deepcell",
    "find_samples",
    "rescale_sample",
    "resize_image",
    "resize_label",
]

#: Stable cell-type ids: LIVECell's eight lines (0-7), then the other sets.
CELL_TYPES = ("A172", "BT474", "BV2", "Huh7", "MCF7", "SHSY5Y", "SKOV3", "SkBr3",
              "A431", "NIH3T3", "HeLa", "BMDM", "MCF10A", "RAW264.7")
_ALIASES = {"3T3": "NIH3T3", "HeLa_joint": "HeLa", "RAW40X": "RAW264.7", "NIH/3T3": "NIH3T3"}
_IMG_EXT = (".png", ".tif", ".tiff")


def cell_type_id(name: str) -> int:
    """Index of ``name`` (or a folder alias such as ``HeLa_joint``, ``3T3``) in :data:`CELL_TYPES`; -1 if unknown."""
    name = _ALIASES.get(name, name)
    return CELL_TYPES.index(name) if name in CELL_TYPES else -1


def make_sample(image, label=None, points=None, *, name: str, image_path="", cell_type=-1,
                cell_type_name="", point_ids=None, label_path="", **extra) -> dict:
    """Build a sample dict (see module docstring); makes centroid points when a label is given and points is None."""
    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        image = image[None]
    if label is not None:
        label = np.asarray(label, np.int32)
        check_same_shape(image, label, image_path or name, label_path or f"label of {name}")
        if points is None:
            point_ids, points = centroids(label)
    if points is not None:
        points = np.asarray(points, np.float32).reshape(-1, 2)
    sample = dict(image=image, label=label, points=points,
                  point_ids=None if point_ids is None else np.asarray(point_ids, np.int32),
                  cell_type=int(cell_type), cell_type_name=str(cell_type_name), name=str(name),
                  image_path=str(image_path), scale=1.0)
    sample.update(extra)
    return sample


def keep_largest_component(label: np.ndarray) -> np.ndarray:
    """Keep only the largest 4-connected component of every id (vectorised, no loop over cells).

    Args:
        label: int ``[H, W]`` instance ids.
    Returns:
        int32 ``[H, W]`` with the same ids; detached fragments set to 0.
    """
    from skimage.measure import label as cc_label

    label = np.asarray(label)
    comp = cc_label(label, background=0, connectivity=1)  # components of equal-valued pixels
    n = int(comp.max())
    if n == 0:
        return label.astype(np.int32)
    size = np.bincount(comp.ravel(), minlength=n + 1)
    comp_id = np.zeros(n + 1, np.int64)
    comp_id[comp.ravel()] = label.ravel()
    # sort components by (id, size); the last component of each id is its largest
    order = np.lexsort((size[1:], comp_id[1:])) + 1
    ids_sorted = comp_id[order]
    last = np.r_[ids_sorted[1:] != ids_sorted[:-1], True]
    keep = np.zeros(n + 1, bool)
    keep[order[last]] = True
    return np.where(keep[comp], label, 0).astype(np.int32)


def deepcell_instances(interior: np.ndarray, edge: np.ndarray | None = None, min_area: int = 50,
                       grow: int = 2) -> np.ndarray:
    """Instance labels from DeepCell edge/interior maps.

    Instances are the 4-connected components of ``interior > 0`` with at least ``min_area``
    pixels; each is then grown ``grow`` times by one pixel (4-neighbours, nearest instance wins)
    into ``(edge > 0) | (interior > 0)``, i.e. a geodesic growth restricted to that mask.

    Returns:
        int32 ``[H, W]`` with ids 1..N (sequential).
    """
    from skimage.measure import label as cc_label
    from skimage.segmentation import expand_labels

    inner = np.asarray(interior).reshape(np.shape(interior)[-2:]) > 0
    comp = cc_label(inner, connectivity=1)
    size = np.bincount(comp.ravel())
    size[0] = 0
    keep = size >= min_area
    new_id = np.cumsum(keep) * keep  # sequential ids for the kept components
    lab = new_id[comp].astype(np.int32)
    if grow > 0:
        allowed = inner if edge is None else inner | (np.asarray(edge).reshape(inner.shape) > 0)
        for _ in range(int(grow)):
            lab = expand_labels(lab, distance=1)
            lab[~allowed] = 0
    return lab


def _first(folder: Path, patterns) -> Path | None:
    for pat in patterns:
        hits = sorted(p for p in folder.glob(pat) if p.suffix.lower() in _IMG_EXT)
        if hits:
            return hits[0]
    return None


def _relname(folder: Path, root: Path | None) -> str:
    if root is None:
        return folder.name
    folder, root = folder.resolve(), Path(root).resolve()
    rel = folder.relative_to(root).as_posix() if folder.is_relative_to(root) else "."
    return folder.name if rel == "." else rel


def read_usiigaci(folder, root=None, clean: bool = True) -> dict:
    """Read one Usiigaci set folder (``raw.tif`` + ``instances_ids.png``); points = label centroids.

    Args:
        folder: the ``setN`` folder. root: dataset root that ``name`` is made relative to.
        clean: keep only the largest 4-connected component of each id.
    """
    folder = Path(folder)
    image_path = _first(folder, ["raw.*"])
    if image_path is None:
        raise CksDataError(f"{folder}: no raw.tif in this Usiigaci set folder; check the dataset layout")
    label_path = folder / "instances_ids.png"
    label = read_label(label_path)
    image = read_image(image_path)
    check_same_shape(image, label, image_path, label_path)
    if clean:
        label = keep_largest_component(label)
    return make_sample(image, label, name=_relname(folder, root), image_path=image_path, label_path=label_path,
                       cell_type=cell_type_id("NIH3T3"), cell_type_name="NIH3T3")


def _deepcell_files(folder: Path) -> dict | None:
    """Locate the files of a DeepCell training or validation folder; None if it is not one."""
    nuc_patterns = ["nuclear.*", "farred.*", "*Far-red*", "dapi.*"]
    if _first(folder, ["feature_1.*"]) and _first(folder, ["phase.*"]):
        return dict(image=_first(folder, ["phase.*"]), interior=_first(folder, ["feature_1.*"]),
                    edge=_first(folder, ["feature_0.*"]), nuclear=_first(folder, nuc_patterns))
    raw, val = folder / "RawImages", folder / "Validation"
    if raw.is_dir() and val.is_dir() and _first(raw, ["phase.*"]) and _first(val, ["*_interior.*"]):
        return dict(image=_first(raw, ["phase.*"]), interior=_first(val, ["*_interior.*"]),
                    edge=_first(val, ["*_edge.*"]), nuclear=_first(raw, nuc_patterns))
    return None


def read_deepcell(folder, root=None, min_area: int = 50, grow: int = 2, nuclear: bool = True) -> dict:
    """Read one DeepCell 2016 field (training or validation layout); points = label centroids.

    The phase image is the model input; the nuclear channel (if found and ``nuclear``) is stored
    as ``sample["nuclear"]`` [1, H, W] for making points (:func:`cks.points.points_from_nuclei`).
    """
    folder = Path(folder)
    files = _deepcell_files(folder)
    if files is None:
        raise CksDataError(f"{folder}: not a DeepCell folder (needs phase.* and feature_1.*, or "
                           f"RawImages/ + Validation/); check the path")
    image = read_image(files["image"])
    interior = read_image(files["interior"])
    check_same_shape(image, interior[0], files["image"], files["interior"])
    edge = None
    if files["edge"] is not None:
        edge = read_image(files["edge"])[0]
        check_same_shape(image, edge, files["image"], files["edge"])
    label = deepcell_instances(interior[0], edge, min_area=min_area, grow=grow)
    name = _relname(folder, root)
    parts = [p for p in folder.resolve().parts if cell_type_id(p) >= 0] or [folder.name]
    ctype = _ALIASES.get(parts[-1], parts[-1])
    extra = {}
    if nuclear and files["nuclear"] is not None:
        nuc = read_image(files["nuclear"])[:1]
        check_same_shape(image, nuc[0], files["image"], files["nuclear"])
        extra["nuclear"] = nuc
    return make_sample(image[:1], label, name=name, image_path=files["image"],
                       cell_type=cell_type_id(ctype), cell_type_name=ctype, **extra)


def find_samples(root) -> list[tuple[str, Path]]:
    """Walk ``root`` and list ``(layout, folder)`` for every sample folder found (sorted, natural order).

    ``layout`` is ``"usiigaci"`` or ``"deepcell"``; a tree with neither gives ``("paired", image_file)`` for
    every image with a point file or a label image of the same name beside it (:func:`read_paired`).
    """
    root = Path(root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        folder = Path(dirpath)
        names = set(filenames)
        if "instances_ids.png" in names and any(n.startswith("raw.") for n in names):
            found.append(("usiigaci", folder))
        elif _deepcell_files(folder) is not None:
            found.append(("deepcell", folder))
            dirnames[:] = []  # RawImages/ and Validation/ belong to this sample
    if not found:  # a plain folder of images, each with points (napari, Fiji, QuPath) and/or masks beside it
        from .point_files import partner_point_file

        for dirpath, _, filenames in os.walk(root):
            for n in filenames:
                f = Path(dirpath) / n
                if (f.suffix.lower() in IMAGE_SUFFIXES and not is_mask_file(f)
                        and (partner_point_file(f) is not None or partner_mask_file(f) is not None)):
                    found.append(("paired", f))
    return sorted(found, key=lambda t: _natural_key(t[1].as_posix()))


#: image files a plain (paired) folder may hold
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


#: the names of an image's label image beside it: Cellpose's (``img.tif`` -> ``img_masks.tif``) and
#: ``cks predict``'s (``img.labels.tif``, e.g. predictions you corrected)
MASK_PARTNERS = ("_masks.tif", "_masks.tiff", "_masks.png", ".labels.tif")


def is_mask_file(path) -> bool:
    """Whether ``path`` is a label image, not an image to read: ``*.labels.tif`` (what ``cks predict`` writes,
    always), or named as Cellpose masks (``img_masks.tif``, any case) *with* its image beside it (``img.tif``):
    an image that merely ends in ``_masks`` is an image."""
    path = Path(path)
    name = path.name.lower()
    end = next((e for e in MASK_PARTNERS if name.endswith(e)), None)
    if end is None:
        return False
    if end == ".labels.tif":
        return True
    stem = path.name[:-len(end)]
    return any(path.with_name(stem + s).is_file() or path.with_name(stem + s.upper()).is_file()
               for s in IMAGE_SUFFIXES)


def partner_mask_file(image_path) -> Path | None:
    """The label image beside an image (``img.tif`` -> ``img_masks.tif`` / ``_masks.png`` / ``img.labels.tif``;
    the ending in lower or upper case)."""
    image_path = Path(image_path)
    stem = image_path.name[:-len(image_path.suffix)] if image_path.suffix else image_path.name
    for end in MASK_PARTNERS:
        for cand in (image_path.with_name(stem + end), image_path.with_name(stem + end.upper())):
            if cand.is_file():
                return cand
    return None


def read_paired(image_path, root=None) -> dict:
    """An image with its point file (:func:`cks.data.point_files.partner_point_file`) and/or its label image
    (:func:`partner_mask_file`) beside it. With masks and no point file, the points are the masks' centroids."""
    from .point_files import partner_point_file, read_point_file

    image_path = Path(image_path).resolve()
    image = read_image(image_path)
    point_file, mask_file = partner_point_file(image_path), partner_mask_file(image_path)
    pts = read_point_file(point_file, shape=image.shape[-2:]) if point_file is not None else None
    label = read_label(mask_file) if mask_file is not None else None
    root = Path(root).resolve() if root else None
    name = (image_path.relative_to(root).with_suffix("").as_posix() if root and image_path.is_relative_to(root)
            else image_path.stem)
    return make_sample(image, label, pts, name=name, image_path=str(image_path),
                       label_path=str(mask_file) if mask_file is not None else "")


def _natural_key(s: str):
    import re

    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


# --------------------------------------------------------------------------- rescaling


def resize_image(image: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``[C, H, W]`` to ``[C, *out_hw]`` (antialiased when shrinking), float32.

    Pixel centres map as ``y_out = (y_in + 0.5) * (H_out / H) - 0.5``.
    """
    from skimage.transform import resize

    c, h, w = image.shape
    if (h, w) == tuple(out_hw):
        return image.astype(np.float32, copy=True)
    shrink = out_hw[0] < h or out_hw[1] < w
    out = resize(np.moveaxis(image, 0, -1), tuple(out_hw), order=1, mode="edge",
                 anti_aliasing=shrink, preserve_range=True)
    return np.ascontiguousarray(np.moveaxis(out, -1, 0), dtype=np.float32)


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    # source pixel containing the output pixel's centre: floor((i + 0.5) * n_in / n_out)
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def resize_label(label: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an ``[H, W]`` label/mask image (same pixel-centre mapping)."""
    iy = _nearest_index(label.shape[0], out_hw[0])
    ix = _nearest_index(label.shape[1], out_hw[1])
    return label[iy[:, None], ix[None, :]]


def scale_points(points: np.ndarray, fy: float, fx: float) -> np.ndarray:
    """Map points under a resize by ``(fy, fx)``: ``p' = (p + 0.5) * f - 0.5`` (pixel-centre convention)."""
    return ((points + 0.5) * np.array([fy, fx], np.float32) - 0.5).astype(np.float32)


def rescale_sample(sample: dict, factor) -> dict:
    """Resize a sample by ``factor`` (float or ``(fy, fx)``): image antialiased, label nearest, points exact.

    The output size is ``round(H * fy) x round(W * fx)`` and points use the realised factors
    ``H_out / H``, ``W_out / W``, so a rescaled mask's centroid stays close to the rescaled centroid.
    Returns a new dict (``scale`` multiplied by the factor); the input is not modified.
    """
    fy, fx = (factor, factor) if np.isscalar(factor) else factor
    if fy <= 0 or fx <= 0:
        raise CksDataError(f"rescale_sample: factor must be > 0, got {factor}")
    h, w = sample["image"].shape[-2:]
    out_hw = (max(1, int(round(h * fy))), max(1, int(round(w * fx))))
    if out_hw == (h, w):
        return dict(sample)
    ry, rx = out_hw[0] / h, out_hw[1] / w
    out = dict(sample)
    out["image"] = resize_image(sample["image"], out_hw)
    for key in ("label", "mask"):
        if sample.get(key) is not None:
            out[key] = resize_label(sample[key], out_hw)
    if sample.get("nuclear") is not None:
        out["nuclear"] = resize_image(sample["nuclear"], out_hw)
    if sample.get("points") is not None:
        out["points"] = scale_points(sample["points"], ry, rx)
    out["scale"] = float(sample.get("scale", 1.0)) * float(np.sqrt(ry * rx))
    return out

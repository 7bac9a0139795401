"""Readers for JSON annotation files: the author's simple point list and COCO instances.

**Simple list** (the author's A431 format, plus our additions): a JSON list of records::

    [{"image_file": "train/img_0001.tif",          # relative to the JSON file's folder
      "locations": [[y, x], ...],                  # optional if label_file is given
      "mask_file": "train/mask_0001.tif",          # optional image-level foreground mask
      "label_file": "train/label_0001.png",        # ours: optional instance label image
      "cell_type": "A431",                         # ours: optional, int or name
      "img_id": 1}, ...]                           # optional, used as the sample name

The author's points use a pixel-edge convention (pixel centre at ``i + 0.5``); pass
``location_offset=-0.5`` to convert such files to ours (centre at ``i``). The default is 0.

**COCO** instance JSON (e.g. LIVECell): read with ``pycocotools``; masks are painted into an
instance label image (earlier annotations keep overlapping pixels), duplicate annotations are
removed by box NMS at IoU 0.75 as in the author's code, and points are mask centroids.
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import warnings
from pathlib import Path

import numpy as np

from cks.data.io import read_image, read_label, read_mask
from cks.data.readers import CELL_TYPES, cell_type_id, make_sample, rescale_sample
from cks.errors import CksDataError

__all__ = ["read_json_file", "read_simple_json", "read_coco", "json_kind", "remove_duplicates"]


def _load_json(path: Path):
    if not path.is_file():
        raise CksDataError(f"{path}: annotation file not found; check the path")
    try:
        return json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CksDataError(f"{path}: not valid JSON ({exc}); fix or re-export the annotation file") from None


def json_kind(data) -> str:
    """``"coco"`` for a dict with ``images`` and ``annotations``, ``"simple"`` for a list of records."""
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return "coco"
    if isinstance(data, list) and all(isinstance(r, dict) and "image_file" in r for r in data):
        return "simple"
    return "unknown"


def read_json_file(path, **kwargs) -> list[dict]:
    """Read a simple-list or COCO JSON file (auto-detected) into a list of samples."""
    path = Path(path)
    kind = json_kind(_load_json(path))
    if kind == "coco":
        return read_coco(path, **kwargs)
    if kind == "simple":
        return read_simple_json(path, **kwargs)
    raise CksDataError(f"{path}: neither a COCO file (images + annotations) nor a list of records with "
                       f"image_file; see cks.data.annotations for the formats")


def read_simple_json(path, location_offset: float = 0.0, root=None) -> list[dict]:
    """Read the simple list format (see module docstring).

    Args:
        path: the JSON file. root: folder that relative file names resolve against
            (default: the JSON file's folder).
        location_offset: added to every location (``-0.5`` converts the author's pixel-edge points).
    Returns:
        samples; ``points`` from ``locations`` or, if absent, the centroids of ``label_file``.
    """
    path = Path(path)
    records = _load_json(path)
    root = Path(root) if root is not None else path.parent
    samples = []
    for k, rec in enumerate(records):
        if not isinstance(rec, dict) or "image_file" not in rec:
            raise CksDataError(f"{path}: record {k} has no image_file; each record needs one")
        image_path = root / rec["image_file"]
        image = read_image(image_path)
        label_path = root / rec["label_file"] if rec.get("label_file") else ""
        label = read_label(label_path) if label_path else None
        points = None
        if rec.get("locations") is not None:
            try:
                points = np.asarray(rec["locations"], np.float32).reshape(-1, 2) + np.float32(location_offset)
            except ValueError:
                raise CksDataError(f"{path}: record {k} locations is not a list of [y, x]; fix the file") from None
        if points is None and label is None:
            raise CksDataError(f"{path}: record {k} ({rec['image_file']}) has neither locations nor label_file")
        ctype = rec.get("cell_type", -1)
        ctype_name = ctype if isinstance(ctype, str) else (CELL_TYPES[ctype] if 0 <= ctype < len(CELL_TYPES) else "")
        ctype_id = cell_type_id(ctype) if isinstance(ctype, str) else int(ctype)
        extra = {}
        if rec.get("mask_file"):
            extra["mask"] = read_mask(root / rec["mask_file"])
            if extra["mask"].shape != image.shape[-2:]:
                raise CksDataError(f"{root / rec['mask_file']}: mask size {extra['mask'].shape} does not match "
                                   f"image {image_path} size {image.shape[-2:]}; pair each image with its mask")
        name = str(rec["img_id"]) if rec.get("img_id") is not None else Path(rec["image_file"]).as_posix()
        samples.append(make_sample(image, label, points, name=name, image_path=image_path, cell_type=ctype_id,
                                   cell_type_name=ctype_name, label_path=label_path, **extra))
    return samples


def remove_duplicates(boxes_xywh: np.ndarray, iou: float = 0.75) -> np.ndarray:
    """Indices (sorted) of annotations kept by box NMS; the earlier of two duplicates is kept.

    Args:
        boxes_xywh: ``[K, 4]`` COCO boxes (x, y, w, h).
    """
    import torch
    from torchvision.ops import nms

    b = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    if len(b) == 0:
        return np.zeros(0, np.int64)
    xyxy = torch.as_tensor(np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1), dtype=torch.float64)
    scores = -torch.arange(len(b), dtype=torch.float64)  # earlier annotation = higher priority
    return np.sort(nms(xyxy, scores, iou).numpy())


def _find_image(root: Path, file_name: str) -> Path:
    p = root / file_name
    if p.exists():
        return p
    alt = root / file_name.split("_")[0] / file_name  # LIVECell: images/<cell line>/<file>
    return alt if alt.exists() else p


def read_coco(path, image_root=None, cell_type_from: str = "auto", scale_by_type: dict | None = None,
              dedup_iou: float | None = 0.75, image_ids=None) -> list[dict]:
    """Read a COCO instance-segmentation JSON into samples (one per image, in image-id order).

    Args:
        path: the JSON file.
        image_root: folder of the images (default: the JSON's folder). A file not found there is
            also looked up in ``<image_root>/<prefix>/`` where prefix is the file name up to the first
            ``_`` (LIVECell's layout).
        cell_type_from: ``"category"`` (cell_type = category id of the image's most frequent
            category), ``"filename"`` (prefix of the file name, looked up in :data:`CELL_TYPES`), or
            ``"auto"`` (filename when the file has a single category, else category).
        scale_by_type: optional ``{cell type name: factor}`` pre-scaling (e.g. LIVECell's
            per-line scales); applied with :func:`cks.data.readers.rescale_sample`.
        dedup_iou: box-NMS IoU for duplicate removal; ``None`` disables it.
        image_ids: optional subset of image ids.
    """
    from pycocotools.coco import COCO

    path = Path(path)
    _load_json(path)  # clear error for missing / invalid files
    with contextlib.redirect_stdout(_io.StringIO()):
        try:
            coco = COCO(str(path))
        except Exception as exc:
            raise CksDataError(f"{path}: not a readable COCO file ({exc}); check the file") from None
    root = Path(image_root) if image_root is not None else path.parent
    cats = {c["id"]: c.get("name", str(c["id"])) for c in coco.loadCats(coco.getCatIds())}
    if cell_type_from == "auto":
        cell_type_from = "filename" if len(cats) <= 1 else "category"
    if cell_type_from not in ("category", "filename"):
        raise CksDataError(f"read_coco: cell_type_from must be auto, category or filename, not {cell_type_from!r}")
    ids = sorted(coco.getImgIds()) if image_ids is None else list(image_ids)
    samples = []
    for img_id in ids:
        info = coco.loadImgs(img_id)[0]
        image_path = _find_image(root, info["file_name"])
        image = read_image(image_path)
        h, w = image.shape[-2:]
        anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=img_id)) if not a.get("iscrowd", 0)]
        if dedup_iou is not None and anns:
            anns = [anns[i] for i in remove_duplicates([a["bbox"] for a in anns], dedup_iou)]
        label = np.zeros((h, w), np.int32)
        for k, ann in enumerate(anns, start=1):
            with warnings.catch_warnings():  # pycocotools vs numpy 2 copy-keyword deprecation
                warnings.simplefilter("ignore", DeprecationWarning)
                m = coco.annToMask(ann).astype(bool)
            if m.shape != (h, w):
                raise CksDataError(f"{path}: image {img_id} is {info.get('height')}x{info.get('width')} in the "
                                   f"JSON but {image_path} is {h}x{w}; use the matching image files")
            label[m & (label == 0)] = k
        if cell_type_from == "category":
            cat = np.bincount([a["category_id"] for a in anns]).argmax() if anns else -1
            ctype, ctype_name = int(cat), cats.get(int(cat), "")
        else:
            prefix = Path(info["file_name"]).name.split("_")[0]
            ctype, ctype_name = cell_type_id(prefix), prefix
        sample = make_sample(image, label, name=info["file_name"], image_path=image_path,
                             cell_type=ctype, cell_type_name=ctype_name, img_id=img_id)
        if scale_by_type and ctype_name in scale_by_type:
            sample = rescale_sample(sample, scale_by_type[ctype_name])
        samples.append(sample)
    return samples


def write_simple_json(path, records) -> None:
    """Write the simple list format (module docstring) that ``cks train --data PATH.json`` reads back.

    Args:
        path: the ``.json`` file to write (atomically).
        records: ``[(image_path, points [N, 2] (y, x)), ...]``; each ``image_path`` is stored relative to
            the JSON file's folder, which is how :func:`read_simple_json` resolves it.
    """
    import os

    from .writers import atomic_write_text

    path = Path(path)
    base = path.resolve().parent
    out = []
    for image_path, pts in records:
        rel = Path(os.path.relpath(Path(image_path).resolve(), base)).as_posix()
        out.append({"image_file": rel,
                    "locations": [[round(float(y), 2), round(float(x), 2)] for y, x in np.asarray(pts).reshape(-1, 2)]})
    atomic_write_text(json.dumps(out, indent=1), path)

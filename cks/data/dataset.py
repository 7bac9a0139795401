"""``TrainingDataset``: in-memory samples -> normalised, augmented fixed-size crops; and ``collate``.

Each item is a dict::

    image      float32 tensor [C, S, S]   normalised ((x - mean) / std per channel), augmented
    points     float32 tensor [N, 2]      (y, x) point labels inside the crop, N may be 0
    label      int64 tensor [S, S]        instance ids (only when the samples have labels)
    ids        int64 tensor [N]           label id of each point (only when known: ``point_ids`` or a label)
    cell_type  int
    name       str
    index      int                        position of the sample in the list

Randomness: item ``i`` of epoch ``e`` uses ``np.random.default_rng([seed, e, i])``, so a run is
repeatable whatever the number of workers or the order. Call :meth:`TrainingDataset.set_epoch`
before each epoch (with ``DataLoader(persistent_workers=True)`` workers keep the epoch they
were started with; leave it False, the default, to pick up ``set_epoch``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from cks.data.augment import augment_sample, crop_or_pad
from cks.data.io import normalize_image
from cks.errors import CksDataError

__all__ = ["TrainingDataset", "collate"]


class TrainingDataset(Dataset):
    """Augmented training crops from a list of samples held in memory.

    Args:
        samples: list of sample dicts (:mod:`cks.data.readers`); images are normalised once and cached.
        size: crop side ``S``; ``None`` with ``augment=False`` yields whole images.
        augment: random augmentation (:func:`cks.data.augment.augment_sample`); False gives a
            centred crop/pad (evaluation).
        seed: base seed.
        with_label: include ``label`` when the samples have one.
        min_points: samples with fewer points are rejected at construction (a point-supervised
            image without points teaches nothing but background).
        augment_kwargs: passed to :func:`cks.data.augment.augment_sample` (``scale_range``,
            ``contrast_range``, ``brightness``, ``d4``, ``border``).
    """

    def __init__(self, samples: list[dict], size: int | None = 512, augment: bool = True, seed: int = 0,
                 with_label: bool = True, min_points: int = 0, **augment_kwargs):
        if not samples:
            raise CksDataError("TrainingDataset: no samples; check the data spec")
        if augment and size is None:
            raise CksDataError("TrainingDataset: augment=True needs a crop size")
        for s in samples:
            n = 0 if s.get("points") is None else len(s["points"])
            if n < min_points:
                raise CksDataError(f"{s.get('image_path') or s.get('name')}: {n} point(s), fewer than "
                                   f"min_points={min_points}; drop the sample or make its points")
        self.samples = samples
        self.size = size
        self.augment = augment
        self.seed = int(seed)
        self.with_label = with_label
        self.augment_kwargs = augment_kwargs
        self.epoch = 0
        self._norm: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Select the random stream of an epoch."""
        self.epoch = int(epoch)

    def normalized_image(self, index: int) -> np.ndarray:
        """Normalised full image of sample ``index`` (computed once, then cached)."""
        if index not in self._norm:
            self._norm[index] = normalize_image(self.samples[index]["image"])
        return self._norm[index]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.samples):
            raise IndexError(index)
        s = self.samples[index]
        src = dict(s, image=self.normalized_image(index))
        if not self.with_label:
            src["label"] = None
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            out = augment_sample(src, rng, size=self.size, **self.augment_kwargs)
            image, label, points, ids = out["image"], out["label"], out["points"], out["point_ids"]
        elif self.size is not None:
            pts = np.zeros((0, 2), np.float32) if s.get("points") is None else s["points"]
            image, label, points = crop_or_pad(src["image"], src.get("label"), pts, (self.size, self.size))
            keep = ((points >= -0.5) & (points < self.size - 0.5)).all(axis=1)
            points = points[keep]
            ids = None if s.get("point_ids") is None else np.asarray(s["point_ids"])[keep]
        else:
            image, label = src["image"], src.get("label")
            points = np.zeros((0, 2), np.float32) if s.get("points") is None else s["points"]
            ids = s.get("point_ids")
        item = dict(image=torch.from_numpy(np.ascontiguousarray(image, np.float32)),
                    points=torch.from_numpy(np.ascontiguousarray(points, np.float32).reshape(-1, 2)),
                    cell_type=int(s.get("cell_type", -1)), name=s.get("name", ""), index=index)
        if ids is not None:
            item["ids"] = torch.from_numpy(np.asarray(ids, np.int64).reshape(-1))
        if label is not None:
            item["label"] = torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))
        return item


def collate(batch: list[dict], pad_multiple: int = 1) -> dict:
    """Stack items of :class:`TrainingDataset` into a batch.

    Returns:
        dict with
        ``image`` float32 [B, C, S, S];
        ``points`` float32 [B, Nmax, 2], zero-padded, where ``Nmax`` is the largest point count
        rounded up to ``pad_multiple``;
        ``points_valid`` bool [B, Nmax], True for real points (``points[b, :n_b]``);
        ``ids`` int64 [B, Nmax], the label id of each point (0 where unknown or padded);
        ``label`` int64 [B, S, S] (only when every item has one);
        ``cell_type`` int64 [B]; ``name`` list[str]; ``index`` int64 [B].
    """
    if not batch:
        raise CksDataError("collate: empty batch")
    shapes = {tuple(b["image"].shape) for b in batch}
    if len(shapes) != 1:
        raise CksDataError(f"collate: images of different shapes {sorted(shapes)}; use one crop size and "
                           f"one channel count per batch")
    counts = [int(b["points"].shape[0]) for b in batch]
    n_max = max(counts)
    if pad_multiple > 1:
        n_max = -(-n_max // pad_multiple) * pad_multiple
    points = torch.zeros(len(batch), n_max, 2, dtype=torch.float32)
    valid = torch.zeros(len(batch), n_max, dtype=torch.bool)
    ids = torch.zeros(len(batch), n_max, dtype=torch.int64)
    for i, (b, n) in enumerate(zip(batch, counts)):
        points[i, :n] = b["points"]
        valid[i, :n] = True
        if "ids" in b:
            ids[i, :n] = b["ids"]
    out = dict(image=torch.stack([b["image"] for b in batch]), points=points, points_valid=valid, ids=ids,
               cell_type=torch.tensor([b["cell_type"] for b in batch], dtype=torch.int64),
               name=[b["name"] for b in batch],
               index=torch.tensor([b.get("index", -1) for b in batch], dtype=torch.int64))
    if all("label" in b for b in batch):
        out["label"] = torch.stack([b["label"] for b in batch])
    return out

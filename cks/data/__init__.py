"""Data layer of ``cks``: reading images and annotations, augmentation, datasets, public sets.

Nothing is loaded on import. Main entry points::

    from cks.data import load_dataset, TrainingDataset, collate
    samples = load_dataset("usiigaci_nih3t3_phase/train:set1-16@0.5")
"""

from cks.data.annotations import read_coco, read_json_file, read_simple_json
from cks.data.augment import augment_sample
from cks.data.dataset import TrainingDataset, collate
from cks.data.io import check_same_shape, image_batch, normalize_image, read_image, read_label, read_mask
from cks.data.readers import (CELL_TYPES, cell_type_id, deepcell_instances, keep_largest_component, make_sample,
                              read_deepcell, read_usiigaci, rescale_sample)
from cks.data.registry import DATASETS, SPLITS, data_dir, fetch
from cks.data.spec import load_dataset, parse_spec

__all__ = [
    "read_image", "read_label", "read_mask", "check_same_shape", "normalize_image", "image_batch",
    "make_sample", "read_usiigaci", "read_deepcell", "keep_largest_component", "deepcell_instances",
    "rescale_sample", "CELL_TYPES", "cell_type_id",
    "read_json_file", "read_simple_json", "read_coco",
    "load_dataset", "parse_spec",
    "augment_sample", "TrainingDataset", "collate",
    "DATASETS", "SPLITS", "data_dir", "fetch",
]

"""The paper's published numbers (Yu, "Point-supervised Single-cell Segmentation via Collaborative
Knowledge Sharing", IEEE TMI 2023, arXiv 2304.10671), Tables I-VIII, copied from the paper's text.

These are **the paper's values on the paper's data** (LIVECell, A431), trained with the paper's full
budget. They are shown next to our own measurements (:mod:`cks.report`) for orientation only; our data
(Usiigaci, DeepCell 2016), model size and budget differ, so none of these values is a target that our
runs are expected to reproduce.

Every table is a dict::

    {"title": ..., "source": "Table II", "data": "LIVECell (test set)",
     "columns": ["Dice", "AP50", "mAP"],
     "rows": {row name: {column: value or None}},   # None: "-" in the paper
     "note": ...}

Row names are the paper's wording (for Table II the two design switches, for Table V the two
consistency losses, ...). :data:`TABLES` maps "I" ... "VIII" to the tables.
"""
from __future__ import annotations

import copy

CITATION = ("J. Yu, \"Point-supervised Single-cell Segmentation via Collaborative Knowledge Sharing\", "
            "IEEE Trans. Med. Imaging, 2023 (arXiv 2304.10671)")

LIVECELL_LINES = ("A172", "BT474", "BV2", "Huh7", "MCF7", "SHSY5Y", "SKOV3", "SkBr3", "ALL")


def _rows(columns, values: dict) -> dict:
    return {name: dict(zip(columns, vals)) for name, vals in values.items()}


TABLE_I = {
    "title": "Performance of supervised models on LIVECell",
    "source": "Table I", "data": "LIVECell",
    "columns": ["Dice", "AP50", "mAP", "Speed (fps)"],
    "rows": _rows(["Dice", "AP50", "mAP", "Speed (fps)"], {
        "Cellpose": (0.831, None, None, 1.85),
        "MaskRCNN": (0.830, 0.808, 0.478, 1.20),
        "Ours": (0.824, 0.806, 0.450, 11.6),
    }),
    "note": "Inference speed measured with 520x704 images on a Tesla V100.",
}

TABLE_II = {
    "title": "Ablation studies on principal model design (fully supervised)",
    "source": "Table II", "data": "LIVECell",
    "columns": ["Dice", "AP50", "mAP"],
    "rows": _rows(["Dice", "AP50", "mAP"], {
        "single-scale detection, constant encoding": (0.793, 0.780, 0.423),
        "multi-scale detection, constant encoding": (0.805, 0.788, 0.437),
        "multi-scale detection, encoding net": (0.824, 0.806, 0.450),
    }),
    "note": "Single scale = detection at stride 4 only; constant encoding = cosine (Transformer-style).",
}

_T3_COLS = [f"{m} {v}" for m in ("Dice", "AP50", "AP75", "mAP") for v in ("CKS-1", "CKS-2", "Supervised")]
TABLE_III = {
    "title": "Comparison of different training strategies",
    "source": "Table III", "data": "LIVECell (per cell line)",
    "columns": _T3_COLS,
    "rows": _rows(_T3_COLS, {
        "A172": (0.761, 0.772, 0.802, 0.687, 0.721, 0.764, 0.171, 0.227, 0.349, 0.277, 0.312, 0.381),
        "BT474": (0.729, 0.764, 0.782, 0.688, 0.713, 0.769, 0.247, 0.319, 0.438, 0.304, 0.351, 0.430),
        "BV2": (0.806, 0.825, 0.830, 0.878, 0.889, 0.900, 0.534, 0.563, 0.639, 0.495, 0.510, 0.552),
        "Huh7": (0.693, 0.820, 0.831, 0.448, 0.514, 0.781, 0.031, 0.108, 0.515, 0.100, 0.188, 0.473),
        "MCF7": (0.743, 0.768, 0.778, 0.744, 0.753, 0.789, 0.193, 0.252, 0.356, 0.308, 0.333, 0.392),
        "SHSY5Y": (0.634, 0.674, 0.703, 0.313, 0.367, 0.548, 0.004, 0.008, 0.100, 0.072, 0.087, 0.199),
        "SKOV3": (0.779, 0.848, 0.864, 0.740, 0.804, 0.876, 0.159, 0.305, 0.554, 0.294, 0.376, 0.509),
        "SkBr3": (0.868, 0.890, 0.898, 0.934, 0.938, 0.951, 0.749, 0.717, 0.821, 0.617, 0.604, 0.667),
        "ALL": (0.757, 0.806, 0.824, 0.712, 0.734, 0.806, 0.304, 0.333, 0.468, 0.342, 0.361, 0.450),
    }),
    "note": "CKS-1: He initialisation; CKS-2: principal pretrained on TissueNet.",
}

TABLE_IV = {
    "title": "Comparison of point-supervised LIVECell models (Dice)",
    "source": "Table IV", "data": "LIVECell (per cell line)",
    "columns": ["Nishimura-1", "Nishimura-2", "CKS-1", "CKS-2"],
    "rows": _rows(["Nishimura-1", "Nishimura-2", "CKS-1", "CKS-2"], {
        "A172": (0.624, 0.678, 0.761, 0.772),
        "BT474": (0.690, 0.565, 0.729, 0.764),
        "BV2": (0.541, 0.643, 0.806, 0.825),
        "Huh7": (0.513, 0.608, 0.693, 0.820),
        "MCF7": (0.502, 0.577, 0.743, 0.768),
        "SHSY5Y": (0.426, 0.449, 0.634, 0.674),
        "SKOV3": (0.612, 0.649, 0.779, 0.848),
        "SkBr3": (0.640, 0.773, 0.868, 0.890),
        "ALL": (0.568, 0.618, 0.757, 0.806),
    }),
    "note": "Nishimura-1/-2 values as published in the paper's reference [47].",
}

TABLE_V = {
    "title": "Ablation studies on consistency loss",
    "source": "Table V", "data": "LIVECell",
    "columns": ["Dice", "AP50", "mAP"],
    "rows": _rows(["Dice", "AP50", "mAP"], {
        "principal entropy, collaborator linear": (0.655, 0.530, 0.227),
        "principal linear, collaborator entropy": (0.698, 0.610, 0.281),
        "principal linear, collaborator linear": (0.806, 0.734, 0.361),
    }),
    "note": "The last row is the paper's method; its values equal the CKS-2 'ALL' row of Table III.",
}

TABLE_VI = {
    "title": "Impact of hyperparameter d",
    "source": "Table VI", "data": "LIVECell",
    "columns": ["AP50", "AP75", "mAP"],
    "rows": _rows(["AP50", "AP75", "mAP"], {
        "not used (pi = 0)": (0.482, 0.211, 0.225),
        "constant d (20)": (0.714, 0.238, 0.316),
        "per-cell-line d": (0.734, 0.333, 0.361),
    }),
    "note": ("Per-cell-line d: 20, 15 or 10 by size group (large, medium, small); the last row equals "
             "the CKS-2 'ALL' row of Table III."),
}

TABLE_VII = {
    "title": "Impact of collaborator model complexity",
    "source": "Table VII", "data": "LIVECell",
    "columns": ["AP50", "AP75", "mAP"],
    "rows": _rows(["AP50", "AP75", "mAP"], {
        "a1 / b1": (0.734, 0.333, 0.361),
        "a2 / b1": (0.734, 0.325, 0.358),
        "a3 / b1": (0.733, 0.317, 0.346),
        "a1 / b2": (0.706, 0.186, 0.294),
        "a3 / b2": (0.593, 0.137, 0.249),
    }),
    "note": "Foreground net a1-a3 (U-Nets of growing depth), border net b1 (3-layer CNN) or b2 (U-Net).",
}

TABLE_VIII = {
    "title": "Model performance on A431 dataset",
    "source": "Table VIII", "data": "A431 (points from a nuclear counter-stain)",
    "columns": ["Dice", "AP50", "AP75", "mAP"],
    "rows": _rows(["Dice", "AP50", "AP75", "mAP"], {
        "Nishimura-1": (0.741, 0.571, 0.025, 0.167),
        "PDAM": (0.702, 0.384, 0.044, 0.125),
        "CKS-1": (0.821, 0.887, 0.301, 0.407),
        "CKS-2": (0.823, 0.897, 0.317, 0.418),
    }),
    "note": "PDAM: unsupervised domain adaptation from TissueNet.",
}

TABLES: dict[str, dict] = {"I": TABLE_I, "II": TABLE_II, "III": TABLE_III, "IV": TABLE_IV, "V": TABLE_V,
                           "VI": TABLE_VI, "VII": TABLE_VII, "VIII": TABLE_VIII}


def paper_table(key: str) -> dict:
    """A deep copy of the paper's table ``key`` ("I" ... "VIII"); KeyError lists the valid keys."""
    k = str(key).upper().removeprefix("TABLE").strip()
    if k not in TABLES:
        raise KeyError(f"no paper table {key!r}; choose one of {', '.join(TABLES)}")
    return copy.deepcopy(TABLES[k])


def paper_reference(metric: str = "AP50") -> dict[str, float]:
    """The paper's all-LIVECell values of ``metric`` (Table III, row ALL): ``{"CKS-1", "CKS-2", "Supervised"}``.

    Other data (LIVECell, 90k steps on a GPU): drawn for orientation beside our protocols, not as their target.
    """
    row = TABLES["III"]["rows"]["ALL"]
    return {v: row[f"{metric} {v}"] for v in ("CKS-1", "CKS-2", "Supervised") if row.get(f"{metric} {v}") is not None}


__all__ = ["CITATION", "LIVECELL_LINES", "TABLES", "paper_table", "paper_reference"] + [f"TABLE_{k}" for k in TABLES]

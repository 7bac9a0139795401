"""Point baselines: Voronoi-clipped disks (closed form) and seeded watershed on generated cells."""
import numpy as np

from cks.baselines import constant_scores, seeded_watershed, voronoi_disks
from cks.data.synthetic import synthetic_sample
from cks.metrics import evaluate


def test_voronoi_disks_closed_form():
    lab = voronoi_disks(np.array([[20.0, 20.0], [20.0, 30.0]]), (40, 50), radius=8.0)
    yy, xx = np.mgrid[0:40, 0:50]
    d1 = np.hypot(yy - 20, xx - 20)
    d2 = np.hypot(yy - 20, xx - 30)
    # disk 1 is clipped at the bisector x = 25 (ties go to either; count the unambiguous pixels)
    assert np.all(lab[(d1 < 8) & (xx < 25)] == 1)
    assert np.all(lab[(d2 < 8) & (xx > 25)] == 2)
    assert np.all(lab[(d1 >= 8) & (d2 >= 8)] == 0)
    assert voronoi_disks(np.zeros((0, 2)), (5, 5), 3.0).max() == 0


def test_baselines_segment_generated_cells():
    s = synthetic_sample((128, 128), n_cells=10, radius=(8, 11), seed=2)
    disks = voronoi_disks(s["points"], (128, 128), 8.0)
    ws = seeded_watershed(s["image"], s["points"], max_radius=14, smooth=1.0)
    for lab, floor in ((disks, 0.6), (ws, 0.4)):  # crude, but far from random
        r = evaluate(lab, constant_scores(lab), s["label"])
        assert r["n_pred"] >= 8
        assert r["dice"] > floor
    # shuffled points (wrong places) do much worse than the true points
    shifted = s["points"] + 15.0
    r_bad = evaluate(voronoi_disks(shifted, (128, 128), 8.0), constant_scores(disks), s["label"])
    assert r_bad["dice"] < evaluate(disks, constant_scores(disks), s["label"])["dice"] - 0.2

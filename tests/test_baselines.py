"""Point baselines: Voronoi-clipped disks (closed form) and seeded watershed on generated cells."""
import numpy as np
import pytest

from cks.baselines import constant_scores, geodesic_disks, seeded_watershed, voronoi_disks
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


def test_geodesic_disks_without_cost_are_voronoi_disks_and_keep_the_area():
    rng = np.random.default_rng(0)
    pts = rng.uniform(20, 100, size=(12, 2))
    flat = np.zeros((120, 130), np.float32)
    geo = geodesic_disks(flat, pts, radius=9.0, beta=0.0, stride=1)
    vor = voronoi_disks(pts, flat.shape, 9.0)
    assert (geo == vor).mean() > 0.97  # the 8-neighbour metric is within 8 % of the Euclidean one
    # a point with no neighbour within 2 radii keeps the area of its disk (the pixel centres within 9 px)
    far = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(len(pts)) * 1e9
    alone = np.flatnonzero(far.min(1) > 18)
    assert len(alone) > 0
    yy, xx = np.mgrid[0:120, 0:130]
    for k in alone:
        disk = ((yy - pts[k, 0]) ** 2 + (xx - pts[k, 1]) ** 2 < 81).sum()
        assert abs((geo == k + 1).sum() - disk) <= 3  # pixels tied at the n-th distance (the 2x grid pairs them)
    assert geodesic_disks(flat, np.zeros((0, 2)), 5.0).max() == 0


def test_geodesic_disks_stop_at_a_bright_halo():
    # a dark cell in a bright ring: the region around its point fills the cell, not a disk across the ring
    from scipy import ndimage

    cell = np.zeros((80, 80), bool)
    cell[20:60, 34:44] = True  # a long, thin cell
    img = np.zeros((80, 80), np.float32)
    img[ndimage.binary_dilation(cell, iterations=3) & ~cell] = 3.0
    img[cell] = -1.0
    radius = np.sqrt(cell.sum() / np.pi)
    pts = np.array([[40.0, 39.0]])
    iou = {}
    for beta in (0.0, 3.0):
        lab = geodesic_disks(img, pts, radius, beta=beta) > 0
        iou[beta] = (lab & cell).sum() / (lab | cell).sum()
    assert iou[3.0] > 0.7 and iou[3.0] > iou[0.0] + 0.3, iou  # stride 2: the coarse grid blurs the ends


def test_geodesic_disks_give_a_contested_pixel_to_the_nearer_point():
    flat = np.zeros((60, 60), np.float32)
    pts = np.array([[30.0, 24.0], [30.0, 34.0]])  # 10 px apart, radius 9: the disks overlap
    lab = geodesic_disks(flat, pts, radius=9.0, beta=0.0, stride=1)
    yy, xx = np.mgrid[0:60, 0:60]
    d1, d2 = np.hypot(yy - 30, xx - 24), np.hypot(yy - 30, xx - 34)
    both = (d1 < 8) & (d2 < 8)  # inside both disks, away from their rims
    assert both.sum() > 20
    assert np.all(lab[both & (xx < 28)] == 1) and np.all(lab[both & (xx > 30)] == 2)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("point", [(3.0, 25.0), (4.0, 25.0), (36.0, 24.0), (35.0, 25.0), (20.0, 46.0), (19.0, 45.0)])
def test_geodesic_disks_at_the_image_edge_keep_the_clipped_disk(stride, point):
    # the disk of radius 8 leaves the image at the top, bottom or right; both parities of the 2-px grid against the edge
    flat = np.zeros((40, 50), np.float32)
    lab = geodesic_disks(flat, np.array([point]), radius=8.0, beta=0.0, stride=stride) == 1
    yy, xx = np.mgrid[0:40, 0:50]
    clipped = (yy - point[0]) ** 2 + (xx - point[1]) ** 2 < 64
    assert abs(int(lab.sum()) - int(clipped.sum())) <= 3
    # the outermost rows and column are reached where the disk reaches them
    for got, want in ((lab[0], clipped[0]), (lab[-1], clipped[-1]), (lab[:, -1], clipped[:, -1])):
        assert got.sum() >= want.sum() - 2
    assert not (lab & ((yy - point[0]) ** 2 + (xx - point[1]) ** 2 > 100)).any()  # no growing inward instead

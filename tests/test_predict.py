"""Inference (cks.predict): table contract, scale, thresholds, blank images, and tiling vs untiled.

One tiny supervised model is trained once per module (150 steps on one generated 128 x 128 image,
a few seconds of CPU); every check then runs on generated images whose ground truth is exact.
"""
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from cks.config import get_preset
from cks.data.synthetic import synthetic_sample
from cks.errors import CksConfigError, CksDataError
from cks.metrics import intersections, iou_from_intersections
from cks.models.principal import Principal
from cks.predict import predict, scores_by_label
from cks.train import train

WINDOW = 48


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = get_preset("supervised", size="test", overrides={
        "size.normalize": False, "segmentor.window": WINDOW, "train.crop_size": 128, "train.steps": 150, "train.lr": 3e-3,
        "train.finetune_lr": 3e-3, "train.checkpoint_every": 10_000})
    data = [synthetic_sample((128, 128), n_cells=16, radius=(7, 11), seed=1)]
    return train(cfg, data, progress=False)["model"]


@pytest.fixture(scope="module")
def big():
    return synthetic_sample((256, 320), n_cells=40, radius=(7, 11), seed=5)


def iou_table(a, b):
    """(ids of a, ids of b, dense IoU [len(a ids), len(b ids)])."""
    pa_ids, pb_ids, pa, pb, inter = intersections(a, b)
    return pa_ids, pb_ids, iou_from_intersections(pa, pb, inter).toarray()


def check_table(label, table, score_threshold=0.5):
    """The documented contract of predict's outputs."""
    n = len(table["label"])
    assert label.dtype == np.int32
    assert set(table) == {"label", "score", "y", "x", "area"}
    assert all(len(v) == n for v in table.values())
    np.testing.assert_array_equal(table["label"], np.arange(1, n + 1))  # 1..n
    assert np.all(np.diff(table["score"]) <= 0)  # by descending score
    assert np.all(table["score"] >= score_threshold)
    ids = np.unique(label)
    np.testing.assert_array_equal(ids[ids > 0], table["label"])  # table rows == labels in the image
    counts = np.bincount(label.ravel(), minlength=n + 1)
    np.testing.assert_array_equal(table["area"], counts[1:n + 1])
    h, w = label.shape
    assert np.all((table["y"] >= -0.5) & (table["y"] < h - 0.5) & (table["x"] >= -0.5) & (table["x"] < w - 0.5))


def main_component_fraction(label, ids):
    """Per id: fraction of its pixels in its largest 8-connected component."""
    out = []
    for k in ids:
        comp, n = ndi.label(label == k, structure=np.ones((3, 3)))
        sizes = np.bincount(comp.ravel())[1:]
        out.append(sizes.max() / sizes.sum() if n else 1.0)
    return np.array(out)


def test_table_contract_and_score_threshold(model, big):
    img = big["image"]
    label, table = predict(model, img)
    check_table(label, table)
    assert len(table["label"]) >= 30  # the 40 generated cells are found
    hi_label, hi = predict(model, img, score_threshold=0.9)
    check_table(hi_label, hi, 0.9)
    assert len(hi["label"]) < len(table["label"])
    # a 2-D array, a [1, H, W] array and a uint16 version of the same image give the same result
    lab2, t2 = predict(model, img[0])
    np.testing.assert_array_equal(lab2, label)
    np.testing.assert_array_equal(t2["score"], table["score"])
    assert scores_by_label(table) == {int(k): float(s) for k, s in zip(table["label"], table["score"])}


def test_one_tile_is_the_untiled_path(model):
    """An image that fits in one tile gives identical results whatever the tile size, equal to the raw model."""
    s = synthetic_sample((128, 160), n_cells=14, radius=(7, 11), seed=3)
    ref_label, ref = predict(model, s["image"], tile=1024)
    for tile in (160, 161, 400):
        label, table = predict(model, s["image"], tile=tile)
        np.testing.assert_array_equal(label, ref_label)
        for k in ref:
            np.testing.assert_array_equal(table[k], ref[k])
    from cks.data.io import normalize_image
    with torch.no_grad():
        raw = model(torch.from_numpy(normalize_image(s["image"]))[None])
    raw_scores = np.sort(raw["seg_scores"].numpy())[::-1]
    kept = raw_scores[raw_scores >= 0.5]
    assert len(ref["score"]) <= len(kept)
    assert np.isin(ref["score"], kept).all()


@pytest.mark.parametrize("shape,tile,overlap", [((256, 320), 160, None), ((200, 260), 128, 96)])
def test_tiled_no_duplicates_no_cut_cells(model, shape, tile, overlap):
    s = synthetic_sample(shape, n_cells=shape[0] * shape[1] // 1600, radius=(7, 11), seed=5)
    gt = s["label"]
    un_label, un = predict(model, s["image"])
    label, table = predict(model, s["image"], tile=tile, overlap=overlap)
    assert max(shape) > tile  # really tiled
    check_table(label, table)
    # no duplicates across seams: detections are at least the NMS radius apart ...
    pts = np.stack([table["y"], table["x"]], 1)
    d = np.sqrt(((pts[:, None] - pts[None]) ** 2).sum(-1)) + np.eye(len(pts)) * 1e9
    assert d.min() >= model.cfg.detector.nms_radius
    # ... and no ground-truth cell is covered by two predicted cells
    pid, gid, iou = iou_table(label, gt)
    assert (iou > 0.5).sum(0).max() <= 1
    # no lost cells: every cell found without tiling is found with tiling
    upid, _, uiou = iou_table(un_label, gt)
    found_un = (uiou > 0.5).any(0)
    found_tiled = (iou > 0.5).any(0)
    assert found_un.sum() >= 0.9 * len(gid)
    assert found_tiled[found_un].mean() >= 0.95, found_tiled[found_un].mean()
    # no cut cells: each real cell is one region, as good a match to the truth as without tiling
    real = pid[(iou > 0.5).any(1)]
    assert main_component_fraction(label, real).min() >= 0.95
    assert iou.max(1)[(iou > 0.5).any(1)].mean() >= uiou.max(1)[(uiou > 0.5).any(1)].mean() - 0.05


def test_tiled_matches_untiled(model, big):
    """Real cells (matching a ground-truth cell) found untiled have a tiled partner with IoU > 0.8.

    GroupNorm statistics are per tile, so masks differ slightly (and low-score background detections
    may come and go); the cells and the quality against the truth don't.
    """
    un_label, _ = predict(model, big["image"])
    upid, _, uiou = iou_table(un_label, big["label"])
    real = upid[(uiou > 0.5).any(1)]
    assert len(real) >= 36
    for tile in (160, 192):
        label, _ = predict(model, big["image"], tile=tile)
        aid, _, cross = iou_table(un_label, label)
        best = cross.max(1)[np.isin(aid, real)]
        frac = float((best > 0.8).mean())
        print(f"tile {tile}: {frac:.3f} of {len(real)} real untiled cells have a tiled partner at IoU > 0.8")
        assert (best > 0.5).mean() >= 0.95
        if tile == 192:
            assert frac >= 0.9
        pid, _, iou = iou_table(label, big["label"])
        assert iou.max(1)[(iou > 0.5).any(1)].mean() >= uiou.max(1)[(uiou > 0.5).any(1)].mean() - 0.03


def test_scale_maps_back_to_native(model, big):
    img = big["image"][:, :128, :160]
    gt = big["label"][:128, :160]
    up = torch.nn.functional.interpolate(torch.from_numpy(img)[None], scale_factor=2, mode="bilinear")[0].numpy()
    gt_up = np.kron(gt, np.ones((2, 2), gt.dtype))
    label, table = predict(model, up, scale=0.5)  # cells twice the trained size, predicted at half size
    assert label.shape == up.shape[-2:]
    check_table(label, table)
    # coordinates are native pixels: each detection lies inside (or at the edge of) a GT cell of the upsampled image
    pid, gid, iou = iou_table(label, gt_up)
    assert (iou > 0.5).any(0).mean() >= 0.8
    yy, xx = np.round(table["y"]).astype(int), np.round(table["x"]).astype(int)
    cy = ndi.mean(np.mgrid[:label.shape[0], :label.shape[1]][0], label, table["label"])
    cx = ndi.mean(np.mgrid[:label.shape[0], :label.shape[1]][1], label, table["label"])
    assert np.median(np.hypot(cy - table["y"], cx - table["x"])) < 4.0
    assert (label[yy.clip(0, label.shape[0] - 1), xx.clip(0, label.shape[1] - 1)] == table["label"]).mean() >= 0.8
    # diameter sets the same scale; the model's training scale is the default
    l2, t2 = predict(model, up, diameter=60.0, model_diameter=30.0)
    np.testing.assert_array_equal(l2, label)
    model.scale = 0.5
    try:
        l3, _ = predict(model, up)
    finally:
        model.scale = 1.0
    np.testing.assert_array_equal(l3, label)
    # upscaling to the model (scale > 1) also maps back and keeps labels 1..n
    l4, t4 = predict(model, img, scale=1.5)
    assert l4.shape == img.shape[-2:]
    check_table(l4, t4)


def test_blank_image_has_no_cells(model):
    for img in (np.zeros((96, 120), np.float32), np.full((2, 64, 64), 7, np.uint16)):
        label, table = predict(model, img)
        assert label.shape == img.shape[-2:] and not label.any()
        assert all(len(v) == 0 for v in table.values())
        assert set(table) == {"label", "score", "y", "x", "area"}


def test_untrained_model_runs_and_keeps_contract():
    torch.manual_seed(0)
    m = Principal(get_preset("base", size="test", overrides={"segmentor.window": WINDOW})).eval()
    img = synthetic_sample((96, 112), n_cells=6, seed=2)["image"]
    label, table = predict(m, img, score_threshold=0.0, tile=64, overlap=WINDOW)
    check_table(label, table, 0.0)


def test_bad_inputs(model):
    ok = np.zeros((32, 32), np.float32)
    ok[5:9, 5:9] = 1
    for bad in (np.zeros((2, 1, 32, 32)), np.zeros((4, 32, 32)), np.zeros((0, 32)), np.zeros(32)):
        with pytest.raises(CksDataError):
            predict(model, bad)
    nan = ok.copy()
    nan[3, 3] = np.nan
    with pytest.raises(CksDataError, match="NaN"):
        predict(model, nan)
    with pytest.raises(CksConfigError, match="overlap"):
        predict(model, np.random.default_rng(0).random((200, 200)), tile=100)  # default overlap 128 >= tile
    with pytest.raises(CksConfigError, match="overlap"):
        predict(model, np.random.default_rng(0).random((200, 200)), tile=128, overlap=WINDOW - 1)
    with pytest.raises(CksConfigError, match="scale"):
        predict(model, ok, scale=0.0)


class SpotModel(torch.nn.Module):
    """Stand-in principal model: one 'cell' (disc of radius 5) per bright spot of the input.

    Each detection is pulled ``bias`` px towards (> 0) or away from (< 0) the centre of the input
    it sees, as a real network is less sure near its input's edges; so a tile-seam cell is located
    differently by the two tiles that see it.
    """

    def __init__(self, bias: float, window: int = WINDOW):
        super().__init__()
        from types import SimpleNamespace

        self.w = torch.nn.Parameter(torch.zeros(1))
        self.bias = bias
        self.cfg = SimpleNamespace(segmentor=SimpleNamespace(window=window),
                                   detector=SimpleNamespace(nms_radius=8.0))

    def forward(self, x):
        img = x[0, 0]
        peak = (img == torch.nn.functional.max_pool2d(img[None, None], 5, 1, 2)[0, 0]) & (img > 3)
        pts = torch.nonzero(peak).float()
        centre = torch.tensor([img.shape[0] / 2, img.shape[1] / 2])
        pts = pts + self.bias * torch.sign(centre - pts)
        s = self.cfg.segmentor.window
        origin = pts.round().long() - s // 2
        ar = torch.arange(s).float()
        rel = pts - origin.float()
        d2 = (ar[None, :, None] - rel[:, 0, None, None]) ** 2 + (ar[None, None, :] - rel[:, 1, None, None]) ** 2
        return {"seg_points": pts, "seg_scores": torch.full((len(pts),), 0.9), "seg_logits": torch.where(
            d2 <= 25, 5.0, -5.0), "seg_origin": origin}


@pytest.mark.parametrize("bias", [2.5, -2.5])  # shifts < nms_radius / (2 sqrt 2)
def test_seam_cells_neither_duplicated_nor_lost(bias):
    """Cells exactly on core boundaries (tile 128, overlap 64: seams at 96 and 160)."""
    h = w = 256
    spots = [(96, 40), (160, 200), (96, 160), (40, 96), (200, 160), (128, 128), (20, 20)]
    yy, xx = np.mgrid[:h, :w]
    img = np.zeros((h, w), np.float32)
    for y, x in spots:
        img += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8.0)
    m = SpotModel(bias)
    label, table = predict(m, img, tile=128, overlap=64)
    check_table(label, table)
    pts = np.stack([table["y"], table["x"]], 1)
    d = np.sqrt(((np.array(spots, float)[:, None] - pts[None]) ** 2).sum(-1))
    assert len(pts) == len(spots), pts  # no duplicate, no loss
    assert d.min(1).max() <= abs(bias) * np.sqrt(2) + 1e-4  # each spot found once, nearby
    whole_label, whole = predict(m, img)  # one tile: the reference
    assert len(whole["label"]) == len(spots)
    assert main_component_fraction(label, table["label"]).min() == 1.0
    np.testing.assert_array_equal(np.sort(table["area"]), np.sort(whole["area"]))  # no cut discs


def test_points_set_the_cell_size(model, big):
    """``points=``: the size is measured at them (cks.size.estimate_diameter), exactly as if that diameter were given."""
    from cks.evaluation import predict_many
    from cks.points import centroids
    from cks.size import estimate_diameter

    img = big["image"]
    _, pts = centroids(big["label"])
    label, table, info = predict(model, img, points=pts, model_diameter=30.0, return_info=True)
    d = estimate_diameter(img, pts)
    assert info["diameter_source"] == "measured at the given points"
    assert info["diameter"] == pytest.approx(d) and info["scale"] == pytest.approx(30.0 / d)
    l2, t2 = predict(model, img, diameter=d, model_diameter=30.0)
    np.testing.assert_array_equal(label, l2)
    # scale and diameter win over points
    assert predict(model, img, points=pts, diameter=20.0, return_info=True)[2]["diameter"] == 20.0
    assert predict(model, img, points=pts, scale=1.0, return_info=True)[2]["diameter"] is None
    # predict_many(size="points") reads each sample's points
    (l3, _, i3), = predict_many(model, [{"image": img, "points": pts}], size="points", model_diameter=30.0)
    np.testing.assert_array_equal(l3, label)
    with pytest.raises(CksConfigError, match="needs points"):
        predict_many(model, [{"image": img}], size="points")
    with pytest.raises(CksDataError, match="at least 2"):
        predict(model, img, points=pts[:1])
    with pytest.raises(CksDataError, match=r"\[N, 2\]"):
        predict(model, img, points=np.zeros((3, 3)))


def test_mask_resampling(model, big):
    img, gt = big["image"], big["label"]
    a, ta = predict(model, img)
    b, tb = predict(model, img, mask_resampling="bilinear")  # scale 1: nothing to resample, the same result
    np.testing.assert_array_equal(a, b)
    up = torch.nn.functional.interpolate(torch.from_numpy(img[:, :128, :160])[None], scale_factor=2,
                                         mode="bilinear")[0].numpy()
    gt_up = np.kron(gt[:128, :160], np.ones((2, 2), gt.dtype))
    la, ta = predict(model, up, scale=0.5)
    lb, tb = predict(model, up, scale=0.5, mask_resampling="bilinear")
    check_table(lb, tb)
    for k in ("score", "y", "x"):  # the same cells at the same places, only their boundaries move
        np.testing.assert_allclose(tb[k], ta[k])
    for lab in (la, lb):
        pid, gid, iou = iou_table(lab, gt_up)
        assert (iou > 0.5).any(0).mean() >= 0.8
    # tiled: the same cells as the tiled label path, each mask close to its label-path twin
    tl, ttl = predict(model, up, scale=0.5, tile=96, overlap=WINDOW + 16)
    lt, tt = predict(model, up, scale=0.5, mask_resampling="bilinear", tile=96, overlap=WINDOW + 16)
    check_table(lt, tt)
    for k in ("score", "y", "x"):
        np.testing.assert_allclose(tt[k], ttl[k])
    pid, gid, iou = iou_table(lt, tl)
    assert (iou.max(1) > 0.8).mean() >= 0.9
    # an input below MIN_SIDE at model resolution (padded path) resamples too, and min_area keeps its unit
    small = up[:, :180, :200]
    ls, ts = predict(model, small, scale=0.5, mask_resampling="bilinear")
    check_table(ls, ts)
    lm, tm = predict(model, small, scale=0.5, mask_resampling="bilinear", min_area=60)  # 60 model px = 240 native
    check_table(lm, tm)
    assert (tm["area"] >= 240).all() and len(tm["area"]) < len(ts["area"])
    with pytest.raises(CksConfigError, match="mask_resampling"):
        predict(model, img, mask_resampling="cubic")

"""cks.data.readers / annotations / spec: layouts, JSON formats, spec grammar, rescaling."""

import json

import numpy as np
import pytest

from cks.data.annotations import read_coco, read_simple_json, remove_duplicates
from cks.data.readers import (cell_type_id, deepcell_instances, keep_largest_component, make_sample,
                              read_usiigaci, rescale_sample)
from cks.data.spec import expand_selector, load_dataset, match_item, parse_spec
from cks.errors import CksDataError
from cks.points import centroids


def test_keep_largest_component():
    lab = np.zeros((10, 10), np.int32)
    lab[0:4, 0:4] = 5
    lab[6:7, 6:8] = 5  # detached fragment of 5
    lab[0:2, 6:9] = 9
    lab[3, 9] = 9  # diagonal-only neighbour is a separate 4-connected component
    out = keep_largest_component(lab)
    expect = lab.copy()
    expect[6:7, 6:8] = 0
    expect[3, 9] = 0
    np.testing.assert_array_equal(out, expect)


def test_usiigaci_layout_and_selectors(usiigaci_tree, monkeypatch):
    root, centres = usiigaci_tree
    monkeypatch.delenv("CKS_DATA_DIR", raising=False)
    samples = load_dataset(str(root))
    assert [s["name"] for s in samples] == ["train/set1", "train/set2", "val/set46"]
    s = samples[0]
    assert s["image"].shape == (1, 64, 80) and s["image"].dtype == np.float32
    assert s["label"].dtype == np.int32 and s["label"][0, 0] == 0  # fragment removed
    assert len(s["points"]) == len(centres) and s["cell_type"] == cell_type_id("NIH3T3")
    np.testing.assert_allclose(np.sort(s["points"], axis=0), np.sort(np.array(centres, float), axis=0), atol=1e-4)
    assert [s["name"] for s in load_dataset(f"{root}/train:set2")] == ["train/set2"]  # relative to the set's folder
    assert len(load_dataset(f"{root}:set1-2")) == 2
    assert len(load_dataset(f"{root}:set4*")) == 1
    assert len(load_dataset([f"{root}:set1", f"{root}:val/set46"])) == 2
    with pytest.raises(CksDataError, match="set7"):
        load_dataset(f"{root}:set7")


def test_spec_resolves_against_data_dir(usiigaci_tree, monkeypatch):
    root, _ = usiigaci_tree
    monkeypatch.setenv("CKS_DATA_DIR", str(root.parent))
    samples = load_dataset("usiigaci_nih3t3_phase/train:set1-2")
    assert [s["name"] for s in samples] == ["train/set1", "train/set2"]  # relative to the set's folder
    assert [s["name"] for s in load_dataset("usiigaci_nih3t3_phase", split="val")] == ["val/set46"]
    half = load_dataset("usiigaci_nih3t3_phase/train:set1@0.5")[0]
    assert half["image"].shape == (1, 32, 40) and half["scale"] == 0.5
    np.testing.assert_allclose(half["points"], (samples[0]["points"] + 0.5) * 0.5 - 0.5, atol=1e-5)
    with pytest.raises(CksDataError, match="no_such_set.*CKS_DATA_DIR"):
        load_dataset("no_such_set/train")
    with pytest.raises(CksDataError, match="no split 'test'"):
        load_dataset("usiigaci_nih3t3_phase", split="test")


def test_spec_grammar_helpers(tmp_path):
    assert expand_selector("set1-3, set9,a/b*") == ["set1", "set2", "set3", "set9", "a/b*"]
    assert expand_selector("HeLa_joint/set4-5") == ["HeLa_joint/set4", "HeLa_joint/set5"]
    assert match_item("training_data/HeLa_joint/set1", "set1")
    assert match_item("training_data/HeLa_joint/set1", "HeLa_joint/set1")
    assert not match_item("training_data/HeLa_joint/set11", "set1")
    assert match_item("training_data/HeLa_joint/set11", "set1*")
    path, sel, scale = parse_spec(f"{tmp_path}:set1,set2@0.25")
    assert path == tmp_path and sel == "set1,set2" and scale == 0.25
    with pytest.raises(CksDataError, match="empty range"):
        expand_selector("set5-2")


def test_usiigaci_mismatched_label(usiigaci_tree, helpers):
    root, _ = usiigaci_tree
    helpers.save_png(root / "train" / "set1" / "instances_ids.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(CksDataError, match="instances_ids.png.*does not match.*raw.tif"):
        read_usiigaci(root / "train" / "set1")


def test_deepcell_instances_drop_and_grow(helpers):
    shape = (60, 60)
    centres = [(15, 15), (15, 44), (44, 30)]
    interior, edge = helpers.deepcell_maps(shape, centres)
    lab = deepcell_instances(interior, edge, min_area=50, grow=2)
    assert sorted(np.unique(lab)) == [0, 1, 2, 3]  # speck dropped
    discs = helpers.disc_label(shape, centres, 7) > 0
    assert ((lab > 0) <= discs).all()  # growth stays inside edge | interior
    speck = np.zeros(shape, bool)
    speck[1, 1:4] = True
    assert (lab[(interior > 0) & ~speck] > 0).all() and (lab[speck] == 0).all()  # interiors kept, speck gone
    assert (lab > 0).sum() > ((interior > 0).sum() - 3) + 0.5 * (edge > 0).sum()  # grown into the ring
    no_grow = deepcell_instances(interior, edge, grow=0)
    assert (no_grow > 0).sum() == (interior > 0).sum() - 3


def test_deepcell_layouts(deepcell_tree):
    root, centres = deepcell_tree
    samples = load_dataset(str(root))
    names = [s["name"] for s in samples]
    assert names == ["training_data/BMDM", "training_data/HeLa_joint/set1", "validation_data/HeLa"]
    assert [s["cell_type_name"] for s in samples] == ["BMDM", "HeLa", "HeLa"]
    for s in samples:
        assert s["label"].max() == len(centres) and s["nuclear"].shape == s["image"].shape == (1, 72, 96)
    np.testing.assert_array_equal(samples[0]["label"], samples[2]["label"])
    nuc = load_dataset(f"{root}:HeLa_joint/set1", points="nuclei")[0]
    assert nuc["point_ids"] is None
    d = np.linalg.norm(nuc["points"][:, None] - np.array(centres, float)[None], axis=2)
    assert len(nuc["points"]) == len(centres) and d.min(axis=0).max() < 1.5
    with pytest.raises(CksDataError, match="no samples"):
        load_dataset(str(root / "validation_data" / "HeLa" / "RawImages"))


def test_simple_json(tmp_path, helpers):
    lab = helpers.disc_label((40, 50), [(10, 10), (25, 35)], 5)
    helpers.save_tif(tmp_path / "img" / "a.tif", (lab * 100).astype(np.uint16))
    helpers.save_tif(tmp_path / "img" / "a_mask.tif", (lab > 0).astype(np.uint8))
    helpers.save_png(tmp_path / "img" / "a_label.png", lab.astype(np.uint8))
    records = [{"image_file": "img/a.tif", "locations": [[10.5, 10.5], [25.5, 35.5]], "mask_file": "img/a_mask.tif",
                "img_id": 7},
               {"image_file": "img/a.tif", "label_file": "img/a_label.png", "cell_type": "A431"}]
    (tmp_path / "train.json").write_text(json.dumps(records))
    a, b = read_simple_json(tmp_path / "train.json", location_offset=-0.5)
    np.testing.assert_allclose(a["points"], [[10, 10], [25, 35]])
    assert a["name"] == "7" and a["mask"].sum() == (lab > 0).sum() and a["label"] is None
    np.testing.assert_allclose(b["points"], centroids(lab)[1])
    assert b["cell_type_name"] == "A431" and b["cell_type"] == cell_type_id("A431") and b["name"] == "img/a.tif"
    assert len(load_dataset(f"{tmp_path / 'train.json'}:7")) == 1
    (tmp_path / "bad.json").write_text(json.dumps([{"image_file": "img/a.tif"}]))
    with pytest.raises(CksDataError, match="bad.json.*neither locations nor label_file"):
        read_simple_json(tmp_path / "bad.json")
    (tmp_path / "odd.json").write_text(json.dumps({"x": 1}))
    with pytest.raises(CksDataError, match="odd.json"):
        load_dataset(str(tmp_path / "odd.json"))


def _rect_poly(y0, x0, y1, x1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def test_coco(tmp_path, helpers):
    helpers.save_tif(tmp_path / "im" / "BV2_a.tif", np.full((40, 60), 10, np.uint8))
    helpers.save_tif(tmp_path / "im" / "BV2_b.tif", np.full((40, 60), 20, np.uint8))
    boxes = [(5, 5, 15, 20), (5.5, 5, 15, 20), (20, 30, 35, 55)]  # second duplicates the first
    anns = [dict(id=i + 1, image_id=1, category_id=1, iscrowd=0, segmentation=_rect_poly(*b),
                 bbox=[b[1], b[0], b[3] - b[1], b[2] - b[0]], area=float((b[2] - b[0]) * (b[3] - b[1])))
            for i, b in enumerate(boxes)]
    anns.append(dict(id=9, image_id=2, category_id=1, iscrowd=0, segmentation=_rect_poly(2, 2, 12, 12),
                     bbox=[2, 2, 10, 10], area=100.0))
    coco = dict(images=[dict(id=1, file_name="BV2_a.tif", height=40, width=60),
                        dict(id=2, file_name="BV2_b.tif", height=40, width=60)],
                annotations=anns, categories=[dict(id=1, name="cell")])
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    s1, s2 = read_coco(tmp_path / "ann.json", image_root=tmp_path / "im")
    assert s1["label"].max() == 2 and len(s1["points"]) == 2  # duplicate removed
    assert s1["cell_type"] == cell_type_id("BV2") and s1["cell_type_name"] == "BV2"
    cat = read_coco(tmp_path / "ann.json", image_root=tmp_path / "im", cell_type_from="category")[0]
    assert cat["cell_type"] == 1 and cat["cell_type_name"] == "cell"
    big = read_coco(tmp_path / "ann.json", image_root=tmp_path / "im", scale_by_type={"BV2": 2.0})[1]
    assert big["image"].shape == (1, 80, 120)
    np.testing.assert_array_equal(remove_duplicates([[0, 0, 10, 10], [0, 0, 10, 11], [50, 50, 5, 5]]), [0, 2])


def test_rescale_block_pattern_exact():
    ids = np.arange(1, 13).reshape(3, 4)
    lab = np.kron(ids, np.ones((2, 2), np.int64)).astype(np.int32)  # 6 x 8, 2x2 blocks
    img = lab[None].astype(np.float32)
    s = rescale_sample(make_sample(img, lab, name="blocks"), 0.5)
    np.testing.assert_array_equal(s["label"], ids)
    np.testing.assert_allclose(s["points"], centroids(s["label"])[1], atol=1e-6)  # exact
    np.testing.assert_allclose(s["points"], np.argwhere(ids > 0), atol=1e-6)


def test_rescale_centroids_approximately_preserved(helpers):
    lab = helpers.disc_label((120, 150), helpers.grid_centres((120, 150), 30, 15), 9)
    s = make_sample(lab[None].astype(np.float32), lab, name="discs")
    for f in (0.5, 0.73, 1.6):
        r = rescale_sample(s, f)
        ids, pts = centroids(r["label"])
        np.testing.assert_array_equal(ids, r["point_ids"])
        assert np.abs(pts - r["points"]).max() < 0.5
    with pytest.raises(CksDataError):
        rescale_sample(s, 0)


@pytest.mark.realdata
def test_real_usiigaci(real_data):
    samples = load_dataset("usiigaci_nih3t3_phase/train:set1")
    s = samples[0]
    assert s["name"] == "train/set1" and s["image"].shape == (1, 1022, 1024)
    assert len(np.unique(s["label"])) - 1 == len(s["points"]) == 66


@pytest.mark.realdata
def test_real_deepcell_counts(real_data):
    expect = {1: 172, 2: 178, 3: 178, 4: 159, 5: 187}  # SOURCE.md table
    samples = load_dataset("deepcell2016_covertlab:HeLa_joint/set1-5")
    for k, s in enumerate(samples, start=1):
        assert s["label"].max() == expect[k] and s["cell_type_name"] == "HeLa"
    names = [s["name"] for s in load_dataset("deepcell2016_covertlab", split="test")]
    assert names == ["training_data/MCF10A", "validation_data/HeLa", "validation_data/MCF10A"]


def test_folder_of_images_with_masks_beside_them(tmp_path, helpers):
    """A plain folder where each image has its label image beside it, named as Cellpose names masks
    (``a_masks.tif``, ``b_masks.png``) or as ``cks predict`` writes labels (``c.labels.tif``); with a point file
    too (``a.csv``) the clicks are the points, otherwise the masks' centroids. Label images are not samples."""
    import tifffile
    from PIL import Image

    from cks.data.readers import is_mask_file, partner_mask_file

    rng = np.random.default_rng(1)
    labels = {}
    for name, end in (("a", "_masks.tif"), ("b", "_masks.png"), ("c", ".labels.tif")):
        lab = np.zeros((40, 50), np.uint16)
        lab[5:15, 5:17] = 1
        lab[20:34, 25:45] = 2 + (name == "b")  # ids need not be consecutive
        labels[name] = lab
        tifffile.imwrite(tmp_path / f"{name}.tif", rng.integers(0, 999, (40, 50)).astype(np.uint16))
        if end.endswith(".png"):
            Image.fromarray(lab.astype(np.uint8)).save(tmp_path / f"{name}{end}")
        else:
            tifffile.imwrite(tmp_path / f"{name}{end}", lab)
    (tmp_path / "a.csv").write_text("y,x\n9,10\n27,33\n30,40\n")
    assert partner_mask_file(tmp_path / "b.tif") == tmp_path / "b_masks.png"
    assert is_mask_file(tmp_path / "c.labels.tif") and not is_mask_file(tmp_path / "c.tif")
    samples = load_dataset(str(tmp_path))
    assert [s["name"] for s in samples] == ["a", "b", "c"]
    for s in samples:
        np.testing.assert_array_equal(s["label"], labels[s["name"]])
    np.testing.assert_allclose(samples[0]["points"], [[9, 10], [27, 33], [30, 40]])  # the clicks
    np.testing.assert_allclose(samples[1]["points"], centroids(labels["b"])[1])  # the masks' centroids
    tifffile.imwrite(tmp_path / "solo_masks.tif", rng.integers(0, 999, (40, 50)).astype(np.uint16))  # no solo.tif:
    (tmp_path / "solo_masks.csv").write_text("y,x\n9,10\n")  # an image that happens to end in _masks
    tifffile.imwrite(tmp_path / "e.tif", rng.integers(0, 999, (40, 50)).astype(np.uint16))
    tifffile.imwrite(tmp_path / "e_MASKS.TIF", labels["a"])  # the ending in upper case
    assert not is_mask_file(tmp_path / "solo_masks.tif") and is_mask_file(tmp_path / "e_MASKS.TIF")
    more = load_dataset(str(tmp_path))
    assert [s["name"] for s in more] == ["a", "b", "c", "e", "solo_masks"]
    np.testing.assert_array_equal(more[3]["label"], labels["a"])
    assert more[4]["label"] is None and len(more[4]["points"]) == 1
    tifffile.imwrite(tmp_path / "d.tif", np.zeros((40, 51), np.uint16))
    tifffile.imwrite(tmp_path / "d_masks.tif", np.zeros((40, 50), np.uint16))
    with pytest.raises(CksDataError, match="d_masks.tif"):  # a label image of another size is named
        load_dataset(str(tmp_path))


def test_nuclear_points_on_own_images_say_how(tmp_path):
    """points='nuclei' (cks train --labels nuclei) on a plain folder, which has no nuclear channel: the error
    says how to make the points from a nuclear stain with cks points."""
    import tifffile

    tifffile.imwrite(tmp_path / "a.tif", np.zeros((16, 16), np.uint16))
    (tmp_path / "a.csv").write_text("y,x\n5,5\n")
    with pytest.raises(CksDataError, match="cks points nuclei/"):
        load_dataset(str(tmp_path), points="nuclei")

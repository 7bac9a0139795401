"""L_M against the image's regions (``loss.collaborator_target = "geodesic"``): the target and what changes."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from cks.baselines import geodesic_disks
from cks.config import get_preset
from cks.errors import CksConfigError
from cks.losses.cks import cks_loss_terms, effective_loss_config, geodesic_target
from cks.losses.consistency import collaborator_linear_loss


def _seg(points, window, h, w, b=None):
    p = torch.tensor(points, dtype=torch.float32)
    return {"logits": torch.zeros(len(points), window, window),
            "batch": torch.zeros(len(points), dtype=torch.long) if b is None else torch.tensor(b),
            "origin": torch.floor(p + 0.5).long() - window // 2, "points": p}


def _cfg(*overrides):
    return effective_loss_config(get_preset("base", overrides=["loss.collaborator_target=geodesic", *overrides]))


def test_target_is_a_cell_sized_region_per_point_and_background_elsewhere():
    cfg = _cfg()  # size.diameter 32: regions of pi 16^2 px
    r = 0.5 * cfg.spacing_diameter
    img = torch.zeros(1, 1, 160, 160)
    seg = _seg([(40.0, 40.0), (110.0, 120.0)], 96, 160, 160)
    t = geodesic_target(cfg, img, seg, (1, 160, 160))[0]
    assert set(t.unique().tolist()) <= {0.0, 1.0}
    from scipy import ndimage

    lab, n = ndimage.label(t.numpy() > 0)
    assert n == 2
    for k in (1, 2):  # each region has the disk's area (within the stride-2 grid's rounding)
        assert abs(int((lab == k).sum()) - math.pi * r * r) <= 0.05 * math.pi * r * r
    assert t.mean() < 0.1  # background between and around the cells


def test_target_is_the_union_of_the_baselines_regions():
    # the same regions as the no-learning baseline cks.baselines.geodesic_disks, which clips them between points
    rng = np.random.default_rng(0)
    image = rng.normal(size=(128, 128)).astype(np.float32)
    image[40:44, :] += 4.0  # a bright line the regions do not cross
    pts = [(30.0, 30.0), (60.0, 70.0), (100.0, 40.0)]
    cfg = _cfg()
    r = 0.5 * cfg.spacing_diameter
    window = 2 * int(np.ceil(2 * r)) + 1  # the baseline's window
    t = geodesic_target(cfg, torch.from_numpy(image)[None, None], _seg(pts, window, 128, 128), (1, 128, 128))[0]
    want = geodesic_disks(image, np.array(pts), r, cfg.prior_geodesic_beta) > 0
    assert ((t.numpy() > 0) == want).mean() > 0.995
    assert t[42, 30] == 0 and t[30, 30] == 1  # the line stops the first cell's region


def test_only_l_m_changes_and_it_is_eq6_against_the_regions(windows):
    seg = {k: windows[k] for k in ("logits", "batch", "origin", "points")}
    shape = windows["shape"]
    g = torch.Generator().manual_seed(1)
    collab = {"fg_logits": torch.randn(shape, generator=g) * 3, "border_logits": torch.randn(shape, generator=g)}
    image = torch.randn(shape[0], 1, shape[1], shape[2], generator=torch.Generator().manual_seed(3))
    paper = effective_loss_config(get_preset("base", overrides=["loss.pairwise_weight=0"]))
    geo = _cfg("loss.pairwise_weight=0")
    a = cks_loss_terms(seg, collab, shape, None, cfg=paper, image=image)
    b = cks_loss_terms(seg, collab, shape, None, cfg=geo, image=image)
    for k in ("L_S", "L_B", "L_MC"):  # the target enters L_M only
        assert torch.allclose(a[k], b[k])
    want = collaborator_linear_loss(collab["fg_logits"], geodesic_target(geo, image, seg, shape))
    assert torch.allclose(b["L_M"], want) and not torch.allclose(a["L_M"], b["L_M"])


def test_the_target_ends_with_the_prior():
    cfg = get_preset("base", overrides=["loss.collaborator_target=geodesic"])
    assert effective_loss_config(cfg, prior=True).collaborator_target == "geodesic"
    assert effective_loss_config(cfg, prior=False).collaborator_target == "principal"
    from cks.schedule import loss_config_at, prior_end

    steps = get_preset("base", overrides=["loss.collaborator_target=geodesic", "train.steps=100"])
    assert loss_config_at(steps, 0).collaborator_target == "geodesic"
    assert loss_config_at(steps, prior_end(steps)).collaborator_target == "principal"


def test_refusals():
    with pytest.raises(CksConfigError, match="collaborator_target"):
        get_preset("base", overrides=["loss.collaborator_target=masks"])
    seg = _seg([(8.0, 8.0)], 16, 16, 16)
    with pytest.raises(CksConfigError, match="needs the image"):
        geodesic_target(_cfg(), None, seg, (1, 16, 16))
    bad = replace(_cfg(), collaborator_target="disks")  # past the config's own check
    collab = {"fg_logits": torch.zeros(1, 16, 16), "border_logits": torch.zeros(1, 16, 16)}
    with pytest.raises(CksConfigError, match="collaborator_target"):
        cks_loss_terms(seg, collab, (1, 16, 16), None, cfg=bad, image=torch.zeros(1, 1, 16, 16))

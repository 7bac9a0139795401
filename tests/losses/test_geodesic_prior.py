"""The prior of Eq. 4 along the image (``loss.prior_shape = "geodesic"``): distances, costs and what M_p becomes."""
import math

import numpy as np
import pytest
import torch

from cks.config import get_preset
from cks.errors import CksConfigError
from cks.losses.cks import cks_loss_terms, effective_loss_config, prior_radius
from cks.losses.consistency import principal_foreground, prior_logits
from cks.losses.geodesic import bright_cost, geodesic_distance, geodesic_prior_radius


def test_flat_cost_gives_the_octile_distance():
    # with cost 1 the shortest 8-neighbour path has max(dy, dx) - min(dy, dx) straight and min(dy, dx) diagonal steps
    s = 21
    d = geodesic_distance(torch.ones(1, s, s), torch.tensor([[7, 12]]), iterations=s)[0].numpy()
    dy = np.abs(np.arange(s)[:, None] - 7)
    dx = np.abs(np.arange(s)[None, :] - 12)
    octile = np.maximum(dy, dx) + (math.sqrt(2) - 1) * np.minimum(dy, dx)
    np.testing.assert_allclose(d, octile, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distance_matches_skimage_minimum_cost_paths(seed):
    # skimage's MCP_Geometric charges each step |q - p| (c_p + c_q) / 2, the same path cost: an independent solver
    from skimage.graph import MCP_Geometric

    rng = np.random.default_rng(seed)
    cost = rng.uniform(1.0, 6.0, size=(2, 17, 17))
    cost[:, 8, 2:15] = 50.0  # a wall with gaps at both ends
    seeds = np.array([[3, 4], [12, 9]])
    got = geodesic_distance(torch.from_numpy(cost).float(), torch.from_numpy(seeds), iterations=17 * 17)
    for k in range(2):
        want, _ = MCP_Geometric(cost[k], fully_connected=True).find_costs([tuple(seeds[k])])
        np.testing.assert_allclose(got[k].numpy(), want, rtol=1e-4)


def test_too_few_rounds_leave_far_pixels_unreached():
    d = geodesic_distance(torch.ones(1, 9, 9), torch.tensor([[0, 0]]), iterations=3)[0]
    assert torch.isfinite(d[3, 3]) and torch.isinf(d[8, 8])


def test_bright_cost():
    flat = torch.full((1, 1, 32, 32), 5.0)
    assert torch.allclose(bright_cost(flat, 3.0), torch.ones(1, 32, 32))  # nothing above the mean
    spot = flat.clone()
    spot[..., 10:14, 10:14] = 9.0
    c = bright_cost(spot, 3.0, smooth=0.0)[0]
    z = (spot[0, 0] - spot.mean()) / spot[0, 0].std()
    assert torch.allclose(c, 1 + 3.0 * z.clamp(min=0), atol=1e-4)
    assert c[11, 11] > 1 and c[0, 0] == 1  # the dark background (below the mean) is free
    assert bright_cost(spot, 0.0).eq(1).all()


def _one_window(image, point, window=48):
    p = torch.tensor([point], dtype=torch.float32)
    origin = torch.floor(p - window / 2).long()
    return p, origin, torch.zeros(1, dtype=torch.long)


@pytest.mark.parametrize("stride", [1, 2])
def test_prior_radius_keeps_the_disk_area(stride):
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.normal(size=(1, 1, 96, 96))).float()
    p, origin, b = _one_window(image, (48.3, 47.6))
    r = geodesic_prior_radius(image, b, origin, p, 48, radius=10.0, beta=3.0, stride=stride)
    area = int((r < 10.0).sum())
    assert abs(area - math.pi * 100) <= (2 if stride == 1 else 0.05 * math.pi * 100)  # 2: the n-th pixel's tie


def test_prior_radius_without_cost_is_euclidean():
    image = torch.zeros(1, 1, 96, 96)
    p, origin, b = _one_window(image, (48.0, 48.0))
    r = geodesic_prior_radius(image, b, origin, p, 48, radius=10.0, beta=3.0, stride=1)[0]
    ar = torch.arange(48.0)
    eu = ((ar[:, None] - 24) ** 2 + (ar[None, :] - 24) ** 2).sqrt()
    near = eu <= 15
    # octile vs Euclidean: at most 8 % apart, and the area rescaling keeps the two radii close on average
    assert ((r - eu).abs()[near] <= 0.09 * eu[near] + 0.6).all()


def test_prior_follows_a_dark_cell_not_a_disk():
    # a dark L-shaped cell in a bright 3-px halo (phase contrast): the prior's foreground (M_p with zero logits)
    # takes the L's shape
    from scipy import ndimage

    cell = np.zeros((96, 96), bool)
    cell[30:66, 40:50] = True  # the long arm
    cell[56:66, 40:72] = True  # the foot
    halo = ndimage.binary_dilation(cell, iterations=3) & ~cell
    img = torch.zeros(1, 1, 96, 96)
    img[0, 0][torch.from_numpy(halo)] = 3.0
    cell = torch.from_numpy(cell)
    img[0, 0][cell] = -1.0
    point = (50.0, 45.0)
    p, origin, b = _one_window(img, point, 96)
    area_radius = math.sqrt(float(cell.sum()) / math.pi)
    logits = torch.zeros(1, 96, 96)
    d = torch.tensor([0.7 * 2 * area_radius])
    out = {}
    for name, r in (("disk", None), ("geodesic", geodesic_prior_radius(img, b, origin, p, 96, area_radius, 3.0))):
        m_p = principal_foreground(logits, b, origin, p, (1, 96, 96), d, 2.0, prior_radius=r)[0]
        top = m_p >= torch.quantile(m_p.flatten(), 1 - float(cell.sum()) / m_p.numel())  # as many px as the cell
        out[name] = float((top & cell).sum() / (top | cell).sum())
    assert out["geodesic"] > 0.65 and out["geodesic"] > out["disk"] + 0.3, out


def test_prior_logits_with_the_euclidean_radius_is_the_paper_prior():
    pts = torch.tensor([[10.3, 7.9], [4.0, 5.5]])
    origin = torch.tensor([[0, 0], [-3, 2]])
    d = torch.tensor([4.0, 6.0])
    ar = torch.arange(16.0)
    loc = pts - origin.float()
    eu = ((ar[None, :, None] - loc[:, 0, None, None]) ** 2 + (ar[None, None, :] - loc[:, 1, None, None]) ** 2).sqrt()
    assert torch.allclose(prior_logits(pts, origin, 16, d, radius=eu), prior_logits(pts, origin, 16, d), atol=1e-6)


def _seg_collab(w):
    seg = {"logits": w["logits"], "batch": w["batch"], "origin": w["origin"], "points": w["points"]}
    g = torch.Generator().manual_seed(1)
    collab = {"fg_logits": torch.randn(w["shape"], generator=g) * 3,
              "border_logits": torch.randn(w["shape"], generator=g)}
    return seg, collab, w["shape"]


def test_cks_loss_terms_needs_the_image_and_a_known_shape(windows):
    seg, collab, shape = _seg_collab(windows)
    lc = effective_loss_config(get_preset("base", overrides=["loss.prior_shape=geodesic"]))
    with pytest.raises(CksConfigError, match="needs the image"):
        cks_loss_terms(seg, collab, shape, None, cfg=lc, image=None)
    from dataclasses import replace

    bad = replace(effective_loss_config(get_preset("base")), prior_shape="star")  # past the config's own check
    with pytest.raises(CksConfigError, match="prior_shape"):
        prior_radius(bad, None, seg)
    # no prior (pi = 0): nothing to shape, so no image needed and the paper's terms come out
    off = effective_loss_config(get_preset("base", overrides=["loss.prior_shape=geodesic", "loss.prior_scale=0"]))
    assert prior_radius(off, None, seg) is None


def test_cks_loss_terms_geodesic_changes_only_l_m(windows):
    seg, collab, shape = _seg_collab(windows)
    image = torch.randn(shape[0], 1, shape[1], shape[2], generator=torch.Generator().manual_seed(3))
    base = effective_loss_config(get_preset("base", overrides=["loss.pairwise_weight=0"]))
    geo = effective_loss_config(get_preset("base", overrides=["loss.pairwise_weight=0", "loss.prior_shape=geodesic"]))
    a = cks_loss_terms(seg, collab, shape, None, cfg=base, image=image)
    g = cks_loss_terms(seg, collab, shape, None, cfg=geo, image=image)
    for k in ("L_S", "L_B", "L_MC"):  # the prior enters M_p only, the collaborator's target
        assert torch.allclose(a[k], g[k])
    assert not torch.allclose(a["L_M"], g["L_M"])


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("point", [(24.0, 24.0), (23.6, 24.4), (24.45, 23.55)])
def test_prior_radius_is_centred_on_the_point(stride, point):
    # no cost: the region within the radius is centred on the point (its pixel-centre convention), whatever the
    # point's sub-pixel position and the grid the distances are computed on
    image = torch.zeros(1, 1, 96, 96)
    p = torch.tensor([[point[0] + 24, point[1] + 24]])
    origin = torch.tensor([[24, 24]])
    r = geodesic_prior_radius(image, torch.zeros(1, dtype=torch.long), origin, p, 48, radius=8.0, beta=0.0,
                              stride=stride)[0]
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    inside = r < 8.0
    centre = torch.stack([yy[inside].mean(), xx[inside].mean()])
    assert (centre - torch.tensor(point)).abs().max() <= 0.25, (centre, point)


def test_config_refuses_unknown_shapes_and_negative_costs():
    with pytest.raises(CksConfigError, match="prior_shape"):
        get_preset("base", overrides=["loss.prior_shape=star"])
    with pytest.raises(CksConfigError, match="prior_geodesic_beta"):
        get_preset("base", overrides=["loss.prior_geodesic_beta=-1"])
    with pytest.raises(CksConfigError, match="prior_center"):  # the author's prior is centred on the window
        get_preset("author", overrides=["loss.prior_shape=geodesic"])
    from dataclasses import replace

    author = replace(effective_loss_config(get_preset("author")), prior_shape="geodesic")  # past the config's check
    seg = {"logits": torch.zeros(1, 8, 8), "batch": torch.zeros(1, dtype=torch.long),
           "origin": torch.zeros(1, 2, dtype=torch.long), "points": torch.full((1, 2), 4.0)}
    with pytest.raises(CksConfigError, match="prior_center"):
        prior_radius(author, torch.zeros(1, 1, 8, 8), seg)

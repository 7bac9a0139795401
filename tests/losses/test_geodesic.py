"""The geodesic partition (flood fill of the foreground from the points) and L_S with per-cell targets."""
from collections import deque

import numpy as np
import pytest
import torch

from cks.config import get_preset
from cks.losses.cks import cks_loss_terms, effective_loss_config
from cks.losses.consistency import instance_consistency_loss
from cks.losses.geodesic import geodesic_partition, owner_windows


def bfs_distance(fg: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """8-connected breadth-first distance from ``start`` through ``fg`` (the start pixel always counts)."""
    h, w = fg.shape
    dist = np.full((h, w), np.inf)
    dist[start] = 0
    q = deque([start])
    while q:
        y, x = q.popleft()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                v, u = y + dy, x + dx
                if 0 <= v < h and 0 <= u < w and fg[v, u] and dist[v, u] == np.inf:
                    dist[v, u] = dist[y, x] + 1
                    q.append((v, u))
    return dist


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_partition_gives_each_pixel_to_a_geodesically_nearest_point(seed):
    rng = np.random.default_rng(seed)
    fg = rng.random((24, 30)) < 0.65
    pts = np.stack([rng.integers(0, 24, 5), rng.integers(0, 30, 5)], 1)
    pts = np.unique(pts, axis=0)
    reach = 6
    lab = geodesic_partition(torch.from_numpy(fg)[None], torch.from_numpy(pts).float(),
                             torch.zeros(len(pts), dtype=torch.long), reach)[0].numpy()
    d = np.stack([bfs_distance(fg, (int(y), int(x))) for y, x in pts])  # [K, H, W]
    best = d.min(0)
    reached = best <= reach
    assert ((lab > 0) == reached).all()  # everything within reach along the foreground, nothing else
    k = lab[reached] - 1
    assert (d[k, *np.nonzero(reached)] == best[reached]).all()  # the owner is a nearest point (ties either way)


def test_partition_follows_the_foreground_not_the_straight_line():
    # an L-shaped cell whose arm ends next to another cell's point: the arm stays with its own cell
    fg = torch.zeros(1, 20, 20, dtype=torch.bool)
    fg[0, 2:5, 2:16] = True      # cell 1: horizontal bar ...
    fg[0, 2:18, 13:16] = True    # ... with a long vertical arm
    fg[0, 14:18, 4:11] = True    # cell 2, separate, near the arm's end
    pts = torch.tensor([[3.0, 4.0], [16.0, 8.0]])
    lab = geodesic_partition(fg, pts, torch.zeros(2, dtype=torch.long), 40)[0]
    assert (lab[fg[0] & (torch.arange(20)[None, :] >= 13)] == 1).all()  # the whole arm is cell 1
    assert (lab[14:18, 4:11] == 2).all()
    assert (lab[~fg[0]] == 0).all()


def test_partition_own_pixel_images_and_edge_cases():
    fg = torch.zeros(2, 8, 8, dtype=torch.bool)
    fg[1] = True
    pts = torch.tensor([[3.2, 3.7], [3.0, 3.0], [-5.0, 2.0]])  # image 0 (no foreground), image 1, off-image
    batch = torch.tensor([0, 1, 1])
    lab = geodesic_partition(fg, pts, batch, 3)
    assert lab[0, 3, 4] == 1 and (lab[0] > 0).sum() == 1  # the point's own pixel only
    assert (lab[1, 0:7, 0:7] == 2).all() and lab[1, 7, 7] == 0  # reach 3 from (3, 3); no label 3 (off-image)
    assert geodesic_partition(fg, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 3).sum() == 0


def test_owner_windows_masks_only_the_other_cells():
    lab = torch.zeros(1, 10, 10, dtype=torch.long)
    lab[0, :, :5], lab[0, :, 5:8] = 1, 2  # x 8-9: no cell (background or out of reach)
    own = owner_windows(lab, torch.tensor([0, 0]), torch.tensor([[0, 0], [-2, 5]]), 4)
    assert own.shape == (2, 4, 4)
    assert (own[0] == 1).all()                         # window 0 lies in its own cell 1
    assert (own[1, :2] == 1).all()                     # off-image rows: no other cell there
    assert (own[1, 2:, :3] == 1).all() and (own[1, 2:, 3] == 1).all()  # x 5-7 its own cell 2, x 8 no cell
    own = owner_windows(lab, torch.tensor([0, 0]), torch.tensor([[0, 3], [0, 3]]), 4)
    assert (own[0, :, :2] == 1).all() and (own[0, :, 2:] == 0).all()   # window of cell 1: x 5-6 are cell 2's
    assert (own[1, :, :2] == 0).all() and (own[1, :, 2:] == 1).all()   # window of cell 2: x 3-4 are cell 1's


def test_l_s_with_owner_is_linear_against_the_cells_share(windows):
    w = windows
    m_c = torch.rand(w["shape"])
    owner = (torch.rand(w["logits"].shape) < 0.5).float()
    logits = w["logits"].clone().requires_grad_(True)
    got = instance_consistency_loss(logits, w["batch"], w["origin"], m_c, w["shape"], "geodesic", owner=owner)
    # the same as the paper's L_S with M_c replaced, per window, by M_c * owner: write that out directly
    s, k = w["s"], logits.shape[0]
    from cks.windows import gather_windows
    t = gather_windows(m_c, w["batch"], w["origin"], s) * owner
    m = torch.sigmoid(logits)
    first = ((1 - t) * m + t * (1 - m)).sum() / (s * s * k)
    no_overlap = instance_consistency_loss(logits, w["batch"], w["origin"], torch.zeros(w["shape"]), w["shape"])
    overlap_only = no_overlap - m.sum() / (s * s * k)  # with M_c = 0 the first part is sum m / (S^2 N)
    assert got.item() == pytest.approx((first + overlap_only).item(), rel=1e-5)


def test_geodesic_l_s_pushes_a_mask_out_of_its_neighbours_foreground():
    # two touching cells, M_c = 1 on both; window 0 covers both: under the paper's L_S a pixel of cell 2 that
    # mask 0 claims is balanced when m_1 = 1/2; with the geodesic target mask 0 is pushed out of it
    shape = (1, 6, 12)
    m_c = torch.ones(shape)
    origin = torch.tensor([[0, 0], [0, 6]])
    batch = torch.tensor([0, 0])
    points = torch.tensor([[2.5, 2.5], [2.5, 8.5]])
    lab = geodesic_partition(m_c >= 0.5, points, batch, 20)
    assert (lab[0, :, :6] == 1).all() and (lab[0, :, 6:] == 2).all()
    big = torch.zeros(2, 12, 12, requires_grad=True)  # S = 12 windows starting at x 0 and x 6
    own = owner_windows(lab, batch, origin, 12)
    assert (own[0, :, :6] == 1).all() and (own[0, :6, 6:] == 0).all()
    instance_consistency_loss(big, batch, origin, m_c, shape, "geodesic", owner=own).backward()
    g = big.grad[0]
    assert (g[:6, :6] < 0).all()       # its own cell: pulled up
    assert (g[:6, 6:] > 0).all()       # the neighbour's cell: pushed down
    big.grad = None
    instance_consistency_loss(big, batch, origin, m_c, shape, "linear").backward()
    assert big.grad[0, :6, 6:].abs().max() < 1e-6  # the paper's L_S: -1 + 2 m_j = 0 at m = 1/2, no push


def test_cks_loss_terms_geodesic_changes_only_l_s(windows):
    w = windows
    cfg = get_preset("base", overrides={"loss.consistency_principal": "geodesic"})
    lc = effective_loss_config(cfg)
    seg = {"logits": w["logits"], "batch": w["batch"], "origin": w["origin"], "points": w["points"]}
    torch.manual_seed(1)
    collab = {"fg_logits": torch.randn(w["shape"]) * 3, "border_logits": torch.randn(w["shape"])}
    image = torch.rand(w["shape"][0], 1, *w["shape"][1:])  # the base's L_PW weighs pairs by the image
    geo = cks_loss_terms(seg, collab, w["shape"], None, cfg=lc, image=image)
    lin = cks_loss_terms(seg, collab, w["shape"], None, cfg=effective_loss_config(get_preset("base")), image=image)
    for key in ("L_M", "L_B", "L_MC", "L_PW"):
        assert geo[key].item() == pytest.approx(lin[key].item())
    assert geo["L_S"].item() != pytest.approx(lin["L_S"].item())

"""Training: supervised overfit, gradient routing on the real models, exact resume, DDP on 2 CPU ranks."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from cks.config import get_preset
from cks.data.synthetic import synthetic_dataset, synthetic_sample
from cks.metrics import intersections, iou_from_intersections
from cks.predict import predict
from cks.train import CKSModule, TrainSet, collate, read_history, train

SMALL = {"train.crop_size": 128, "segmentor.window": 48, "train.checkpoint_every": 1000, "train.lr": 3e-3,
         "train.finetune_lr": 3e-3, "size.normalize": False}


@pytest.mark.slow
def test_supervised_overfit_one_image():
    """Tiny model, one synthetic image, < 2 min CPU: detection recall >= 0.9 and mean mask IoU >= 0.6."""
    torch.set_num_threads(2)
    data = [synthetic_sample((128, 128), n_cells=10, radius=(7, 11), seed=1)]
    cfg = get_preset("supervised", size="test", overrides={**SMALL, "train.steps": 200})
    model = train(cfg, data, progress=False)["model"]
    label, table = predict(model, data[0]["image"])
    gt = data[0]["label"]
    gt_pts = data[0]["points"]
    det = np.stack([table["y"], table["x"]], 1)
    d = np.sqrt(((gt_pts[:, None] - det[None]) ** 2).sum(-1)) if len(det) else np.full((len(gt_pts), 1), np.inf)
    recall = float((d.min(1) < 5.0).mean())
    pid, gid, pa, ga, inter = intersections(label, gt)
    iou = iou_from_intersections(pa, ga, inter).toarray()
    best = np.zeros(len(gid)) if iou.size == 0 else iou.max(0)
    assert recall >= 0.9, recall
    assert best.mean() >= 0.6, best.mean()


def _batch(mode, seed=0):
    data = synthetic_dataset(2, size=(96, 96), n_cells=6, radius=(6, 9), seed=seed)
    ts = TrainSet(data, crop_size=96, seed=0)
    return collate([ts.get(0), ts.get(1)])


def test_train_set_scale_range_sets_the_cell_size_of_the_crops():
    """``train.scale_range`` reaches the crops: a fixed factor f multiplies every cell's area by f^2."""
    from cks.config import with_overrides

    data = synthetic_dataset(1, size=(160, 160), n_cells=5, radius=(8, 10), seed=3)
    cfg = with_overrides(get_preset("base", size="test"), ["train.scale_range=1.5,1.5"])
    assert cfg.train.scale_range == (1.5, 1.5)
    areas = {}
    for f in (1.0, 1.5):
        crop = TrainSet(data, crop_size=400, seed=0, scale_range=(f, f)).get(0)  # the whole image fits the crop
        ids, counts = np.unique(crop["label"][crop["label"] > 0], return_counts=True)
        areas[f] = counts
    assert len(areas[1.0]) == len(areas[1.5]) == 5
    ratio = np.median(areas[1.5]) / np.median(areas[1.0])
    assert abs(ratio - 1.5 ** 2) < 0.15, ratio


def test_gradient_routing_on_models():
    torch.manual_seed(0)
    m = CKSModule(get_preset("base", size="test", overrides={"segmentor.window": 48}))
    batch = _batch("cks")
    out = m.principal(batch["image"], batch["points"], batch["points_valid"])
    col = m.collaborator(batch["image"], batch["cell_type"])
    from cks.losses.cks import cks_loss_terms
    seg = {"logits": out["seg_logits"], "batch": out["seg_batch"], "origin": out["seg_origin"], "points": out["seg_points"]}
    terms = cks_loss_terms(seg, col, (2, 96, 96), batch["cell_type"], None, m.cfg.loss, image=batch["image"])

    def grads(loss, params):
        g = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
        return max(0.0 if x is None else float(x.abs().max()) for x in g)

    assert grads(terms["L_S"], m.collaborator.parameters()) == 0.0
    assert grads(terms["L_MC"], m.collaborator.parameters()) == 0.0
    assert grads(terms["L_M"], m.principal.parameters()) == 0.0
    assert grads(terms["L_S"], m.principal.parameters()) > 0.0
    assert grads(terms["L_M"], m.collaborator.parameters()) > 0.0
    assert grads(terms["L_B"], m.principal.parameters()) > 0.0
    assert grads(terms["L_B"], m.collaborator.parameters()) > 0.0
    assert grads(terms["L_PW"], m.principal.parameters()) == 0.0  # the base's L_PW (ours) trains the collaborator only
    assert grads(terms["L_PW"], m.collaborator.parameters()) > 0.0


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_resume_reproduces_uninterrupted_run(tmp_path):
    data = synthetic_dataset(2, size=(96, 96), n_cells=6, radius=(6, 9), seed=3)
    cfg = get_preset("base", size="test", overrides={**SMALL, "train.crop_size": 96, "train.steps": 6,
                                                     "train.checkpoint_every": 2, "backbone.drop_path_rate": 0.1})
    full = train(cfg, data, out_dir=tmp_path / "a", progress=False)
    part = train(cfg, data, out_dir=tmp_path / "b", progress=False, stop_at=3)
    assert part["step"] == 3
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:  # a row logged after the checkpoint, then a crash
        f.write('{"step": 5, "L_det": 123.0}\n')
    rest = train(cfg, data, out_dir=tmp_path / "b", progress=False, resume=True)
    assert rest["step"] == 6
    a, b = _state(full["model"]), _state(rest["model"])
    for k in a:
        assert torch.equal(a[k], b[k]), k
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) >= 1 and (tmp_path / "b" / "config.json").exists()
    assert any('"event": "resumed"' in ln for ln in lines)  # the repeated steps are marked in the file
    hist_a, hist_b = read_history(tmp_path / "a"), read_history(tmp_path / "b")
    assert [r["step"] for r in hist_b] == [r["step"] for r in hist_a]  # ... and dropped by read_history
    assert all(r.get("L_det") != 123.0 for r in hist_b)


def test_resume_rejects_other_config(tmp_path):
    from cks.errors import CksCheckpointError
    data = synthetic_dataset(1, size=(96, 96), n_cells=4, radius=(6, 9), seed=3)
    cfg = get_preset("supervised", size="test", overrides={**SMALL, "train.crop_size": 96, "train.steps": 1})
    train(cfg, data, out_dir=tmp_path, progress=False)
    with pytest.raises(CksCheckpointError, match="another configuration"):
        train(get_preset("base", size="test", overrides={**SMALL, "train.crop_size": 96, "train.steps": 2}),
              data, out_dir=tmp_path, progress=False, resume=True)


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _ddp_worker(rank, world, port, out_dir):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    data = synthetic_dataset(2, size=(96, 96), n_cells=6, radius=(6, 9), seed=5)
    cfg = get_preset("base", size="test", overrides={**SMALL, "train.crop_size": 96, "train.steps": 3})
    r = train(cfg, data, progress=False)
    torch.save(r["model"].state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_cpu_ranks_identical_weights(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt")
    b = torch.load(tmp_path / "rank1.pt")
    init = CKSModule(get_preset("base", size="test", overrides={**SMALL, "train.crop_size": 96})).principal.state_dict()
    changed = False
    for k in a:
        assert torch.equal(a[k], b[k]), k
        changed |= not torch.equal(a[k], init[k])
    assert changed


def test_resume_may_extend_steps(tmp_path):
    import json
    data = synthetic_dataset(1, size=(96, 96), n_cells=4, radius=(6, 9), seed=3)
    cfg = get_preset("supervised", size="test", overrides={**SMALL, "train.crop_size": 96, "train.steps": 2})
    train(cfg, data, out_dir=tmp_path, progress=False)
    longer = get_preset("supervised", size="test", overrides={**SMALL, "train.crop_size": 96, "train.steps": 4,
                                                              "train.finetune_from": 0.45})
    r = train(longer, data, out_dir=tmp_path, progress=False, resume=True)
    assert r["step"] == 4
    events = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines() if "event" in l]
    assert events and events[0]["changes"]["train.steps"] == [2, 4] and events[0]["step"] == 2


def test_extension_may_keep_the_prior_off_step(tmp_path):
    """A CKS run extended from 4 to 8 steps with loss.prior_until 0.5 -> 0.25 keeps the prior's last step (2)."""
    import json
    from cks.train import prior_end
    data = synthetic_dataset(1, size=(96, 96), n_cells=4, radius=(6, 9), seed=3)
    base = {**SMALL, "train.crop_size": 96, "train.steps": 4, "loss.prior_until": 0.5}
    train(get_preset("base", size="test", overrides=base), data, out_dir=tmp_path, progress=False)
    longer = get_preset("base", size="test", overrides={**base, "train.steps": 8, "loss.prior_until": 0.25})
    assert prior_end(longer) == 2
    assert train(longer, data, out_dir=tmp_path, progress=False, resume=True)["step"] == 8
    ev = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines() if '"extended"' in l][0]
    assert ev["changes"]["loss.prior_until"] == [0.5, 0.25]
    assert ev["prior_off_step_before"] == ev["prior_off_step_now"] == 2
    with pytest.raises(Exception, match="another configuration"):  # other loss fields stay fixed
        train(get_preset("base", size="test", overrides={**base, "train.steps": 9, "loss.prior_until": 0.25,
                                                          "loss.prior_scale": 1.5}),
              data, out_dir=tmp_path, progress=False, resume=True)


def test_init_principal_from_checkpoint(tmp_path):
    """CKS-2: a principal pretrained elsewhere (here: 2 supervised steps) starts the CKS run."""
    data = synthetic_dataset(1, size=(96, 96), n_cells=4, radius=(6, 9), seed=4)
    sup = get_preset("supervised", size="test", overrides={**SMALL, "train.crop_size": 96, "train.steps": 2})
    pre = train(sup, data, out_dir=tmp_path / "pre", progress=False)["model"]
    cks_cfg = get_preset("base", size="test", overrides={**SMALL, "train.crop_size": 96, "train.steps": 0,
                                                          "train.init_principal": str(tmp_path / "pre")})
    start = train(cks_cfg, data, progress=False)["model"]
    for k, v in pre.state_dict().items():
        assert torch.equal(v, start.state_dict()[k]), k


def test_init_principal_path_may_name_an_environment_variable(tmp_path, monkeypatch):
    """A config that names ``$VAR/...`` (so results record no machine path) loads the checkpoint under $VAR; an
    unset variable is a config error that says so."""
    from cks.errors import CksConfigError

    data = synthetic_dataset(1, size=(96, 96), n_cells=4, radius=(6, 9), seed=4)
    sup = get_preset("supervised", size="test", overrides={**SMALL, "train.crop_size": 96, "train.steps": 1})
    pre = train(sup, data, out_dir=tmp_path / "pre", progress=False)["model"]
    monkeypatch.setenv("CKS_TEST_RUNS", str(tmp_path))
    cfg = get_preset("base", size="test", overrides={**SMALL, "train.crop_size": 96, "train.steps": 0,
                                                      "train.init_principal": "$CKS_TEST_RUNS/pre"})
    start = train(cfg, data, progress=False)["model"]
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in pre.state_dict().items())
    monkeypatch.delenv("CKS_TEST_RUNS")
    with pytest.raises(CksConfigError, match="not set"):
        train(cfg, data, progress=False)


def test_no_cells_is_an_error_and_empty_images_warn(tmp_path):
    from cks.errors import CksDataError

    data = synthetic_dataset(2, size=(96, 96), n_cells=4, radius=(6, 9), seed=3)
    cfg = get_preset("supervised", size="test", overrides={**SMALL, "train.crop_size": 96, "train.steps": 1})
    blank = [dict(s, label=np.zeros_like(s["label"]), points=np.zeros((0, 2), np.float32)) for s in data]
    with pytest.raises(CksDataError, match="has a cell"):
        train(cfg, blank, progress=False)
    with pytest.warns(UserWarning, match="1 of 2 training images have no cell"):
        train(cfg, [data[0], blank[1]], progress=False)


def test_run_clock_counts_earlier_segments_and_stops():
    from cks.train import RunClock

    c = RunClock(wall_offset=100.0, cpu_offset=60.0)
    assert c.wall() >= 100.0 and c.cpu() >= 60.0
    assert not c.over_budget(5)
    assert c.over_budget(5, max_cpu_minutes=1.0)  # 60 CPU-s of earlier segments already spent
    assert not c.over_budget(5, max_minutes=1.0)  # the wall budget is per segment: this one just began
    assert c.over_budget(5, stop_at=5) and not c.over_budget(4, stop_at=5)


def test_prepare_sizes_passes_through_without_normalisation():
    from cks.config import get_preset
    from cks.train import prepare_sizes

    cfg = get_preset("base", size="test", overrides={"size.normalize": False})
    samples = [{"image": np.zeros((1, 8, 8), np.float32)}]
    assert prepare_sizes(cfg, samples, 0.5) == (samples, 0.5)
    cfg = get_preset("base", size="test")
    done = [{"cell_diameter": 16.0, "scale": 0.5}, {"cell_diameter": 16.0, "scale": 2.0}, {"cell_diameter": 1, "scale": 1.0}]
    assert prepare_sizes(cfg, done, 7.0) == (done, 1.0)  # normalised by the caller: the median of their scales


def test_foreground_from_masks_uses_the_true_foreground():
    """``loss.foreground_from=masks``: L_S of the module equals L_S against label > 0 of the crops; no label: an error."""
    from cks.errors import CksConfigError
    from cks.losses import instance_consistency_loss

    torch.manual_seed(0)
    m = CKSModule(get_preset("base", size="test", overrides={"segmentor.window": 48, "loss.foreground_from": "masks"}))
    batch = _batch("cks")
    terms = m(batch)
    out = m.principal(batch["image"], batch["points"], batch["points_valid"])
    expect = instance_consistency_loss(out["seg_logits"], out["seg_batch"], out["seg_origin"],
                                       (batch["label"] > 0).float(), (2, 96, 96))
    torch.testing.assert_close(terms["L_S"], expect)
    with pytest.raises(CksConfigError, match="needs masks"):
        m({k: v for k, v in batch.items() if k != "label"})
    with pytest.raises(CksConfigError, match="foreground_from"):
        get_preset("base", overrides={"loss.foreground_from": "truth"})


@pytest.mark.parametrize("on", ["collaborator", "principal"])
def test_pairwise_term_reaches_its_model_from_the_module(on):
    """``loss.pairwise_weight > 0``: the module passes the crops to L_PW, which trains only the model it acts on."""
    from cks.losses.pairwise import pairwise_loss

    torch.manual_seed(0)
    m = CKSModule(get_preset("base", size="test", overrides={"segmentor.window": 48, "loss.pairwise_weight": 2.0,
                                                             "loss.pairwise_on": on}))
    batch = _batch("cks")
    terms = m(batch)
    assert "L_PW" in terms and float(terms["L_PW"].detach()) > 0
    if on == "collaborator":
        col = m.collaborator(batch["image"], batch["cell_type"])
        torch.testing.assert_close(terms["L_PW"], pairwise_loss(col["fg_logits"], batch["image"]))
    own, other = ((m.collaborator, m.principal) if on == "collaborator" else (m.principal, m.collaborator))
    g_own = torch.autograd.grad(terms["L_PW"], list(own.parameters()), retain_graph=True, allow_unused=True)
    g_other = torch.autograd.grad(terms["L_PW"], list(other.parameters()), allow_unused=True)
    assert max(0.0 if g is None else float(g.abs().max()) for g in g_own) > 0
    assert all(g is None or float(g.abs().max()) == 0 for g in g_other)
    assert "L_PW" in CKSModule(get_preset("base", size="test", overrides={"segmentor.window": 48}))(batch)  # in the base
    assert "L_PW" not in CKSModule(get_preset("author", size="test", overrides={"segmentor.window": 48}))(batch)

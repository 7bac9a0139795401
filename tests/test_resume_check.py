"""benchmarks/resume_check.py: a killed and resumed run against an uninterrupted one."""
import json
import math

import pytest
import torch

from benchmarks import resume_check as bench
from tests.cli_helpers import data  # noqa: F401  (module fixture: tiny Usiigaci-layout fields)


def test_tensor_differences_walks_nested_checkpoints():
    import numpy as np

    a = {"principal": {"w": torch.zeros(2, 3), "n": torch.tensor([1, 2]), "nan": torch.tensor([float("nan"), 1.0])},
         "optimizer": {"state": {0: {"exp_avg": torch.ones(4)}}, "param_groups": [{"lr": 0.1}]},
         "rng": {"torch": torch.tensor([5], dtype=torch.uint8), "numpy": ("MT19937", np.arange(3), 1),
                 "python": (3, (1, 2), None)}, "step": 7}
    b = {"principal": {"w": torch.zeros(2, 3), "n": torch.tensor([1, 3]), "nan": torch.tensor([float("nan"), 1.0])},
         "optimizer": {"state": {0: {"exp_avg": torch.ones(4) + torch.tensor([0, 0, 0.25, 0])}},
                       "param_groups": [{"lr": 0.2}]},
         "rng": {"torch": torch.tensor([5], dtype=torch.uint8), "numpy": ("MT19937", np.array([0, 1, 3]), 1),
                 "python": (3, (1, 2), None)}, "step": 7, "extra": {"t": torch.zeros(1), "u": [torch.ones(2)]}}
    d = bench.tensor_differences(a, b)
    assert d["principal/w"] == 0.0
    assert d["principal/n"] == 1.0  # integer tensors: 1 where any element differs
    assert d["principal/nan"] == 0.0  # NaN where the other has NaN: equal
    assert d["optimizer/state/0/exp_avg"] == pytest.approx(0.25)
    assert d["optimizer/param_groups/0/lr"] == 1.0  # plain leaves compared with ==
    assert d["rng/torch"] == 0.0 and d["rng/python/1"] == 0.0 and d["rng/python/2"] == 0.0  # (1, 2): one leaf
    assert d["rng/numpy/1"] == 1.0 and d["rng/numpy/0"] == 0.0  # numpy arrays compared too
    assert d["step"] == 0.0
    assert math.isinf(d["extra/t"]) and math.isinf(d["extra/u/0"])  # only in one checkpoint
    assert all(not k.startswith("/") for k in d)
    same = bench.tensor_differences
    assert math.isinf(same(torch.zeros(2), torch.zeros(3))[""])  # another shape
    assert math.isinf(same(torch.zeros(2), torch.zeros(2, dtype=torch.float64))[""])  # another dtype
    assert math.isinf(same(torch.tensor([1.0, 2.0]), torch.tensor([1.0, float("nan")]))[""])  # NaN on one side
    assert math.isinf(same({"x": torch.zeros(2)}, {"x": [torch.zeros(2)]})["x"])  # another kind of leaf
    assert same([torch.zeros(2)], [torch.zeros(2)]) == {"0": 0.0}
    assert same({"p": (3, (1, 2, 3), None)}, {"p": (3, (1, 2, 4), None)}) == {"p/0": 0.0, "p/1": 1.0, "p/2": 0.0}
    assert same(torch.zeros(0), torch.zeros(0)) == {"": 0.0}


def test_resumed_from_reads_the_marker_and_refuses_a_restart(tmp_path):
    f = tmp_path / "metrics.jsonl"

    def write(*rows):
        f.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return bench.resumed_from(f)

    assert write({"step": 10, "total": 1.0}, {"step": 20, "total": 1.0}) is None  # never resumed
    assert write({"step": 10, "total": 1.0}, {"step": 20, "total": 1.0}, {"step": 10, "event": "resumed"},
                 {"step": 20, "total": 1.0}, {"step": 30, "total": 1.0}) == 10
    assert write({"step": 10, "total": 1.0}, {"step": 10, "event": "resumed"},
                 {"step": 10, "total": 1.0}, {"step": 20, "total": 1.0}) is None  # a row at the marker's step after it
    assert write({"step": 10, "total": 1.0}, {"step": 10, "event": "resumed"}) is None  # nothing after it


def test_train_command_turns_validation_off_and_keeps_the_protocol_settings(tmp_path):
    from benchmarks.protocol import PROTOCOLS

    a = bench.argparse.Namespace(train=None, preset="table7_a2_b1", size="convnext_atto", steps=300, seed=1,
                                 checkpoint_every=50, set=["loss.lambda_b=4"], val=False, val_every=0, val_spec=None)
    cmd = bench.train_command(PROTOCOLS["usiigaci_points_v2"], a, tmp_path / "A")
    assert cmd[cmd.index("--data") + 1] == PROTOCOLS["usiigaci_points_v2"]["train"]
    assert "--val" not in cmd and "--resume" not in cmd
    sets = cmd[cmd.index("--set") + 1:]
    assert sets[0] == "train.seed=1" and sets[-1] == "loss.lambda_b=4"
    assert "train.crop_size=256" in sets and "train.finetune_from=0.8" in sets
    assert "train.checkpoint_every=50" in sets and "train.checkpoint_every=100" not in sets
    assert [s for s in sets if s.startswith("train.val_every=")] == ["train.val_every=3000"]
    a.val, a.val_every = True, 100  # validation as the protocol's runs do it: on its tuning split
    cmd = bench.train_command(PROTOCOLS["usiigaci_points_v2"], a, tmp_path / "A")
    assert cmd[cmd.index("--val") + 1] == PROTOCOLS["usiigaci_points_v2"]["tune"]
    assert [s for s in cmd if s.startswith("train.val_every=")] == ["train.val_every=100"]


@pytest.mark.slow
def test_killed_and_resumed_run_is_bit_exact_and_a_changed_weight_is_found(data, tmp_path):  # noqa: F811
    out = tmp_path / "resume.json"
    rec = bench.main(["--protocol", "usiigaci_points_v2", "--train", str(data[0]), "--preset", "base", "--size", "test",
                      "--steps", "200", "--checkpoint-every", "15", "--kill-from-step", "100", "--val",
                      "--val-every", "50", "--val-spec", str(data[0]), "--work", str(tmp_path / "w"), "--out", str(out),
                      "--set", "segmentor.window=48", "train.crop_size=96"])
    killed = rec["killed_at"]
    assert rec["steps"] == [200, 200]
    assert 100 <= killed["checkpoint_step"] < killed["last_logged_step"] < 200  # between two checkpoints, past 100
    assert rec["resumed_from"] == killed["checkpoint_step"]
    assert rec["bit_exact"] and rec["n_differing_loss_rows"] == 0 and rec["loss_rows"] == 20
    assert set(rec["max_abs_diff"]) >= {"principal", "collaborator", "optimizer", "rng", "config", "step"}
    assert rec["validation_every"] == 50
    rows = [json.loads(ln) for ln in (tmp_path / "w" / "B" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_ap50" in r for r in rows)  # validation ran in the resumed run
    assert json.loads(out.read_text())["command"].startswith("python benchmarks/resume_check.py")
    # the comparison is not blind: one weight of B nudged is found, and so is one logged loss changed
    from cks.checkpoint import load_checkpoint

    w = tmp_path / "w"
    ck = load_checkpoint(w / "B")
    name = next(k for k, v in ck["principal"].items() if v.is_floating_point())
    ck["principal"][name] = ck["principal"][name] + 1e-3
    ck["wall_s"] = -1.0  # a timing: not compared
    torch.save(ck, w / "B" / "checkpoint.pt")
    lines = (w / "B" / "metrics.jsonl").read_text().splitlines()
    i = max(j for j, ln in enumerate(lines) if '"total"' in ln)
    last = json.loads(lines[i])
    last["total"] += 1.0
    lines[i] = json.dumps(last)
    (w / "B" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    again = bench.compare_runs(w / "A", w / "B")
    assert not again["bit_exact"]
    assert again["max_abs_diff"]["principal"] == pytest.approx(1e-3, rel=1e-3)
    assert again["differing_loss_rows"] == [last["step"]]
    assert "wall_s" not in again["max_abs_diff"]

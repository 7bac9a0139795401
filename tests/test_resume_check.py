"""benchmarks/resume_check.py: a killed and resumed run against an uninterrupted one."""
import json
import math

import pytest
import torch

from benchmarks import resume_check as bench
from tests.cli_helpers import data  # noqa: F401  (module fixture: tiny Usiigaci-layout fields)


def test_tensor_differences_walks_nested_checkpoints():
    a = {"principal": {"w": torch.zeros(2, 3), "n": torch.tensor([1, 2])},
         "optimizer": {"state": {0: {"exp_avg": torch.ones(4)}}, "param_groups": [{"lr": 0.1}]},
         "rng": [torch.tensor([5], dtype=torch.uint8)]}
    b = {"principal": {"w": torch.zeros(2, 3), "n": torch.tensor([1, 3])},
         "optimizer": {"state": {0: {"exp_avg": torch.ones(4) + torch.tensor([0, 0, 0.25, 0])}},
                       "param_groups": [{"lr": 0.2}]},  # a float leaf, not a tensor: not compared
         "rng": [torch.tensor([5], dtype=torch.uint8)], "extra": {"t": torch.zeros(1)}}
    d = bench.tensor_differences(a, b)
    assert d["principal/w"] == 0.0
    assert d["principal/n"] == 1.0  # integer tensors: 1 where any element differs
    assert d["optimizer/state/0/exp_avg"] == pytest.approx(0.25)
    assert d["rng/0"] == 0.0
    assert math.isinf(d["extra/t"])  # only in one checkpoint
    assert "optimizer/param_groups/0/lr" not in d
    assert math.isinf(bench.tensor_differences(torch.zeros(2), torch.zeros(3))[""])  # another shape


def test_train_command_turns_validation_off_and_keeps_the_protocol_settings(tmp_path):
    from benchmarks.protocol import PROTOCOLS

    a = bench.argparse.Namespace(train=None, preset="table7_a2_b1", size="convnext_atto", steps=300, seed=1,
                                 checkpoint_every=50, set=["loss.lambda_b=4"])
    cmd = bench.train_command(PROTOCOLS["usiigaci_points_v2"], a, tmp_path / "A")
    assert cmd[cmd.index("--data") + 1] == PROTOCOLS["usiigaci_points_v2"]["train"]
    assert "--val" not in cmd and "--resume" not in cmd
    sets = cmd[cmd.index("--set") + 1:]
    assert sets[0] == "train.seed=1" and sets[-1] == "loss.lambda_b=4"
    assert "train.crop_size=256" in sets and "train.finetune_from=0.8" in sets
    assert "train.checkpoint_every=50" in sets and "train.checkpoint_every=100" not in sets
    assert [s for s in sets if s.startswith("train.val_every=")] == ["train.val_every=3000"]


@pytest.mark.slow
def test_killed_and_resumed_run_is_bit_exact_and_a_changed_weight_is_found(data, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(bench, "ROOT", bench.ROOT)  # runs from the repository (python -m cks)
    out = tmp_path / "resume.json"
    rec = bench.main(["--protocol", "usiigaci_points_v2", "--train", str(data[0]), "--preset", "base", "--size", "test",
                      "--steps", "200", "--checkpoint-every", "15", "--work", str(tmp_path / "w"),
                      "--out", str(out), "--set", "segmentor.window=48", "train.crop_size=96"])
    assert rec["steps"] == [200, 200]
    assert 15 <= rec["killed_at"]["checkpoint_step"] < 200
    assert rec["killed_at"]["last_logged_step"] > rec["killed_at"]["checkpoint_step"]  # rows logged after it
    assert rec["bit_exact"] and rec["n_differing_loss_rows"] == 0 and rec["loss_rows"] == 20
    assert set(rec["max_abs_diff"]) >= {"principal", "collaborator", "optimizer"}
    assert json.loads(out.read_text())["command"].startswith("python benchmarks/resume_check.py")
    # the comparison is not blind: one weight of B nudged is found, and so is one logged loss changed
    from cks.checkpoint import load_checkpoint

    w = tmp_path / "w"
    ck = load_checkpoint(w / "B")
    name = next(k for k, v in ck["principal"].items() if v.is_floating_point())
    ck["principal"][name] = ck["principal"][name] + 1e-3
    torch.save(ck, w / "B" / "checkpoint.pt")
    rows = (w / "B" / "metrics.jsonl").read_text().splitlines()
    last = json.loads(rows[-1])
    assert "total" in last
    last["total"] += 1.0
    (w / "B" / "metrics.jsonl").write_text("\n".join(rows[:-1] + [json.dumps(last)]) + "\n")
    again = bench.compare_runs(w / "A", w / "B")
    assert not again["bit_exact"]
    assert again["max_abs_diff"]["principal"] == pytest.approx(1e-3, rel=1e-3)
    assert again["differing_loss_rows"] == [last["step"]]

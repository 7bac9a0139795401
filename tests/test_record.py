"""benchmarks/record.py: result files carry a command one can paste, with no path of this machine."""
import json
import os
import shlex
import subprocess
import time

from benchmarks import record


def test_command_line_is_portable_and_quoted(tmp_path):
    runs = tmp_path / "runs"
    argv = ["--models", "a", "--size", "true*0.8", "auto", "--runs-dir", str(runs), "--out",
            str(record.ROOT / "results" / "x.json"), "--data", "/somewhere/else/fields.tif", "--note", "two words"]
    cmd = record.command_line("resized_tuning.py", argv, runs)
    assert cmd.startswith("python benchmarks/resized_tuning.py ")
    assert str(tmp_path) not in cmd and str(record.ROOT) not in cmd
    # the shell gives back exactly the portable arguments: the glob and the space survive a paste
    assert shlex.split(cmd)[2:] == ["--models", "a", "--size", "true*0.8", "auto", "--runs-dir", "$CKS_RUNS_DIR",
                                    "--out", "results/x.json", "--data", "fields.tif", "--note", "two words"]
    assert "'true*0.8'" in cmd
    # pasted into a shell, the runs folder is the reader's own $CKS_RUNS_DIR (not a literal '$CKS_RUNS_DIR')
    argv = ["--runs", str(runs / "proto" / "my run"), "--runs-dir", str(runs)]
    cmd = record.command_line("consistency_trace.py", argv, runs)
    got = subprocess.run(["bash", "-c", "printf '%s\\n' " + cmd.split(" ", 2)[2]], capture_output=True, text=True,
                         env={"CKS_RUNS_DIR": "/elsewhere/runs", "PATH": os.environ.get("PATH", "")}, check=True)
    assert got.stdout.splitlines() == ["--runs", "/elsewhere/runs/proto/my run", "--runs-dir", "/elsewhere/runs"]


def test_write_benchmark_adds_provenance(tmp_path, capsys):
    out = tmp_path / "sub" / "res.json"
    t0 = time.time() - 2.0
    path = record.write_benchmark(out, {"what": "x", "rows": [1, 2]}, "size_source.py", ["--protocol", "p"], t0,
                                  tmp_path)
    rec = json.loads(out.read_text())
    assert path == out and rec["rows"] == [1, 2] and rec["what"] == "x"
    assert rec["command"] == "python benchmarks/size_source.py --protocol p"
    assert rec["wall_s"] >= 2.0 and "git_commit" in rec and "cores" in rec["hardware"]
    assert [p.name for p in out.parent.iterdir()] == ["res.json"]  # nothing half-written left beside it
    assert str(out) in capsys.readouterr().out


def test_one_thread_sets_torch_threads_from_the_environment_and_returns_now(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "0")  # recorded, so the caller's value (or none) comes back after
        monkeypatch.delenv("OMP_NUM_THREADS")
        t = time.time()
        t0 = record.one_thread()
        assert t <= t0 <= time.time()  # the start time write_benchmark's wall_s counts from
        assert os.environ["OMP_NUM_THREADS"] == "1" and torch.get_num_threads() == 1  # default: one thread
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        record.one_thread()
        assert torch.get_num_threads() == 2  # a thread count the caller set is kept
    finally:
        torch.set_num_threads(before)

"""Where a measurement was made: the git commit of the source tree and the machine.

Used by every script that writes a result or benchmark file (``benchmarks/record.py``,
``benchmarks/point_baselines.py``, ``benchmarks/speed_vs_lacss.py``, ``python -m cks.bench --json``).
Nothing runs on import.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

__all__ = ["git_commit", "cpu_model", "hardware"]

_ROOT = Path(__file__).resolve().parents[1]


def git_commit(root: str | os.PathLike = _ROOT) -> str:
    """``HEAD`` of the repository at ``root`` (default: the one holding this package); "unknown" without git."""
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def hardware() -> dict:
    """CPU, cores, torch version, GPU (if any) and the thread count a run was given (``OMP_NUM_THREADS``)."""
    import torch

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "threads_per_run": int(os.environ.get("OMP_NUM_THREADS", "0")) or None}

"""cks.bench: the forced cell layout, the image-size scaling run (real subprocesses, tiny model) and reading the speed results back."""
import json

import pytest
import torch

from cks.bench import grid_points, main
from tests.cli_helpers import data, run  # noqa: F401  (module fixtures: generated images, a 3-step run)


def test_grid_points_inside_margin_and_apart():
    pts = grid_points(512, (520, 704), seed=0, margin=8.0, jitter=2.0)
    assert pts.shape == (512, 2)
    assert pts[:, 0].min() >= 7.0 and pts[:, 0].max() <= 520 - 9 + 1.0
    assert pts[:, 1].min() >= 7.0 and pts[:, 1].max() <= 704 - 9 + 1.0
    d = torch.cdist(pts, pts) + torch.eye(512) * 1e9
    assert d.min() > 8.0  # NMS (8 px) keeps every one
    assert torch.equal(pts, grid_points(512, (520, 704), seed=0, margin=8.0, jitter=2.0))


@pytest.mark.slow
def test_tiles_scaling_writes_rows_with_provenance(data, run, tmp_path):  # noqa: F811
    out = tmp_path / "tiles.json"
    main(["--model", str(run), "--image", str(data[0] / "set1" / "raw.tif"), "--sides", "64,160", "--quick",
          "--json", str(out)])
    r = json.loads(out.read_text())
    assert [x["side"] for x in r["rows"]] == [64, 160]
    assert [x["megapixels"] for x in r["rows"]] == [64 * 64 / 1e6, 160 * 160 / 1e6]
    assert all(x["time_s"] > 0 and x["cells"] >= 0 and x["peak_rss_mb"] >= x["base_rss_mb"] for x in r["rows"])
    assert r["meta"]["model"] == str(run) and r["meta"]["git_commit"] and r["meta"]["command"].startswith("python -m cks.bench")


def test_speed_and_scaling_read_their_files(tmp_path):
    from cks.bench import scaling_markdown, speed_results
    from cks.report import NOT_MEASURED

    def _write(path, rec):
        path.write_text(json.dumps(rec))

    assert speed_results(tmp_path) is None and NOT_MEASURED in scaling_markdown(tmp_path)
    _write(tmp_path / "speed_vs_lacss.json", {
        "meta": {"git_commit": "abcdef0123", "cpu": "cpu-x", "threads": 2, "rounds": 3, "repeat": 3},
        "markdown": "| table |", "ratios": [{"size": "520x704", "cks": "convnext_tiny", "ratio_lacss_best": 2.5}]})
    s = speed_results(tmp_path)
    assert s["ratio"][("520x704", "convnext_tiny")] == 2.5 and "commit abcdef0" in s["provenance"]
    _write(tmp_path / "bench_tiles.json", {
        "meta": {"command": "python -m cks.bench", "git_commit": "abcdef0123", "cpu": "cpu-x", "threads": 2,
                 "torch": "2"},
        "rows": [{"side": 512, "megapixels": 0.26, "cells": 40, "time_s": 0.5, "s_per_megapixel": 1.9,
                  "peak_rss_mb": 900.4}]})
    md = scaling_markdown(tmp_path)
    assert "512 x 512" in md and "40" in md and "900" in md
    assert "commit abcdef0" in md

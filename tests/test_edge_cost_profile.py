"""benchmarks/edge_cost_profile.py: L_PW's cost of a moved outline on annotated fields (synthetic field)."""
import json

import numpy as np
import pytest

from benchmarks import edge_cost_profile as bench


def _field():
    """Two flat disks of radius 8 and 10 (median equivalent diameter 18 px) on a flat background."""
    yy, xx = np.mgrid[:80, :90]
    lab = np.zeros((80, 90), np.int32)
    lab[(yy - 25) ** 2 + (xx - 25) ** 2 <= 64] = 1
    lab[(yy - 50) ** 2 + (xx - 60) ** 2 <= 100] = 2
    return lab


def test_main_writes_one_row_per_theta_and_the_halo_costs_more_at_smaller_theta(monkeypatch, tmp_path):
    import cks.data.spec

    lab = _field()
    img = (lab > 0).astype(float)
    empty = {"label": np.zeros_like(lab), "image": img[None]}  # a field without cells is left out
    monkeypatch.setattr(cks.data.spec, "load_dataset", lambda spec, **kw: [{"label": lab, "image": img[None]}, empty])
    monkeypatch.setattr(bench, "ROOT", tmp_path)
    rec = bench.main(["--protocol", "usiigaci_points_v2", "--splits", "tune", "--thetas", "0.3", "1.0", "0.3",
                      "--offsets", "-1", "2", "--diameter", "18"])
    diameters = [2 * np.sqrt((lab == i).sum() / np.pi) for i in (1, 2)]  # equivalent diameters; median of two
    assert rec["splits"]["tune"]["n_fields"] == 1
    assert rec["splits"]["tune"]["scales"] == [pytest.approx(18 / np.mean(diameters), abs=1e-4)]
    rows = rec["splits"]["tune"]["rows"]
    assert sorted(rows) == ["theta0.3", "theta1"]
    for r in rows.values():
        assert r["offset"] == [-1, 0, 1, 2]
        assert r["relative"][1] == 1.0
        assert r["mean_weight"][0] == pytest.approx(1.0) and r["mean_weight"][3] == pytest.approx(1.0)
    # a flat image: off the outline every cut pair has weight 1, on it exp(-step / theta)
    assert rows["theta0.3"]["relative"][3] > rows["theta1"]["relative"][3] > 1.0
    saved = json.loads((tmp_path / "results" / "usiigaci_points_v2" / "edge_cost_profile.json").read_text())
    assert saved["splits"]["tune"]["rows"] == json.loads(json.dumps(rows))
    assert saved["command"].startswith("python benchmarks/edge_cost_profile.py --protocol usiigaci_points_v2")


def test_offsets_must_include_the_outline_and_the_diameter_be_positive():
    with pytest.raises(SystemExit):
        bench.main(["--protocol", "usiigaci_points_v2", "--offsets", "1", "3"])
    with pytest.raises(SystemExit):
        bench.main(["--protocol", "usiigaci_points_v2", "--diameter", "0"])

"""cks.staleness: re-runs next to the first runs, seed by seed, with a verdict once every CKS seed is re-run."""
from cks.report import load_results
from cks.staleness import RERUNS, rerun_check

ROWS = [("CKS (toy)", "c_seed{}", "c_rerun_seed{}"), ("supervised (toy)", "s_seed{}", "s_rerun_seed{}")]


def _rec(model, ap50, dice=0.5, commit="a" * 40, **extra):
    return {"protocol": "p", "model": model, "git_commit": commit, "metrics": {"ap50": ap50, "dice": dice, **extra}}


HEAD = [_rec("c_seed0", 0.30), _rec("c_seed1", 0.28), _rec("s_seed0", 0.50), _rec("s_seed1", 0.55)]


def test_missing_runs_are_named_and_no_verdict():
    r = rerun_check(HEAD + [_rec("c_rerun_seed0", 0.20, ci95={"ap50": [0.15, 0.26]})], "p", ROWS)
    text = "\n".join(r["lines"])
    assert r["verdict"] is None and r["pairs"] == {(0, 0): (0.20, 0.30)}
    assert "`c_rerun_seed1` is not in this results folder" in text and "`s_rerun_seed0` is not" in text
    assert "**outside** that spread" in text and "0.150-0.260" in text  # |0.20 - 0.30| > 0.02
    assert "(`c_rerun_seed1` missing)" in text and "cannot yet say" in text
    r = rerun_check([_rec("c_rerun_seed0", 0.2)], "p", ROWS)  # the first run itself missing
    assert "`c_seed0` is not in this results folder" in r["lines"][0]


def test_verdict_optimistic_only_when_every_rerun_is_below_every_first_run():
    reruns = [_rec("c_rerun_seed0", 0.25), _rec("c_rerun_seed1", 0.27), _rec("s_rerun_seed0", 0.52),
              _rec("s_rerun_seed1", 0.56)]
    r = rerun_check(HEAD + reruns, "p", ROWS)
    assert r["verdict"] == "optimistic"
    text = "\n".join(r["lines"])
    assert "mean AP50 0.260 against the first runs' 0.290" in text
    assert f"reaches {0.25 / 0.52:.2f} of supervised" in text and f"(the first runs of seed 0: {0.30 / 0.50:.2f})" in text
    assert "s_rerun_seed0" in text and "inside that spread" in text  # |0.52 - 0.50| <= 0.05
    reruns[1] = _rec("c_rerun_seed1", 0.29)  # above the lower first run (0.28): the two overlap
    r = rerun_check(HEAD + reruns, "p", ROWS)
    assert r["verdict"] == "overlap" and "overlap" in r["lines"][-1]
    # no interval stored: the sentence still closes
    assert all(line.count("(") == line.count(")") for line in rerun_check(HEAD + reruns, "p", ROWS)["lines"])


def test_committed_results_read_without_error():
    recs = load_results()
    r = rerun_check(recs)
    assert len(r["lines"]) >= 2 * len(RERUNS["usiigaci_points_v2"])
    for (row, seed), (c, a) in r["pairs"].items():
        assert 0.0 <= c <= 1.0 and 0.0 <= a <= 1.0

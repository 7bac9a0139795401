"""cks.headline: the opening table of the results chapter, read from result files."""
import pytest

from cks.headline import HEADLINE, headline_markdown, headline_numbers, headline_rows
from cks.report import NOT_MEASURED, load_results


def _rec(protocol, model, **metrics):
    return {"protocol": protocol, "model": model, "metrics": metrics}


SPEC = {"toy set": [
    ("disks", "disks", "p1", ("disk",)),
    ("ours", "cks", "p2", ("c0", "c1")),
    ("sup", "supervised", "p2", ("s0", "s1")),
    ("never run", "peer", "p2", ("missing",)),
]}


def test_rows_keep_each_run_and_divide_by_the_supervised_mean():
    recs = [_rec("p1", "disk", ap50=0.1, dice=0.5, n_pred=30, n_gt=20),
            _rec("p2", "c0", ap50=0.2, dice=0.6, count_ratio=0.9), _rec("p2", "c1", ap50=0.4, dice=0.7, count_ratio=1.1),
            _rec("p2", "s0", ap50=0.5, dice=0.8), _rec("p2", "s1", ap50=0.7, dice=0.9)]
    rows = {r["label"]: r for r in headline_rows(recs, SPEC)["toy set"]}
    assert rows["ours"]["ap50"] == [0.2, 0.4] and rows["ours"]["n"] == 2
    assert abs(rows["ours"]["ap50_mean"] - 0.3) < 1e-12
    assert abs(rows["ours"]["vs_supervised"] - 0.3 / 0.6) < 1e-12  # mean over mean, 0.6 = (0.5 + 0.7) / 2
    assert rows["ours"]["count_ratio"] == [0.9, 1.1]
    assert rows["disks"]["count_ratio"] == [1.5]  # n_pred / n_gt where no count_ratio is stored
    assert rows["never run"]["n"] == 0 and rows["never run"]["ap50_mean"] is None
    assert rows["never run"]["vs_supervised"] is None


def test_a_result_of_another_protocol_does_not_stand_in():
    recs = [_rec("other", "c0", ap50=0.9, dice=0.9), _rec("p2", "s0", ap50=0.5, dice=0.8)]
    rows = {r["label"]: r for r in headline_rows(recs, SPEC)["toy set"]}
    assert rows["ours"]["n"] == 0 and rows["ours"]["ap50"] == []


def test_markdown_says_not_measured_and_numbers_are_flat():
    recs = [_rec("p2", "c0", ap50=0.25, dice=0.6), _rec("p2", "s0", ap50=0.5, dice=0.8)]
    md = headline_markdown(recs, SPEC)
    assert "**toy set**" in md and NOT_MEASURED in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| ours "))
    assert "0.250" in line and "0.50 |" in line  # AP50 and the ratio 0.25 / 0.5
    nums = headline_numbers(recs, SPEC)
    assert nums == {"0_cks_ap50": 0.25, "0_cks_dice": 0.6, "0_cks_vs_sup": 0.5,
                    "0_supervised_ap50": 0.5, "0_supervised_dice": 0.8}


def test_every_committed_headline_run_exists():
    """The opening table must not silently read nothing: each run it names is a committed result file."""
    records = load_results()
    have = {(r["protocol"], r["model"]) for r in records}
    for rows in HEADLINE.values():
        for label, role, protocol, names in rows:
            for name in names:
                assert (protocol, name) in have, (label, protocol, name)
    rows = headline_rows(records)
    assert all(r["n"] == len(spec[3]) for ds, spec_rows in HEADLINE.items()
               for r, spec in zip(rows[ds], spec_rows))


def test_readme_holds_the_current_headline():
    """README.md's copy of the tables is what the committed results give (refresh: python -m cks.headline)."""
    from cks.headline import readme_block
    from cks.report import repo_root

    assert readme_block(load_results()) in (repo_root() / "README.md").read_text()


def test_update_readme_rewrites_only_the_block(tmp_path):
    from cks.headline import README_BEGIN, README_END, update_readme

    recs = [_rec("p2", "c0", ap50=0.25, dice=0.6)]
    f = tmp_path / "README.md"
    f.write_text(f"intro\n{README_BEGIN}\nstale table\n{README_END}\noutro\n")
    assert update_readme(f, recs) is True
    text = f.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{README_END}\noutro\n") and "stale table" not in text
    assert update_readme(f, recs) is False  # already current
    f.write_text("no block here\n")
    with pytest.raises(ValueError, match="no headline block"):
        update_readme(f, recs)

"""Probe readings (cks.probe): hand-built result records, every number checked against the record it came from."""
import pytest

from cks.probe import (END_KEYS, probe_glue, probe_glues, probe_numbers, probe_table, rule_passes, seed_mean,
                        shape_summary, foreground_ratio)


def _rec(model, curve, metrics, cpu=41.4, protocol="usiigaci_points_v2"):
    return {"model": model, "protocol": protocol, "cpu_minutes": cpu, "metrics": metrics,
            "validation_curve": [{"step": s, "val_ap50": a, "val_dice": d} for s, a, d in curve]}


RECS = [
    _rec("probe_a", [(8000, 0.58, 0.73), (4000, 0.60, 0.74), (2000, 0.50, None)],  # the last is not the best
         {"ap50": 0.55, "dice": 0.69, "ap75": 0.04, "count_ratio": 0.93}),
    _rec("probe_b", [], {"ap50": 0.30}, cpu=None),
]


def test_numbers_read_the_last_validation_and_the_report():
    n = probe_numbers(RECS[0])
    assert list(n["curve"]) == [2000, 4000, 8000]  # sorted, whatever the record's order
    assert (n["tune"], n["tdice"]) == (0.58, 0.73)  # the last step, not the best, nor the record's last entry
    assert (n["report"], n["dice"], n["ap75"], n["count"], n["cpu"]) == (0.55, 0.69, 0.04, 0.93, 41.4)
    assert n["curve"][2000]["dice"] is None
    empty = probe_numbers(None)
    assert empty["curve"] == {} and all(empty[k] is None for k in END_KEYS)


def test_numbers_of_the_training_weights_of_an_averaged_run():
    rec = {"model": "ema", "metrics": {"ap50": 0.4}, "validation_curve": [
        {"step": 2000, "val_ap50": 0.52, "val_dice": 0.70, "val_raw_ap50": 0.50, "val_raw_dice": 0.69},
        {"step": 4000, "val_ap50": 0.61, "val_dice": 0.72, "val_raw_ap50": 0.55, "val_raw_dice": 0.71}]}
    avg, raw = probe_numbers(rec), probe_numbers(rec, prefix="val_raw_")
    assert (avg["tune"], avg["tdice"], raw["tune"], raw["tdice"]) == (0.61, 0.72, 0.55, 0.71)
    assert raw["curve"][2000] == {"ap50": 0.50, "dice": 0.69} and raw["report"] == avg["report"] == 0.4
    assert probe_numbers(RECS[0], prefix="val_raw_")["curve"] == {}  # a run without the average has no such curve


def test_glue_names_and_missing_values_as_zero():
    g = probe_glue("ch09b_x", "a", probe_numbers(RECS[0]), steps=(2000, 4000, 6000))
    assert g["ch09b_x_a_tune"] == 0.58 and g["ch09b_x_a_report"] == 0.55 and g["ch09b_x_a_cpu"] == 41.4
    assert g["ch09b_x_a_at4k"] == 0.6 and g["ch09b_x_a_dice4k"] == 0.74
    assert g["ch09b_x_a_at6k"] == 0.0 and g["ch09b_x_a_dice2k"] == 0.0  # not validated there / no Dice
    assert len(g) == len(END_KEYS) + 2 * 3 and all(isinstance(v, float) for v in g.values())
    b = probe_glue("p", "b", probe_numbers(RECS[1]))
    assert b["p_b_report"] == 0.3 and b["p_b_tune"] == 0.0 and b["p_b_cpu"] == 0.0


def test_table_rows_for_runs_that_exist():
    rows = probe_table(RECS, {"A": "probe_a", "missing": "no_such_run"}, ("usiigaci_points_v2",))
    assert list(rows) == ["A"]
    assert rows["A"]["tuning AP50 / Dice at 2,000"] == "0.500 / -"
    assert rows["A"]["tuning AP50 / Dice at 8,000"] == "0.580 / 0.730"
    assert rows["A"]["report AP50"] == 0.55 and rows["A"]["CPU-min"] == 41
    every = probe_table(RECS, {"A": "probe_a"}, every=4000)["A"]
    assert [k for k in every if k.startswith("tuning")] == ["tuning AP50 / Dice at 4,000",
                                                           "tuning AP50 / Dice at 8,000"]


def test_rule_is_a_lower_bound_on_each_named_number():
    n = probe_numbers(RECS[0])
    assert rule_passes(n, {"tune": 0.58, "tdice": 0.73})  # equal passes
    assert not rule_passes(n, {"tune": 0.58, "tdice": 0.731})  # one half short fails
    assert not rule_passes(n, {"tune": 0.59})  # the best validation (0.60) does not count
    assert not rule_passes(probe_numbers(RECS[1]), {"tune": 0.1})  # no validation: fails
    with pytest.raises(KeyError, match="unknown"):
        rule_passes(n, {"ap50": 0.5})


def test_glues_of_a_table_are_each_runs_glue():
    runs = {"A": ("a", "probe_a"), "B": ("b", "probe_b"), "gone": ("g", "no_such_run")}
    g = probe_glues(RECS, runs, "p", ("usiigaci_points_v2",), steps=(4000,))
    assert g == {**probe_glue("p", "a", probe_numbers(RECS[0]), (4000,)),
                 **probe_glue("p", "b", probe_numbers(RECS[1]), (4000,)),
                 **probe_glue("p", "g", probe_numbers(None), (4000,))}
    assert g["p_a_at4k"] == 0.6 and g["p_g_tune"] == 0.0


def test_seed_mean_of_the_rule_numbers_and_none_for_a_missing_seed():
    a = probe_numbers(RECS[0])
    b = {"tune": 0.50, "tdice": 0.70}
    assert seed_mean([a, b]) == pytest.approx({"tune": (0.58 + 0.50) / 2, "tdice": (0.73 + 0.70) / 2})
    assert seed_mean([a, b], {"tune": 0.5}) == pytest.approx({"tune": 0.54})  # a rule's names
    assert seed_mean([a, probe_numbers(RECS[1])]) is None  # probe_b has no tuning curve
    assert seed_mean([a, probe_numbers(None)]) is None and seed_mean([]) is None


def test_shape_summary_reads_the_overall_medians_and_the_cells_alone():
    row = {"overall": {"offset_median": 0.6864, "area_ratio_median": 0.9581, "solidity_pred_median": 0.9269},
           "crowding": [{"group": "1", "iou_median": 0.9}, {"group": "0", "iou_median": 0.54114}]}
    assert shape_summary(row) == {"offset": 0.69, "area": 0.96, "solidity": 0.93, "alone_iou": 0.541}
    assert shape_summary(None) == {"offset": 0.0, "area": 0.0, "solidity": 0.0, "alone_iou": 0.0}
    assert shape_summary({"overall": {"offset_median": -0.4}})["offset"] == -0.4


def test_foreground_ratio_is_the_mean_over_fields():
    assert foreground_ratio({"collaborator_foreground": {"ratio": [0.5, 0.7, 0.9, 0.6]}}) == 0.68
    assert foreground_ratio(None) == 0.0 and foreground_ratio({"collaborator_foreground": {}}) == 0.0

"""cks.viz helpers that the results chapter uses (headless Agg backend)."""
import matplotlib

matplotlib.use("Agg")

from cks.viz import markdown_table, plot_validation_curves  # noqa: E402


def test_validation_curves_one_line_per_recorded_curve():
    recs = [{"model": "a", "validation_curve": [{"step": 250, "val_ap50": 0.1, "val_dice": 0.5},
                                                {"step": 500, "val_ap50": 0.2, "val_dice": 0.6}]},
            {"model": "b", "validation_curve": [{"step": 100, "val_ap50": 0.3}]},
            {"model": "no curve"}]
    fig = plot_validation_curves(recs)
    ap, dice = fig.axes
    assert [l.get_label() for l in ap.lines] == ["a", "b"]
    assert list(ap.lines[0].get_xdata()) == [250, 500] and list(ap.lines[0].get_ydata()) == [0.1, 0.2]
    assert [l.get_label() for l in dice.lines] == ["a"]  # b has no Dice values


def test_markdown_table_rounds_and_marks_missing():
    md = markdown_table({"r": {"x": 0.12345, "y": None}}, ["x", "y"])
    assert md.splitlines()[2] == "| r | 0.123 | - |"

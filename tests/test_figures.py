"""Unit tests of the page-side plotly figures (pages/common/figures.py)."""

from pages.common.figures import CURVE_STYLE, loss_figure

HISTORY = [{"epoch": e, "loss": 1.0 / e, "class_loss": 0.5 / e, "loc_loss": 0.5 / e, "mean_iou": 0.5 + e / 20,
            "val_loss": 1.2 / e, "val_class_loss": 0.6 / e, "val_loc_loss": 0.6 / e, "val_mean_iou": 0.4 + e / 20}
           for e in (1, 2, 3)]


def test_train_and_val_curves_are_told_apart_in_every_panel():
    fig = loss_figure(HISTORY)
    assert len(fig.data) == 8  # four panels, train and val in each
    for trace in fig.data:
        assert trace.line.dash == CURVE_STYLE[trace.name]["dash"] and trace.line.color == CURVE_STYLE[trace.name]["color"]
    assert CURVE_STYLE["train"]["dash"] != CURVE_STYLE["val"]["dash"]
    assert CURVE_STYLE["train"]["color"] != CURVE_STYLE["val"]["color"]
    assert [t.name for t in fig.data if t.showlegend] == ["train", "val"]  # one legend entry each


def test_history_without_val_draws_train_only():
    fig = loss_figure([{k: v for k, v in h.items() if not k.startswith("val_")} for h in HISTORY])
    assert {t.name for t in fig.data} == {"train"} and len(fig.data) == 4

"""Every plotly figure of the app, built from what facecore returns (facecore itself draws no charts).

Train: ``loss_figure``; Evaluate: ``pr_figure``, ``iou_figure``; Video: ``timeline_figure``; Webcam:
``probability_chart``; Recognize: ``history_figure``, ``comparison_figure``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from facecore.video import VideoResult

# Train and val curves look different on every chart: colour, dash and legend name all differ.
CURVE_STYLE = {"train": {"color": "#1f77b4", "dash": "solid"}, "val": {"color": "#d62728", "dash": "dash"}}
LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0}  # above the plot, clear of axis titles


def loss_figure(history: list[dict]) -> go.Figure:
    """Train (blue, solid) and val (red, dashed) curves per epoch: total, classification and localization
    loss, mean IoU; one legend entry each, for every panel."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=("Total loss", "Classification loss",
                                                        "Localization loss", "Mean IoU (faces)"),
                        horizontal_spacing=0.08, vertical_spacing=0.16)
    epochs = [h["epoch"] for h in history]
    shown = set()
    for i, key in enumerate(("loss", "class_loss", "loc_loss", "mean_iou")):
        row, col = i // 2 + 1, i % 2 + 1
        for prefix, split in (("", "train"), ("val_", "val")):
            ys = [h.get(prefix + key) for h in history]
            if all(y is None for y in ys):
                continue
            fig.add_trace(go.Scatter(x=epochs, y=ys, mode="lines+markers", name=split, line=CURVE_STYLE[split],
                                     legendgroup=split, showlegend=split not in shown), row=row, col=col)
            shown.add(split)
    ft = [h["epoch"] for h in history if h.get("phase") == "fine-tuning"]
    if ft:
        for row in (1, 2):
            for col in (1, 2):
                fig.add_vline(x=ft[0] - 0.5, line_dash="dot", line_color="grey", row=row, col=col)
    fig.update_xaxes(title_text="epoch", row=2)
    fig.update_layout(height=520, margin=dict(l=10, r=10, t=40, b=10),
                      legend=dict(orientation="h", yanchor="bottom", y=1.06, x=0))
    return fig


def pr_figure(results: dict) -> go.Figure:
    """Plotly figure: precision against recall at IoU 0.5, one line per detector (AP in the legend)."""
    fig = go.Figure()
    for name, res in results.items():
        ap = res.metrics.get("ap50")
        label = f"{name} (AP {ap:.2f})" if ap is not None and math.isfinite(ap) else name
        r = np.concatenate([[0.0], res.pr_recall])
        p = np.concatenate([[1.0], res.pr_precision]) if len(res.pr_precision) else np.array([1.0])
        text = [""] + [f"score >= {s:.2f}" for s in res.pr_scores]
        fig.add_trace(go.Scatter(x=r, y=p, mode="lines", line_shape="hv", name=label, text=text,
                                 hovertemplate="recall %{x:.2f}, precision %{y:.2f}<br>%{text}"))
    fig.update_layout(xaxis_title="recall", yaxis_title="precision", xaxis_range=[0, 1.02], yaxis_range=[0, 1.05],
                      height=360, margin={"l": 40, "r": 20, "t": 40, "b": 40}, legend=LEGEND)
    return fig


def iou_figure(results: dict, bins: int = 20) -> go.Figure:
    """Plotly figure: histogram of IoU over face images (a missed face counts as 0), per detector."""
    fig = go.Figure()
    for name, res in results.items():
        fig.add_trace(go.Histogram(x=res.ious(), name=name, xbins={"start": 0, "end": 1.0001, "size": 1 / bins},
                                   opacity=0.6))
    fig.add_vline(x=0.5, line_dash="dash", line_color="gray", annotation_text="IoU 0.5")
    fig.update_layout(barmode="overlay", xaxis_title="IoU with the true box", yaxis_title="face images",
                      xaxis_range=[0, 1], height=360, margin={"l": 40, "r": 20, "t": 40, "b": 40},
                      legend=LEGEND)
    return fig


def timeline_figure(result: VideoResult) -> go.Figure:
    """Plotly figure: face probability over time (the frames the detector ran on) and the threshold."""
    t, s = result.timeline()
    fig = go.Figure(go.Scatter(x=t, y=s, mode="lines+markers" if len(t) <= 300 else "lines",
                               name="face probability", line={"width": 2}))
    fig.add_hline(y=result.config.threshold, line_dash="dash", line_color="red",
                  annotation_text=f"threshold {result.config.threshold:.2f}", annotation_position="top left")
    fig.update_layout(xaxis_title="time (s)", yaxis_title="face probability", yaxis_range=[0, 1.05],
                      height=300, margin={"l": 40, "r": 20, "t": 30, "b": 40}, showlegend=False)
    return fig


def probability_chart(history, threshold: float, window_s: float) -> go.Figure:
    """Face probability of the last ``window_s`` seconds of ``LiveStat`` records, and the threshold."""
    now = history[-1].time
    recent = [s for s in history if now - s.time <= window_s]
    fig = go.Figure(go.Scatter(x=[s.time - now for s in recent], y=[s.probability for s in recent],
                               mode="lines", line={"width": 2}, name="face probability"))
    fig.add_hline(y=threshold, line_dash="dot", line_color="gray", annotation_text="threshold")
    fig.update_layout(height=220, margin={"l": 10, "r": 10, "t": 10, "b": 10}, showlegend=False,
                      xaxis={"title": "seconds ago", "range": [-window_s, 0]},
                      yaxis={"title": "face probability", "range": [0, 1.02]})
    return fig


def history_figure(history: list[dict]) -> go.Figure:
    """Identity training: train and val loss and accuracy per epoch."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.1)
    epochs = [h["epoch"] for h in history]
    for col, key in ((1, "loss"), (2, "accuracy")):
        for prefix, name in (("", "train"), ("val_", "val")):
            fig.add_trace(go.Scatter(x=epochs, y=[h.get(prefix + key) for h in history], mode="lines+markers",
                                     line=CURVE_STYLE[name], name=name, legendgroup=name, showlegend=col == 1),
                          row=1, col=col)
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    fig.update_xaxes(title_text="epoch")
    return fig


def comparison_figure(df: pd.DataFrame) -> go.Figure:
    """Backbone comparison (``facecore.identity.compare`` rows): val accuracy, val loss and latency per
    backbone, without and with augmentation."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=("Val accuracy", "Val loss", "Latency per face (ms)"),
                        horizontal_spacing=0.08)
    for aug, part in df.groupby("augment"):
        name = "no augmentation" if aug == 0 else f"augmentation x{aug}"
        for col, key in ((1, "val_accuracy"), (2, "val_loss"), (3, "latency_ms")):
            fig.add_trace(go.Bar(x=part["backbone"], y=part[key], name=name, legendgroup=name,
                                 showlegend=col == 1, marker_color="#636efa" if aug == 0 else "#ef553b"),
                          row=1, col=col)
    fig.update_layout(height=320, barmode="group", margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig

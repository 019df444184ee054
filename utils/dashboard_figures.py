"""The 360° page's plots: matplotlib figures drawn from the data ``utils.dashboard_data`` reads.

Figures come from matplotlib's object API (no pyplot), so the caller's backend stays as it is;
:func:`png_base64` turns one into the base64 PNG the page embeds.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pandas as pd

DRIFT_LINES = 8  # features drawn in the drift-over-time plot


def png_base64(fig: Any) -> str:
    """A matplotlib figure as a base64 PNG string."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _new_figure(width: float = 8.0, height: float = 3.0) -> tuple[Any, Any]:
    """A figure and axes from matplotlib's object API."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    ax = fig.add_subplot(1, 1, 1)
    ax.grid(True, alpha=0.3)
    return fig, ax


def traffic_figure(log: pd.DataFrame) -> Any:
    """Predictions per hour of inference-log rows (``ts``; one line per ``model_version`` when there is one)."""
    fig, ax = _new_figure()
    frame = log.assign(hour=pd.to_datetime(log["ts"], utc=True).dt.floor("h"))
    key = "model_version" if "model_version" in frame else None
    if key:
        counts = frame.groupby(["hour", key]).size().unstack(fill_value=0)
        for version in counts.columns:
            ax.plot(counts.index, counts[version], marker="o", label=f"version {version}")
        ax.legend(loc="upper left", fontsize=8)
    else:
        counts = frame.groupby("hour").size()
        ax.plot(counts.index, counts.to_numpy(), marker="o")
    # An hour either side of the data: matplotlib's default for a single date spans years around it.
    ax.set_xlim(counts.index.min() - pd.Timedelta(hours=1), counts.index.max() + pd.Timedelta(hours=1))
    ax.set_ylabel("predictions / hour")
    ax.set_title("Predictions per hour by model version")
    fig.autofmt_xdate()
    return fig


def latency_figure(log: pd.DataFrame, col: str) -> Any:
    """A histogram of the latencies in column ``col`` of ``log`` (milliseconds)."""
    fig, ax = _new_figure(8, 2.6)
    ax.hist(log[col].dropna().astype(float), bins=30, color="#4c72b0")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("requests")
    ax.set_title("Latency of recent requests")
    return fig


def drift_figure(drift: pd.DataFrame, threshold: float) -> tuple[Any, str]:
    """PSI per column against ``threshold``, and the figure's caption.

    ``drift``: rows of :func:`utils.dashboard_data.drift_over_time`. One pass so far: a bar per column;
    more: a line per column over ``at`` for the :data:`DRIFT_LINES` most drifted columns.
    """
    metric = "population_stability_index"
    frame = drift.dropna(subset=[metric])
    fig, ax = _new_figure(8, 3.4)
    if frame["at"].nunique() <= 1:
        latest = frame.sort_values(metric)
        colors = ["#c44e52" if v > threshold else "#4c72b0" for v in latest[metric]]
        ax.barh(latest["column_name"].astype(str), latest[metric], color=colors)
        ax.axvline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:g}")
        ax.set_xlabel("PSI")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title("Drift per column (latest monitoring pass)")
        return fig, "PSI per monitored column against the baseline (one pass so far: bars, red above the threshold)"
    last = frame.sort_values("at").groupby("column_name")[metric].last().sort_values(ascending=False)
    for col in last.index[:DRIFT_LINES]:
        series = frame[frame["column_name"] == col].sort_values("at")
        ax.plot(series["at"], series[metric], marker="o", label=str(col))
    ax.axhline(threshold, color="#c44e52", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_ylabel("PSI")
    ax.legend(loc="upper left", fontsize=7, ncol=2)
    ax.set_title("Drift per column over time")
    fig.autofmt_xdate()
    return fig, f"PSI over time of the {min(DRIFT_LINES, len(last))} most drifted columns (against the baseline)"


def quality_figure(quality: pd.DataFrame, floor: float) -> Any:
    """AUC per window (``window_start``, ``auc``) against the gate's ``floor``."""
    fig, ax = _new_figure()
    frame = quality.assign(window_start=pd.to_datetime(quality["window_start"], utc=True)).sort_values("window_start")
    ax.plot(frame["window_start"], frame["auc"], marker="o", label="AUC")
    ax.axhline(floor, color="#c44e52", linestyle="--", label=f"gate minimum {floor:g}")
    ax.set_ylabel("AUC")
    ax.set_title("Model quality per window")
    ax.legend(loc="lower left", fontsize=8)
    fig.autofmt_xdate()
    return fig

"""Window bounds a reader sees in quality rows and alerts: the span of the data, never a calendar bucket around it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa

from utils import drift as dm
from utils import model_quality as mq
from utils import monitoring as m
from utils.alerts import alerts_from_breaches
from utils.config import Thresholds

T0 = datetime(2026, 10, 5, 9, 30, tzinfo=UTC)  # a Monday morning


def _scored(spark, days: int):
    ts = [T0 + timedelta(hours=6 * i) for i in range(days * 4)]
    y = [i % 2 for i in range(len(ts))]
    s = [0.9 - 0.8 * v if i % 3 else 0.5 for i, v in enumerate(y)]  # mostly wrong: a poor AUC
    return spark.createDataFrame(pa.table({"ts": ts, "y": y, "s": s})), ts


def test_one_window_over_everything_reports_the_data_span(spark):
    df, ts = _scored(spark, days=20)
    q = mq.model_quality_by_window(df, "y", "s", "ts", window="3650 days")
    assert len(q) == 1
    assert q.loc[0, "window_start"] == pd.Timestamp(ts[0]) and q.loc[0, "window_end"] == pd.Timestamp(ts[-1])
    breaches = m.detect_breaches(dm._drift_frame([]), Thresholds(), quality=q, baseline_auc=0.9)
    (alert,) = alerts_from_breaches(breaches, "workspace.mlops.model")
    assert "in window 2026-10-05 09:30 to 2026-10-25 03:30 UTC" in alert.message, alert.message


def test_weekly_windows_keep_their_calendar_bounds_inside_the_data(spark):
    df, ts = _scored(spark, days=20)
    q = mq.model_quality_by_window(df, "y", "s", "ts", window="7 days")
    assert q["window_start"].iloc[0] == pd.Timestamp(ts[0])  # clipped to the first row
    assert q["window_end"].iloc[-1] == pd.Timestamp(ts[-1])  # clipped to the last row
    inner = q.iloc[1:-1]
    assert len(inner) >= 1 and (inner["window_end"] - inner["window_start"] == pd.Timedelta(days=7)).all()
    assert (q["window_start"].iloc[1:].to_numpy() == q["window_end"].iloc[:-1].to_numpy()).all()

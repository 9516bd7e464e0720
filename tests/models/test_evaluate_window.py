"""`vigie evaluate` in a time window, with the baseline beside the model; top-k daily precision."""
from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from models.datasets import DAY_MS
from models.metrics import topk_daily_precision

HEADLINE = {"average_precision", "roc_auc", "topk_daily_precision", "k"}


def test_topk_daily_precision_by_hand():
    day = DAY_MS
    rows = [  # (day, sender, fraud, score)
        (0, "A", 0, 0.9), (0, "A", 1, 0.1),  # A's best score ranks it; its fraud counts
        (0, "B", 0, 0.8), (0, "C", 1, 0.7), (0, "D", 0, 0.2),  # top 2: A, B -> 1/2
        (1, "A", 0, 0.3), (1, "E", 1, 0.95), (1, "F", 1, 0.5),  # top 2: E, F -> 2/2
        (2, "G", 0, 0.4),  # one sender: 0/1
    ]
    d, sender, y, s = zip(*rows)
    ts = [1_790_000_000_000 // day * day + k * day + 3_600_000 for k in d]
    assert topk_daily_precision(ts, sender, y, s, k=2) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert topk_daily_precision(ts, sender, y, s, k=1) == pytest.approx((1 + 1 + 0) / 3)
    # the same sender on two days is two reviews; a tie at the cut goes to the smaller id
    tie = topk_daily_precision([ts[0]] * 2, ["b", "a"], [0, 1], [0.5, 0.5], k=1)
    assert tie == 1.0
    assert math.isnan(topk_daily_precision([], [], [], [], k=5))


@pytest.fixture(scope="module")
def data_dir(lake, tmp_path_factory):
    from models.lifecycle import train_lake

    data = tmp_path_factory.mktemp("data")
    stats = train_lake(lake, root=data / "models",
                       card=False, validate=False, search_budget_s=0)
    return data, stats["version"]


def test_evaluate_json_scores_only_the_window_with_the_baseline(lake, data_dir, monkeypatch):
    from models.evaluate import labelled_lake
    from pipelines.cli import main

    data, version = data_dir
    monkeypatch.setenv("VIGIE_DATA_DIR", str(data))
    full, _ = labelled_lake(lake)
    t0 = int(full["ts"].min()) // DAY_MS * DAY_MS
    start, end = t0 + 2 * DAY_MS, t0 + 5 * DAY_MS
    iso = datetime.fromtimestamp(start / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    result = CliRunner().invoke(main, ["evaluate", "--events", str(lake), "--from", iso,
                                       "--to", str(end), "--model", version, "--k", "20",
                                       "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    inside = full[(full["ts"] >= start) & (full["ts"] < end)]
    assert 0 < report["transfers"] == len(inside) < len(full)
    assert report["frauds"] == int(inside["label"].sum()) > 0
    assert report["window"] == {"from_ms": start, "to_ms": end}
    assert HEADLINE <= set(report) and set(report["baseline"]) == HEADLINE
    assert report["k"] == report["baseline"]["k"] == 20
    for key in ("pr_auc", "at_budget", "calibration", "model"):  # the existing report stays
        assert key in report
    assert report["average_precision"] == report["pr_auc"]
    assert isinstance(report["warnings"], list)
    # the window's rows saw all the history before it: the same features as a full replay
    window, stats = labelled_lake(lake, start, end)
    assert stats["scored"] == len(inside)
    pd.testing.assert_frame_equal(window, inside.reset_index(drop=True))
    # without a window: every transfer
    whole = json.loads(CliRunner().invoke(main, ["evaluate", "--events", str(lake),
                                                 "--json"]).output)
    assert whole["transfers"] == len(full) and whole["baseline"]["average_precision"] is not None


def test_evaluate_summary_names_the_baseline(lake, data_dir, monkeypatch):
    from pipelines.cli import main

    data, version = data_dir
    monkeypatch.setenv("VIGIE_DATA_DIR", str(data))
    result = CliRunner().invoke(main, ["evaluate", "--events", str(lake), "--k", "10"])
    assert result.exit_code == 0, result.output
    assert "model vs baseline: AP" in result.output and "top-10 daily precision" in result.output
    assert np.isfinite(float(result.output.split("model vs baseline: AP ")[1].split()[0]))

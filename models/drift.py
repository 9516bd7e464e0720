"""Feature drift: the Population Stability Index of every feature, live traffic vs training.

Training stores, in the model's metadata (``feature_bins``), each feature's decile edges over the
training slice and the share of rows in each bin plus the share of missing values. ``vigie
drift`` bins the feature values the stream recorded with its decisions (last hour, last day of the
lake's ``decisions``) with the same edges and computes

    PSI = sum over bins (actual - expected) * ln(actual / expected)

with the missing values as a bin of their own. Rule of thumb used by credit-risk teams: < 0.1
stable, 0.1-0.25 moderate shift, > 0.25 (``ALERT_PSI``) a shift worth an alert.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.lake import parquet as lake

BINS = 10
ALERT_PSI = 0.25
EPS = 1e-4  # an empty bin would make the log infinite


def _edges(values: np.ndarray, bins: int = BINS) -> list[float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return []
    qs = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(e) for e in np.unique(qs)]


def shares(values, edges: list[float]) -> tuple[list[float], float]:
    """(share of non-missing rows per bin, share of missing rows); bin i is (edges[i-1], edges[i]]."""
    values = np.asarray(values, dtype=np.float64)
    n = max(values.size, 1)
    missing = ~np.isfinite(values)
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), values[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return [float(c) / n for c in counts], float(missing.sum()) / n


def feature_bins(table: pd.DataFrame, feature_names) -> dict:
    out = {}
    for name in feature_names:
        values = table[name].to_numpy(np.float64)
        edges = _edges(values)
        bin_shares, nan_share = shares(values, edges)
        out[name] = {"edges": edges, "shares": bin_shares, "nan_share": nan_share}
    return out


def psi(expected: list[float], actual: list[float]) -> float:
    e = np.clip(np.asarray(expected, dtype=np.float64), EPS, None)
    a = np.clip(np.asarray(actual, dtype=np.float64), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(bins: dict, live: pd.DataFrame, threshold: float = ALERT_PSI) -> pd.DataFrame:
    """One row per feature: PSI of ``live`` against the stored training bins, sorted worst first."""
    rows = []
    for name, ref in bins.items():
        if name not in live.columns:
            continue
        bin_shares, nan_share = shares(live[name].to_numpy(np.float64), ref["edges"])
        value = psi([*ref["shares"], ref["nan_share"]], [*bin_shares, nan_share])
        rows.append({"feature": name, "psi": value, "alert": value > threshold,
                     "train_nan_share": ref["nan_share"], "live_nan_share": nan_share})
    report = pd.DataFrame(rows, columns=["feature", "psi", "alert", "train_nan_share",
                                         "live_nan_share"])
    return report.sort_values("psi", ascending=False, kind="stable").reset_index(drop=True)


def decision_features(lake_dir: Path, window_ms: int, until_ts: int | None = None,
                      model_version: str | None = None) -> pd.DataFrame:
    """The feature values the stream recorded with its acting decisions in the last
    ``window_ms`` before ``until_ts`` (default: the latest decision in the lake)."""
    con = lake.connect(lake_dir, topics=["decisions"])
    where = "NOT shadow"
    params: list = []
    if model_version:
        where += " AND model_version = ?"
        params.append(model_version)
    end = until_ts if until_ts is not None else con.execute(
        f"SELECT max(ts) FROM decisions WHERE {where}", params).fetchone()[0]
    if end is None:
        return pd.DataFrame()
    rows = con.execute(f"SELECT features FROM decisions WHERE {where} AND ts > ? AND ts <= ?",
                       [*params, end - window_ms, end]).fetchall()
    records = [json.loads(r[0]) if r[0] else {} for r in rows]
    return pd.DataFrame.from_records(records).astype("float64") if records else pd.DataFrame()

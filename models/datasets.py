"""Point-in-time training sets from the lake: ``training_set(lake, cutoff, maturity)``.

Features from the replay of the events before the cut-off T, labels as known at T, transfers
younger than the maturity M at T left out (their labels are not in yet). The default cut-off is
the lake's horizon (``lake_horizon``). Why: docs/models.md, "Point in time".
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import duckdb
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

from models.labels import label_transfers, scenario_of
from models.tables import feature_table, labels_table
from pipelines.lake.event_log import FEATURE_TOPICS

DAY_MS = 86_400_000
DEFAULT_MATURITY_DAYS = 14.0


def lake_horizon(lake_dir: Path) -> Optional[int]:
    """The latest event time or label ``known_at`` in the lake (None for an empty lake).

    The lake is foldered by event hour, so a topic's latest event is in its newest hour's
    folder: only that one is read (4 s -> 0.1 s on a 1M-transfer lake). ``known_at`` is not the
    folder key, so the labels (a small topic) are read whole for it."""
    lake_dir = Path(lake_dir)
    parts = []
    for topic in FEATURE_TOPICS:
        newest = next((h for h in sorted((lake_dir / topic).glob("hour=*"), reverse=True)
                       if any(h.glob("*.parquet"))), None)
        if newest is not None:
            parts.append(f"SELECT max(ts) AS t FROM read_parquet('{newest}/*.parquet')")
            if topic == "labels":
                parts.append("SELECT max(known_at) AS t FROM "
                             f"read_parquet('{lake_dir / topic}/hour=*/*.parquet')")
    if not parts:
        return None
    return duckdb.connect().execute(f"SELECT max(t) FROM ({' UNION ALL '.join(parts)})").fetchone()[0]


def training_set(lake_dir: Path, cutoff_ms: Optional[int] = None,
                 maturity_ms: int = int(DEFAULT_MATURITY_DAYS * DAY_MS),
                 features: Optional[Path] = None, workers: int = 1,
                 progress: Optional[bool] = None) -> tuple[pd.DataFrame, dict]:
    """The point-in-time training table as of ``cutoff_ms`` (default: the lake's horizon):
    ids, event time, features, ``label`` (as known at the cut-off) and ``scenario``.

    ``features``: a feature table already replayed from this lake (``vigie replay --out``);
    the replay is then not run again. A transfer's features only use what came before it (the
    leakage test proves it), so the rows of a replay run past the cut-off equal those of a
    replay stopped there; rows after the cut-off are left out with the immature ones.
    ``workers``, ``progress``: the replay's (``models.tables.feature_table``)."""
    lake_dir = Path(lake_dir)
    horizon = lake_horizon(lake_dir)
    if horizon is None:
        raise ValueError(f"the lake {lake_dir} holds no events")
    cutoff = horizon if cutoff_ms is None else int(cutoff_ms)
    if features is None:
        # events up to the cut-off
        table, stats = feature_table(lake_dir, until_ts=cutoff + 1, workers=workers,
                                     progress=progress)
    else:
        started = time.perf_counter()
        table = read_features(features, until_ts=cutoff + 1)
        stats = {"features": str(features), "transfers": len(table),
                 "load_s": time.perf_counter() - started}
    return point_in_time(table, lake_dir, cutoff, maturity_ms, stats)


def read_features(path: Path, until_ts: Optional[int] = None) -> pd.DataFrame:
    """A replayed feature table (Parquet), only the rows with ``ts < until_ts``."""
    table = pq.read_table(path)  # then filter, only if needed: filters= took 3 s on 1M rows
    if until_ts is not None and pc.max(table["ts"]).as_py() >= until_ts:
        table = table.filter(pc.less(table["ts"], int(until_ts)))
    return table.to_pandas(self_destruct=True)  # frees Arrow's buffers as it converts


def point_in_time(table: pd.DataFrame, lake_dir: Path, cutoff: int, maturity_ms: int,
                  stats: dict) -> tuple[pd.DataFrame, dict]:
    """Labels as known at ``cutoff`` on the replayed ``table``; immature transfers left out."""
    started = time.perf_counter()
    labels = labels_table(lake_dir)
    known = labels[labels["known_at"] <= cutoff]
    mature_before = cutoff - maturity_ms
    immature = int((table["ts"] > mature_before).sum())
    table = table[table["ts"] <= mature_before].reset_index(drop=True)
    table["label"] = label_transfers(table, known).to_numpy()
    table["scenario"] = scenario_of(table, known).to_numpy()
    stats.update(cutoff_ms=cutoff, maturity_ms=maturity_ms, left_out_immature=immature,
                 rows=len(table), frauds=int(table["label"].sum()),
                 labels_known=len(known), labels_after_cutoff=len(labels) - len(known),
                 labels_s=time.perf_counter() - started)
    return table, stats

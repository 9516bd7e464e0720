"""A lake as tables: its replayed features (``vigie replay``) and its labels.

The feature table comes only from the replay, which runs the stream's own feature code over the
lake in event-time order: training sees exactly what the stream would have seen.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import msgspec
import numpy as np
import pandas as pd

from features.replay import replay
from features.vector import FEATURE_NAMES
from pipelines.contracts.schemas import TransferRequested
from pipelines.lake.event_log import read_log, read_topic

ID_COLUMNS = ["transfer_id", "ts", "sender", "recipient", "amount_cents"]


def feature_table(lake_dir: Path, until_ts: Optional[int] = None,
                  workers: int = 1) -> tuple[pd.DataFrame, dict]:
    """One row per transfer: ids, event time, amount, and every feature in FEATURE_NAMES order.
    ``workers`` > 1 shards the entities over that many forked processes (``features.replay``):
    the same rows, ~1.4x faster with 2 on 2 cores (docs/benchmarks.md)."""
    started = time.perf_counter()
    events = read_log(lake_dir, until_ts=until_ts)
    loaded = time.perf_counter()
    # one float64 matrix filled row by row: a list of Python floats per transfer took ~5.6 KB a
    # row (10 GB for 1.75M transfers), the matrix takes 8 bytes a value
    values = np.empty((sum(type(e) is TransferRequested for e in events), len(FEATURE_NAMES)))
    ids = []
    for i, row in enumerate(replay(events, presorted=True, workers=workers)):
        tr = row.transfer
        ids.append((tr.transfer_id, tr.ts, tr.sender, tr.recipient, tr.amount_cents))
        values[i] = np.fromiter(row.features.values(), np.float64, len(FEATURE_NAMES))
    done = time.perf_counter()
    table = pd.concat([pd.DataFrame(ids, columns=ID_COLUMNS),
                       pd.DataFrame(values, columns=list(FEATURE_NAMES), copy=False)], axis=1)
    stats = {"events": len(events), "transfers": len(table), "load_s": loaded - started,
             "replay_s": done - loaded, "replay_workers": workers,
             "replay_events_per_s": len(events) / (done - loaded) if done > loaded else 0.0}
    return table, stats


def labels_table(lake_dir: Path) -> pd.DataFrame:
    """The lake's labels, one row each, in the columns ``models.labels`` reads."""
    labels = read_topic(lake_dir, "labels")
    columns = ["kind", "account", "transfer_id", "is_fraud", "ts", "known_at",
               "compromise_from_ts", "compromise_to_ts", "scenario"]
    return pd.DataFrame([msgspec.structs.asdict(l) for l in labels] or None, columns=columns)

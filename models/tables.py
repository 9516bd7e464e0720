"""A lake as tables: its replayed features (``vigie replay``) and its labels.

The feature table comes only from the replay, which runs the stream's own feature code over the
lake in event-time order: training sees exactly what the stream would have seen. The lake is
streamed (``pipelines.lake.event_log.LakeLog``), so the replay's memory is its states (packed
into the stream's bytes once not used for a while: ``features.packed_states``) and a few
batches, not the log; ``feature_chunks`` hands the rows on in chunks (``vigie replay --out``
writes them as they come), ``feature_table`` gathers them into one table.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from features.replay import replay
from features.vector import FEATURE_NAMES
from pipelines.lake.event_log import BATCH_ROWS, LakeLog, read_topic

ID_COLUMNS = ["transfer_id", "ts", "sender", "recipient", "amount_cents"]
CHUNK_ROWS = 50_000  # transfers per chunk of the feature table (~70 MB of float64)


def feature_chunks(lake_dir: Path, until_ts: Optional[int] = None, workers: int = 1,
                   progress: Optional[bool] = None, stats: Optional[dict] = None,
                   chunk_rows: int = CHUNK_ROWS, batch_rows: int = BATCH_ROWS
                   ) -> Iterator[pd.DataFrame]:
    """The feature table of the events before ``until_ts``, ``chunk_rows`` transfers at a time.
    ``workers`` > 1 shards the entities over that many forked processes (``features.replay``):
    the same rows. ``progress``: a bar on stderr (None: only on a terminal). ``stats`` gets the
    counts and timings once the chunks are all read."""
    stats = {} if stats is None else stats
    started = time.perf_counter()
    log = LakeLog(lake_dir, until_ts, batch_rows=batch_rows)
    rows = replay(log, workers=workers, stats=stats)
    bar = tqdm(total=log.count("transfer-requests"), unit=" transfers", desc="replay",
               file=sys.stderr, disable=None if progress is None else not progress)
    transfers = 0
    with bar:
        while (chunk := _chunk(rows, chunk_rows, bar)) is not None:
            transfers += len(chunk)
            yield chunk
    elapsed = time.perf_counter() - started
    events = stats.get("events", 0)
    stats.update(transfers=transfers, replay_s=elapsed, replay_workers=workers,
                 replay_events_per_s=events / elapsed if elapsed > 0 else 0.0)


def feature_table(lake_dir: Path, until_ts: Optional[int] = None, workers: int = 1,
                  progress: Optional[bool] = None, chunk_rows: int = CHUNK_ROWS,
                  batch_rows: int = BATCH_ROWS) -> tuple[pd.DataFrame, dict]:
    """One row per transfer: ids, event time, amount, and every feature in FEATURE_NAMES order
    (``feature_chunks``, gathered)."""
    stats: dict = {}
    chunks = list(feature_chunks(lake_dir, until_ts, workers, progress, stats,
                                 chunk_rows, batch_rows))
    table = (pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else
             chunks[0] if chunks else _frame([], np.empty((0, len(FEATURE_NAMES)))))
    return table, stats


def write_features(lake_dir: Path, out: Path, workers: int = 1,
                   progress: Optional[bool] = None) -> dict:
    """``vigie replay --out``: the feature table written to Parquet chunk by chunk (the same
    table ``feature_table`` returns), to a temporary name renamed when complete."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    stats: dict = {}
    writer = None
    try:
        for chunk in feature_chunks(lake_dir, workers=workers, progress=progress, stats=stats):
            batch = pa.Table.from_pandas(chunk, preserve_index=False)
            writer = writer or pq.ParquetWriter(partial, batch.schema)
            writer.write_table(batch)
        if writer is None:  # no transfer: an empty table, with its columns
            _frame([], np.empty((0, len(FEATURE_NAMES)))).to_parquet(partial, index=False)
    except BaseException:
        partial.unlink(missing_ok=True)  # a replay cut short leaves no half table behind
        raise
    finally:
        if writer is not None:
            writer.close()
    partial.replace(out)
    return stats


def _chunk(rows, size: int, bar: tqdm) -> Optional[pd.DataFrame]:
    # one float64 matrix filled row by row: a list of Python floats per transfer took ~5.6 KB a
    # row (10 GB for 1.75M transfers), the matrix takes 8 bytes a value
    values = np.empty((size, len(FEATURE_NAMES)))
    ids = []
    for i, row in zip(range(size), rows):
        tr = row.transfer
        ids.append((tr.transfer_id, tr.ts, tr.sender, tr.recipient, tr.amount_cents))
        values[i] = np.fromiter(row.features.values(), np.float64, len(FEATURE_NAMES))
        bar.update()
    return _frame(ids, values[:len(ids)]) if ids else None


def _frame(ids: list, values: np.ndarray) -> pd.DataFrame:
    return pd.concat([pd.DataFrame(ids, columns=ID_COLUMNS),
                      pd.DataFrame(values, columns=list(FEATURE_NAMES), copy=False)], axis=1)


def labels_table(lake_dir: Path) -> pd.DataFrame:
    """The lake's labels, one row each, in the columns ``models.labels`` reads."""
    labels = read_topic(lake_dir, "labels")
    columns = ["kind", "account", "transfer_id", "is_fraud", "ts", "known_at",
               "compromise_from_ts", "compromise_to_ts", "scenario"]
    return pd.DataFrame([msgspec.structs.asdict(l) for l in labels] or None, columns=columns)

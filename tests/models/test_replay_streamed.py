"""The replay streams the lake (``LakeLog``) in chunks: the same rows as the whole log held in
memory (the replay before streaming), whatever the chunk and batch sizes, sharded or not."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

import models.datasets
from features.replay import replay
from features.vector import FEATURE_NAMES
from models.datasets import DAY_MS, lake_horizon, training_set
from models.tables import ID_COLUMNS, feature_table, write_features
from pipelines.lake.event_log import LakeLog, read_log
from pipelines.simulator.offline import run_offline


@pytest.fixture(scope="module")
def small_lake(tmp_path_factory):
    out = tmp_path_factory.mktemp("streamed") / "lake"
    run_offline(out, seed=3, users=400, days=4)
    return out


def in_memory_table(lake_dir, until_ts=None, workers=1) -> tuple[pd.DataFrame, dict]:
    """The feature table as it was made before streaming: every event read into one list,
    sorted, replayed."""
    events = read_log(lake_dir, until_ts=until_ts)
    ids, values = [], []
    for row in replay(events, presorted=True, workers=workers):
        tr = row.transfer
        ids.append((tr.transfer_id, tr.ts, tr.sender, tr.recipient, tr.amount_cents))
        values.append(np.fromiter(row.features.values(), np.float64, len(FEATURE_NAMES)))
    return pd.concat([pd.DataFrame(ids, columns=ID_COLUMNS),
                      pd.DataFrame(np.array(values), columns=list(FEATURE_NAMES))], axis=1), \
        {"events": len(events)}


def test_many_small_chunks_give_the_rows_of_the_whole_log(small_lake):
    expected, before = in_memory_table(small_lake)
    assert len(expected) > 1000
    one_chunk, stats = feature_table(small_lake, chunk_rows=10**6, batch_rows=10**6)
    # 57 transfers a chunk, 101 rows a read batch: dozens of chunks, hundreds of batches; with
    # the progress bar drawn (on stderr)
    many, many_stats = feature_table(small_lake, chunk_rows=57, batch_rows=101, progress=True)
    pd.testing.assert_frame_equal(one_chunk, expected)
    pd.testing.assert_frame_equal(many, expected)
    assert stats["events"] == many_stats["events"] == before["events"]
    assert stats["transfers"] == len(expected)


def test_a_cut_off_lake_and_a_sharded_one_give_the_same_rows(small_lake):
    until = (lake_horizon(small_lake) + read_log(small_lake)[0].ts) // 2
    expected, _ = in_memory_table(small_lake, until_ts=until)
    assert 100 < len(expected)
    for workers in (1, 3):
        table, stats = feature_table(small_lake, until_ts=until, workers=workers,
                                     chunk_rows=64, batch_rows=200)
        pd.testing.assert_frame_equal(table, expected)
        assert stats["replay_workers"] == workers and stats["transfers"] == len(expected)


def test_events_stored_twice_are_replayed_once(small_lake, tmp_path):
    """At-least-once delivery may store an event twice: the copies are dropped as they
    stream, as the whole-log reader drops them by id."""
    twice = tmp_path / "lake"
    shutil.copytree(small_lake, twice)
    for topic in ("transfer-requests", "messages", "labels"):
        for path in sorted((twice / topic).glob("hour=*/*.parquet"))[::3]:
            shutil.copy(path, path.with_name("again-" + path.name))
    assert len(list(LakeLog(twice, batch_rows=50))) == len(read_log(small_lake)) \
        < LakeLog(twice).count()
    pd.testing.assert_frame_equal(feature_table(twice, chunk_rows=100, batch_rows=50)[0],
                                  in_memory_table(small_lake)[0])


def test_the_training_set_rows_are_those_of_the_whole_log(small_lake, monkeypatch):
    cutoff = lake_horizon(small_lake) - DAY_MS
    streamed, _ = training_set(small_lake, cutoff, DAY_MS)
    monkeypatch.setattr(models.datasets, "feature_table",
                        lambda lake, until_ts, **_: in_memory_table(lake, until_ts))
    before, _ = training_set(small_lake, cutoff, DAY_MS)
    assert len(before) > 500 and before["label"].sum() > 0
    pd.testing.assert_frame_equal(streamed, before)


def test_vigie_replay_writes_the_table_of_the_whole_log(small_lake, tmp_path):
    """`vigie replay --out` writes its chunks as they come: the file holds the table the
    replay wrote whole before."""
    expected, _ = in_memory_table(small_lake)
    expected.to_parquet(tmp_path / "before.parquet", index=False)
    stats = write_features(small_lake, tmp_path / "features.parquet", workers=2)
    assert stats["transfers"] == len(expected)
    assert not (tmp_path / "features.parquet.partial").exists()
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "features.parquet"),
                                  pd.read_parquet(tmp_path / "before.parquet"))

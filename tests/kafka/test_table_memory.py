"""The RocksDB memory of a process is one bound (``tables.Memory``), shared by every table
partition it opens: data, index and filter blocks and the memtables all count in it."""
import os

import faust
import pytest

from pipelines.kafka import tables

MB = 1 << 20


@pytest.fixture
def small_bound(monkeypatch):
    monkeypatch.setenv("VIGIE_ROCKSDB_MEMORY_MB", "16")
    monkeypatch.setattr(tables, "_memory", None)
    yield tables.memory()
    monkeypatch.setattr(tables, "_memory", None)


def test_partitions_share_one_bounded_cache(small_bound, tmp_path):
    options = tables.Options(**tables.store_options(), use_rocksdict=True)
    dbs = [options.open(tmp_path / f"p{i}") for i in range(4)]
    value = os.urandom(1024)  # incompressible: the blocks are as big as the data
    for n in range(48_000):  # 48 MB over the four databases: three times the bound
        dbs[n % 4][n.to_bytes(4, "big")] = value
    seen = 0
    for n in range(0, 48_000, 3):  # reads fill the cache from the files
        seen += dbs[n % 4][n.to_bytes(4, "big")] == value
    used = small_bound.usage()
    for db in dbs:
        db.close()
    assert seen == 16_000
    # Each database with its own cache (Faust's options) would leave the shared one empty.
    # Both limits are soft in RocksDB: memtables flush once past their half, and pinned blocks
    # (the memtables' reservations, level-0 index and filter blocks) may pass the capacity a
    # little; three times the bound in data stays within a quarter of it.
    assert 0 < used["memtables"] <= 8 * MB * 1.4, used
    assert 4 * MB < used["cache"] <= 16 * MB * 1.25, used


def test_the_apps_tables_are_on_the_bounded_store(small_bound, tmp_path):
    app = faust.App("memory-test", store=tables.STORE_URL, datadir=str(tmp_path))
    table = tables.raw_table(app, "states")
    assert isinstance(table.data, tables.Store)
    assert isinstance(table.data.rocksdb_options, tables.Options)

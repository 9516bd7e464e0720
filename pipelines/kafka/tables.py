"""Faust topics and tables of raw bytes: the stream stages serialise their own values (msgpack),
once, instead of through Faust's codecs. Every table is a RocksDB store (``Store``) whose
memory is bounded for the whole process, however many tables and partitions it holds."""
from __future__ import annotations

from typing import Optional

import rocksdict
from faust.stores import rocksdb as faust_rocksdb
from faust.stores import STORES

from pipelines.contracts import settings
from pipelines.kafka import delivery

STORE_URL = "vigie-rocksdb://"  # the apps' ``store``: this module's ``Store``


class Memory:
    """The RocksDB memory of one process: one LRU block cache shared by every table partition,
    holding data blocks, index and filter blocks, and (charged to it by one write buffer
    manager) the memtables, at most half of it.

    Why: Faust gives each partition's database its own cache and memtables, and leaves index
    and filter blocks outside any cache, so a worker's memory grew with its partitions and with
    the state on disk (the soak bench, docs/benchmarks.md#soak). Here the bound is one number,
    ``VIGIE_ROCKSDB_MEMORY_MB``, whatever the partitions a worker is given. It can be small:
    a state is a few hundred bytes, and the operating system's page cache keeps the table files
    too (RocksDB's cache saves a read and a copy, not a disk seek)."""

    def __init__(self, capacity_bytes: int):
        self.capacity = capacity_bytes
        self.cache = rocksdict.Cache(capacity_bytes)
        self.memtables = rocksdict.WriteBufferManager.new_write_buffer_manager_with_cache(
            capacity_bytes // 2, False, self.cache)

    def usage(self) -> dict[str, int]:
        """Bytes in use: the cache's (memtables included) and the memtables'."""
        return {"cache": self.cache.get_usage(), "memtables": self.memtables.get_usage()}


_memory: Memory | None = None


def memory() -> Memory:
    """This process's RocksDB memory (made on first use, sized by the settings)."""
    global _memory
    if _memory is None:
        _memory = Memory(settings.environment().stream.rocksdb_memory_mb << 20)
    return _memory


def current_memory() -> Memory | None:
    """This process's RocksDB memory if it has opened a table, else None."""
    return _memory


class Options(faust_rocksdb.RocksDBOptions):
    """Faust's options for one partition's database, on the process's shared ``Memory``."""

    def as_options(self) -> rocksdict.Options:
        shared = memory()
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_max_open_files(self.max_open_files)
        options.set_write_buffer_size(self.write_buffer_size)
        options.set_max_write_buffer_number(self.max_write_buffer_number)
        options.set_target_file_size_base(self.target_file_size_base)
        options.set_write_buffer_manager(shared.memtables)
        blocks = rocksdict.BlockBasedOptions()
        blocks.set_bloom_filter(self.bloom_filter_size, True)
        blocks.set_block_cache(shared.cache)
        blocks.set_cache_index_and_filter_blocks(True)  # counted in the bound, not beside it
        blocks.set_pin_l0_filter_and_index_blocks_in_cache(True)  # the hot ones stay
        blocks.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        options.set_block_based_table_factory(blocks)
        return options


class Store(faust_rocksdb.Store):
    """Faust's RocksDB store with ``Options``: the same files, changelogs and recovery."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.use_rocksdict:
            raise RuntimeError("Vigie's tables need the rocksdict driver")
        self.rocksdb_options = Options(**self.options, use_rocksdict=True)


STORES.aliases["vigie-rocksdb"] = f"{__name__}:Store"


def store_options() -> dict:
    """Sizes for one table partition (a fresh dict: Faust's store pops keys from it): small
    memtables, flushed sooner, inside the shared bound (``Memory``)."""
    return {"write_buffer_size": 4 << 20, "max_write_buffer_number": 2,
            "target_file_size_base": 8 << 20}


def raw_topic(app, name: str):
    return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw")


def raw_table(app, name: str, **kwargs):
    """A table of bytes to bytes, partitioned like its input topic."""
    table = app.Table(name, key_type=bytes, value_type=bytes, options=store_options(), **kwargs)
    table.key_serializer = table.value_serializer = "raw"
    return table


def raw_global_table(app, name: str):
    """A table of bytes to bytes on one partition, read whole by every worker (Faust's advice
    for global tables: control documents, flags every partition needs)."""
    table = app.GlobalTable(name, key_type=bytes, value_type=bytes, partitions=1,
                            recovery_buffer_size=1, use_partitioner=True, options=store_options())
    table.key_serializer = table.value_serializer = "raw"
    return table


class PartitionStore:
    """One Faust table read and written a partition at a time, past Faust's per-key path.

    A read is one RocksDB get in the partition's database. A write of many keys is one RocksDB
    write batch, and their changelog records in a few produce batches (aiokafka's batch API),
    where Faust's table spends per key: its store layers, a put, a buffered send, a task, and a
    second put for the changelog offset. The records and the offset are the ones Faust writes,
    so recovery, standbys and rebalancing stay Faust's. Why: docs/stream.md#entity-state-writes
    """

    def __init__(self, table):
        self.table = table

    def read(self, partition: int, key: bytes) -> Optional[bytes]:
        return self.table.data._db_for_partition(partition).get(key)

    async def write(self, partition: int, changes: dict[bytes, Optional[bytes]]) -> None:
        """Write ``changes`` (None: delete the key) to ``partition``: RocksDB first, then the
        changelog, as Faust does. Once this returns the records are in the producer's
        buffers, which Faust flushes before it commits any input offset."""
        if not changes:
            return
        store = self.table.data
        writes = rocksdict.WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                writes.delete(key)
            else:
                writes.put(key, value)
        store._db_for_partition(partition).write(writes)
        producer = self.table.app.producer._ensure_producer()  # aiokafka's
        topic = self.table.changelog_topic.get_topic_name()
        batch = producer.create_batch()
        for key, value in changes.items():
            if batch.append(key=key, value=value, timestamp=None) is None:  # full
                await self._send(producer, batch, topic, partition)
                batch = producer.create_batch()
                batch.append(key=key, value=value, timestamp=None)
        await self._send(producer, batch, topic, partition)

    async def _send(self, producer, batch, topic: str, partition: int) -> None:
        count = batch.record_count()
        batch.close()  # sent now, not after the producer's linger
        sent = await producer.send_batch(batch, topic, partition=partition)

        def persisted(future) -> None:
            """What Faust's table does on each changelog record sent: the last offset written,
            kept in the partition's RocksDB, where recovery starts reading the changelog."""
            if future.cancelled():  # the producer stopped: so does the worker
                return
            if future.exception() is not None:  # RocksDB is ahead of its changelog
                delivery.stop(f"changelog {topic}[{partition}] ({count} records)",
                              future.exception())
            self.table.data.set_persisted_offset(future.result().topic_partition,
                                                 future.result().offset + count - 1)

        sent.add_done_callback(persisted)


class MemoryStore(dict):
    """``PartitionStore``'s interface on a dict, every partition in one (tests and benchmarks
    of the stages without Kafka)."""

    def read(self, partition: int, key: bytes) -> Optional[bytes]:
        return self.get(key)

    async def write(self, partition: int, changes: dict[bytes, Optional[bytes]]) -> None:
        for key, value in changes.items():
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value

"""Faust topics and tables of raw bytes: the stream stages serialise their own values (msgpack),
once, instead of through Faust's codecs. Every table is a RocksDB store with ``store_options``."""


def store_options() -> dict:
    """RocksDB sizes for one table partition (a fresh dict: Faust's store pops keys from it).

    Faust's defaults are for large dedicated hosts: three 64 MB memtables and a 2 GB block
    cache per partition's database, so a worker's memory grew by ~300 MB an hour as they filled
    (the soak bench, docs/benchmarks.md). Vigie's state is small and read mostly through the
    table's own cache, so small memtables and a small block cache cost little speed."""
    return {"write_buffer_size": 4 << 20, "max_write_buffer_number": 2,
            "target_file_size_base": 8 << 20, "block_cache_size": 8 << 20}


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

"""The lake: append-only Parquet, one folder per topic, one sub-folder per event hour.

Layout::

    <lake>/<topic>/hour=2026-11-27T14/<name>.parquet

``write_batch`` writes a file atomically (a reader sees a whole file or none); the sink names
files after the Kafka offsets they hold (``p<partition>-<first>-<last>``), so a rewrite
replaces instead of duplicating. ``compact`` merges a closed hour's files into one per
partition. ``connect`` gives DuckDB views, one per topic, over the files present at query time.

>>> hour_of(1_795_788_000_000), view_name("transfer-requests")
('2026-11-27T14', 'transfer_requests')

Why: docs/lake.md#parquet
"""
from __future__ import annotations

import datetime as dt
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.contracts.topics import TOPICS

SINK_FILE = re.compile(r"^p(\d+)-(\d+)-(\d+)\.parquet$")  # partition, first and last offset
KAFKA_COLUMNS = [pa.field("_partition", pa.int32()), pa.field("_offset", pa.int64())]
_SIMPLE = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _arrow_type(info: msgspec.inspect.Type) -> tuple[pa.DataType, bool]:
    """(arrow type, stored as JSON text?) for one msgspec field type."""
    if isinstance(info, msgspec.inspect.UnionType):
        members = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        return _arrow_type(members[0]) if len(members) == 1 else (pa.string(), True)
    if isinstance(info, msgspec.inspect.LiteralType):
        return (pa.int64(), False) if isinstance(info.values[0], int) else (pa.string(), False)
    for cls, arrow in ((msgspec.inspect.StrType, pa.string()), (msgspec.inspect.IntType, pa.int64()),
                       (msgspec.inspect.FloatType, pa.float64()), (msgspec.inspect.BoolType, pa.bool_())):
        if isinstance(info, cls):
            return arrow, False
    return pa.string(), True  # lists, dicts, nested structs: JSON text, queryable with DuckDB's json


class TopicTable:
    """How one topic's events become an Arrow table with a fixed schema."""

    def __init__(self, topic: str, with_kafka_columns: bool):
        info = msgspec.inspect.type_info(TOPICS[topic].schema)
        self.topic = topic
        self.fields = [f.name for f in info.fields]
        typed = [(f.name, *_arrow_type(f.type)) for f in info.fields]
        self.json_fields = {name for name, _, as_json in typed if as_json}
        fields = [pa.field(name, arrow) for name, arrow, _ in typed]
        self.schema = pa.schema(fields + (KAFKA_COLUMNS if with_kafka_columns else []))
        self._json = msgspec.json.Encoder()

    def to_arrow(self, events: Sequence[msgspec.Struct],
                 partitions: Optional[Sequence[int]] = None,
                 offsets: Optional[Sequence[int]] = None) -> pa.Table:
        columns = {}
        for name in self.fields:
            values = [getattr(e, name) for e in events]
            if name in self.json_fields:
                values = [None if v is None else self._json.encode(v).decode() for v in values]
            columns[name] = values
        if partitions is not None:
            columns["_partition"], columns["_offset"] = list(partitions), list(offsets)
        return pa.table(columns, schema=self.schema)


HOUR_FORMAT = "%Y-%m-%dT%H"  # the hour=... folders, in UTC


def hour_of(ts_ms: int) -> str:
    return dt.datetime.fromtimestamp(ts_ms / 1000, dt.timezone.utc).strftime(HOUR_FORMAT)


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write a Parquet file so that readers see all of it or none of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # No statistics timestamp, fixed writer settings: the same rows give the same bytes.
    pq.write_table(table, tmp, compression="zstd", write_statistics=True, use_dictionary=True)
    os.replace(tmp, path)


def write_batch(lake_dir: Path, topic: str, table: TopicTable, events: Sequence[msgspec.Struct],
                name: str, partitions=None, offsets=None) -> list[Path]:
    """Write a batch of one topic's events, split by event hour; returns the files written.
    ``name`` is the file stem; it must be unique per batch and stable under replay."""
    by_hour: dict[str, list[int]] = {}
    for i, event in enumerate(events):
        by_hour.setdefault(hour_of(event.ts), []).append(i)
    written = []
    for hour, idx in sorted(by_hour.items()):
        subset = [events[i] for i in idx]
        parts = [partitions[i] for i in idx] if partitions is not None else None
        offs = [offsets[i] for i in idx] if offsets is not None else None
        path = lake_dir / topic / f"hour={hour}" / f"{name}.parquet"
        write_atomic(table.to_arrow(subset, parts, offs), path)
        written.append(path)
    return written


def _hour_start_ms(folder: Path) -> Optional[int]:
    try:
        start = dt.datetime.strptime(folder.name.removeprefix("hour="), HOUR_FORMAT)
    except ValueError:
        return None
    return int(start.replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


def compact(lake_dir: Path, closed_before_ms: int) -> dict[str, int]:
    """Merge the sink's files of every hour that ended before ``closed_before_ms`` into one
    file per partition, named after the offsets it spans, so the sink still skips what the
    lake holds. The merged file is renamed into place before its inputs are deleted: a reader
    in between sees some rows twice, never a row missing (the event log's readers drop
    duplicates by event id). Late events that land in a closed hour later are merged on the
    next run. Returns counts of files merged and written."""
    merged = written = 0
    for folder in sorted(Path(lake_dir).glob("*/hour=*")):
        start = _hour_start_ms(folder)
        if start is None or start + 3_600_000 > closed_before_ms:
            continue
        by_partition: dict[int, list[tuple[int, int, Path]]] = {}
        for path in folder.glob("p*.parquet"):
            match = SINK_FILE.match(path.name)
            if match:
                partition, first, last = map(int, match.groups())
                by_partition.setdefault(partition, []).append((first, last, path))
        for partition, files in sorted(by_partition.items()):
            if len(files) < 2:
                continue
            try:  # another compaction (a second sink) may have merged them meanwhile
                table = pa.concat_tables([pq.read_table(path) for _, _, path in files],
                                         promote_options="default")
            except (FileNotFoundError, OSError):
                continue
            if "_offset" in table.column_names:
                table = table.sort_by("_offset")
            first, last = min(f for f, _, _ in files), max(l for _, l, _ in files)
            target = folder / f"p{partition}-{first:012d}-{last:012d}.parquet"
            write_atomic(table, target)
            for _, _, path in files:
                if path != target:
                    path.unlink(missing_ok=True)
            merged += len(files)
            written += 1
    return {"files_merged": merged, "files_written": written}


# --- reading ---------------------------------------------------------------------------------
def view_name(topic: str) -> str:
    return topic.replace("-", "_")


def has_data(lake_dir: Union[str, Path], topic: str) -> bool:
    """Whether the topic has at least one Parquet file (stops at the first one found)."""
    return any((Path(lake_dir) / topic).glob("hour=*/*.parquet"))


# A topic whose records have an identity of their own, and the columns that hold it. A record
# the worker reads twice (redelivered after a rebalance or a crash) is dead-lettered twice, at
# two dead-letters offsets: its source position says it is one bad record, so its view shows it
# once.
IDENTITY = {"dead-letters": ("topic", "partition", "offset")}


class RowCounts:
    """Rows written per topic, from the Parquet footers alone (duplicates from redelivery
    included). Files are written once and atomically, so each footer is read once: a progress
    line every few seconds costs a directory listing, not a scan of the lake (a DuckDB count
    of every topic every 10 s grew ``vigie run``'s memory by ~200 MB an hour)."""

    def __init__(self, lake_dir: Union[str, Path]):
        self.lake_dir = Path(lake_dir)
        self.rows: dict[Path, int] = {}

    def __call__(self, topics: Iterable[str]) -> dict[str, int]:
        counts, present = {}, {}
        for topic in topics:
            files = list((self.lake_dir / topic).glob("hour=*/*.parquet"))
            for f in files:
                present[f] = self.rows.get(f)
                if present[f] is None:
                    present[f] = pq.read_metadata(f).num_rows
            counts[topic] = sum(present[f] for f in files)
        self.rows = present  # files compacted away are forgotten
        return counts


def connect(lake_dir: Union[str, Path], topics: Iterable[str] = TOPICS):
    """An in-memory DuckDB connection with one view per topic that has data.

    Every view reads the Parquet files present at query time; nothing is locked, so any
    number of readers can run beside the writers. Views of topics with no files yet are
    empty tables with the topic's columns, so queries never fail on a young lake.
    """

    lake_dir = Path(lake_dir)
    con = duckdb.connect(":memory:")
    for topic in topics:
        name = view_name(topic)
        if has_data(lake_dir, topic):
            pattern = str(lake_dir / topic / "hour=*" / "*.parquet")
            once = ""
            if topic in IDENTITY:
                columns = ", ".join(f'"{c}"' for c in IDENTITY[topic])
                once = f" QUALIFY row_number() OVER (PARTITION BY {columns} ORDER BY ts) = 1"
            con.execute(f"CREATE VIEW {name} AS SELECT * EXCLUDE (hour) FROM read_parquet("
                        f"'{pattern}', hive_partitioning=true, union_by_name=true){once}")
        else:
            empty = TopicTable(topic, with_kafka_columns=True).schema.empty_table()
            # A table in the database, not a registered Arrow object: cursors see it too.
            con.register("_empty", empty)
            con.execute(f"CREATE TABLE _{name}_empty AS SELECT * FROM _empty")
            con.unregister("_empty")
            con.execute(f"CREATE VIEW {name} AS SELECT * FROM _{name}_empty")
    return con


@contextmanager
def transaction(db: duckdb.DuckDBPyConnection):
    """A cursor on ``db`` whose statements count all or none: committed at the end, rolled back
    if anything raised (an index reading a batch of files must not count any twice on a retry)."""
    cursor = db.cursor()
    try:
        cursor.execute("BEGIN TRANSACTION")
        yield cursor
        cursor.execute("COMMIT")
    except Exception:
        cursor.execute("ROLLBACK")
        raise
    finally:
        cursor.close()

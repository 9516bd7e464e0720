"""What the review queue reads, kept in memory: every row of ``transfer-status``, ``decisions`` and
``transfer-requests`` about a transfer that was ever held (or cancelled), and nothing else.

``common.HELD_SQL`` narrows every scan of those three topics to the transfers ever held (its
``ever``, defined here as ``EVER_SQL``), so it gives the same queue on these rows as on the whole
lake, in milliseconds instead of three full scans (and so does the overview's ``HEEDED_SQL``, to
the cancelled ones). Each refresh reads only the files it has not
read (or that changed); a transfer first held in a new file has its earlier rows looked up in the
files already read. Why it is complete, and its costs: docs/console.md, "The queue index".
"""
from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pandas as pd

from dashboards.lake_totals import stamped_files
from pipelines.lake import parquet as lake_mod

KEPT = ("transfer-requests", "transfer-status", "decisions")
SCHEMA = "queue"  # the kept rows' tables, named like the lake's views; queries put it first
# The transfers ever held: the payment service held it, or the stream decided to hold it. The
# only definition: HELD_SQL's ``ever`` and this index both use it.
EVER_SQL = """SELECT transfer_id, ts FROM {transfer_status} WHERE status = 'held'
    UNION ALL SELECT transfer_id, ts FROM {decisions}
    WHERE action = 'hold' AND NOT coalesce(shadow, false)"""
# The transfers the index keeps every row of: those ever held (the queue), and those cancelled
# by their sender (the overview's warnings heeded: ``overview.HEEDED_SQL`` reads only those).
KEPT_SQL = EVER_SQL + """
    UNION ALL SELECT transfer_id, ts FROM {transfer_status} WHERE status = 'cancelled'"""
# Slack for clocks: a transfer's statuses and decisions are looked for from an hour before its
# request (the payment service stamps both; the worker stamps decisions with its own clock).
SKEW_MS = 3_600_000


def _files(paths) -> str:
    listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    return f"read_parquet([{listing}], union_by_name=true, hive_partitioning=false)"


def _hour_folder(ts_ms: int) -> str:
    return "hour=" + lake_mod.hour_of(max(0, ts_ms))


class QueueIndex:
    def __init__(self, lake: str):
        self.lake = Path(lake)
        # The lake's views for everything else the queue reads (analyst actions, dead letters).
        self.db = lake_mod.connect(lake)
        self.db.execute(f"CREATE SCHEMA {SCHEMA}; CREATE TABLE {SCHEMA}.wanted "
                        "(transfer_id VARCHAR PRIMARY KEY, ts BIGINT)")
        for topic in KEPT:
            empty = lake_mod.TopicTable(topic, with_kafka_columns=True).schema.empty_table()
            self.db.register("_empty", empty)
            self.db.execute(f"CREATE TABLE {SCHEMA}.{lake_mod.view_name(topic)} AS "
                            "SELECT * FROM _empty; "
                            f"ALTER TABLE {SCHEMA}.{lake_mod.view_name(topic)} ADD PRIMARY KEY (id)")
            self.db.unregister("_empty")
        self.seen: dict[str, dict[Path, tuple[int, int]]] = {t: {} for t in KEPT}
        self.lock = threading.Lock()

    def refresh(self) -> None:
        """Read the files that appeared (or changed) since the last refresh; all or none. A
        file compacted away between the listing and the read fails the read: listed again."""
        with self.lock:
            for attempt in (1, 2):
                try:
                    return self._refresh()
                except duckdb.IOException:
                    if attempt == 2:
                        raise

    def _refresh(self) -> None:
        present = {topic: stamped_files(self.lake, topic) for topic in KEPT}
        # the files read before and still there (a compacted one's rows are in its merged file)
        for topic, files in present.items():
            self.seen[topic] = {p: v for p, v in self.seen[topic].items() if files.get(p) == v}
        new = {topic: {p: v for p, v in files.items() if p not in self.seen[topic]}
               for topic, files in present.items()}
        if not any(new.values()):
            return
        with lake_mod.transaction(self.db) as cursor:
            self._read(cursor, new)
        for topic, files in new.items():
            self.seen[topic].update(files)

    def _read(self, cursor, new: dict) -> None:
        kept_in_new = KEPT_SQL.format(
            transfer_status=_files(new["transfer-status"]) if new["transfer-status"]
            else f"(SELECT * FROM {SCHEMA}.transfer_status WHERE false)",  # no new file
            decisions=_files(new["decisions"]) if new["decisions"]
            else f"(SELECT * FROM {SCHEMA}.decisions WHERE false)")
        cursor.execute(f"""CREATE OR REPLACE TEMP TABLE fresh AS
            SELECT transfer_id, min(ts) AS ts FROM ({kept_in_new}) WHERE transfer_id IS NOT NULL
            GROUP BY 1 HAVING transfer_id NOT IN (SELECT transfer_id FROM {SCHEMA}.wanted)""")
        fresh = cursor.execute("SELECT count(*) FROM fresh").fetchone()[0]
        cursor.execute(f"INSERT INTO {SCHEMA}.wanted SELECT * FROM fresh")
        for topic, files in new.items():
            if files:
                self._keep(cursor, topic, files, f"{SCHEMA}.wanted")
        if fresh:
            self._look_back(cursor)

    def _keep(self, cursor, topic: str, files, ids: str) -> None:
        """Insert the rows of ``files`` about the transfers in table ``ids`` (once each)."""
        cursor.execute(f"INSERT OR IGNORE INTO {SCHEMA}.{lake_mod.view_name(topic)} BY NAME "
                       f"SELECT * FROM {_files(files)} "
                       f"WHERE transfer_id IN (SELECT transfer_id FROM {ids})")

    def _look_back(self, cursor) -> None:
        """The rows, in files already read, of the transfers first kept in the new files (their
        rows in the new files are in already). Each has one request, at or before every status
        and decision of it: one not in the new files is looked for from an hour before its first
        kept row (then, if not found, everywhere); their statuses and decisions from an hour
        before the earliest request."""
        missing = f"""(SELECT transfer_id FROM fresh WHERE transfer_id NOT IN
                       (SELECT transfer_id FROM {SCHEMA}.transfer_requests))"""
        since = _hour_folder((cursor.execute(f"SELECT min(ts) FROM fresh WHERE transfer_id IN {missing}")
                              .fetchone()[0] or 0) - SKEW_MS)
        requests = self.seen["transfer-requests"]
        for files in ([p for p in requests if p.parent.name >= since],
                      [p for p in requests if p.parent.name < since]):
            if files and cursor.execute(f"SELECT count(*) FROM {missing}").fetchone()[0]:
                self._keep(cursor, "transfer-requests", files, missing)
        first = cursor.execute(f"""
            SELECT CASE WHEN count(r.ts) = count(*) THEN min(r.ts) END
            FROM fresh f LEFT JOIN {SCHEMA}.transfer_requests r USING (transfer_id)""").fetchone()[0]
        since = _hour_folder(first - SKEW_MS) if first is not None else ""  # a request unknown: all
        for topic in ("transfer-status", "decisions"):
            files = [p for p in self.seen[topic] if p.parent.name >= since]
            if files:
                self._keep(cursor, topic, files, "fresh")

    def query(self, sql: str, params=()) -> pd.DataFrame:
        """``sql`` after a refresh, with the kept rows' tables before the lake's views."""
        self.refresh()
        cursor = self.db.cursor()  # sessions run in threads: a cursor each
        try:
            cursor.execute(f"SET search_path = '{SCHEMA},main'")
            return cursor.execute(sql, list(params)).df()
        finally:
            cursor.close()

"""The overview's whole-lake totals (transfers, decisions, the last decision's time), summed from
each file's own: lake files are written once, so each is aggregated once (again if rewritten:
size and mtime), and a file compacted away drops out with its share. A refresh costs a listing,
where a query over the views opens every file of the two biggest topics (0.2 to 0.5 s on a
1M-transfer lake). Why: docs/console.md, "The queue index".
"""
from __future__ import annotations

import threading
from pathlib import Path

import duckdb

# name -> (topic, the aggregate over one file, how files' values combine)
TOTALS = {
    "transfers": ("transfer-requests", "count(*)", sum),
    "decisions": ("decisions", "count(*) FILTER (WHERE NOT coalesce(shadow, false))", sum),
    "last_decision_ts": ("decisions", "max(ts)", max),
}


def stamped_files(lake: Path, topic: str) -> dict[Path, tuple[int, int]]:
    """The topic's files now, each with its (size, mtime): a changed stamp is a rewritten file."""
    files = {}
    for path in (lake / topic).glob("hour=*/*.parquet"):
        try:
            stat = path.stat()
        except FileNotFoundError:  # compacted away meanwhile
            continue
        files[path] = (stat.st_size, stat.st_mtime_ns)
    return files


class LakeTotals:
    def __init__(self, lake: str):
        self.lake = Path(lake)
        self.topics = {topic: [name for name, (t, _, _) in TOTALS.items() if t == topic]
                       for topic, _, _ in TOTALS.values()}
        self.parts: dict[str, dict[Path, tuple[tuple[int, int], dict]]] = {t: {} for t in self.topics}
        self.lock = threading.Lock()

    def _refresh(self, topic: str) -> None:
        now = stamped_files(self.lake, topic)
        kept = {p: v for p, v in self.parts[topic].items() if now.get(p) == v[0]}
        new = sorted(p for p in now if p not in kept)
        if new:
            names = self.topics[topic]
            listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in new)
            rows = duckdb.connect().execute(
                f"SELECT filename, {', '.join(TOTALS[n][1] for n in names)} FROM read_parquet("
                f"[{listing}], filename=true, union_by_name=true, hive_partitioning=false) "
                "GROUP BY filename").fetchall()
            values = {Path(row[0]): dict(zip(names, row[1:])) for row in rows}
            for path in new:  # a file with no rows has no group: its counts are 0, its max none
                kept[path] = (now[path], values.get(path, {}))
        self.parts[topic] = kept

    def get(self) -> dict:
        """Each total over the files present now (a max over no file: None)."""
        with self.lock:
            for topic in self.topics:
                self._refresh(topic)
            out = {}
            for name, (topic, _, combine) in TOTALS.items():
                values = [v[1].get(name) for v in self.parts[topic].values()]
                values = [v for v in values if v is not None]
                out[name] = combine(values) if values else (0 if combine is sum else None)
            return out

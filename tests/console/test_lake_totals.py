"""The overview's totals from per-file counts (dashboards/lake_totals.py) are the views' counts,
as files arrive, are rewritten and are compacted away."""
from __future__ import annotations

import pytest

from pipelines.contracts import schemas as s
from pipelines.lake import parquet as lake

HOUR = 3_600_000
T0 = 1_795_788_000_000


def decision(i: int, shadow: bool = False) -> s.Decision:
    return s.Decision(id=f"d{i}{'s' if shadow else ''}", ts=T0 + i * 600_000, transfer_id=f"t{i}",
                      sender="a_1", recipient="a_2", amount_cents=100, action="approve",
                      score=0.1, model_version="m-x", shadow=shadow)


def request(i: int) -> s.TransferRequested:
    return s.TransferRequested(id=f"t{i}.r", ts=T0 + i * 600_000, transfer_id=f"t{i}",
                               sender="a_1", recipient="a_2", amount_cents=100,
                               payout_due_ts=T0 + i * 600_000 + 30_000)


def write(lake_dir, topic: str, events: list, first: int) -> None:
    """A sink batch: named after its offsets, so compaction merges it."""
    lake.write_batch(lake_dir, topic, lake.TopicTable(topic, with_kafka_columns=True), events,
                     f"p0-{first:012d}-{first + len(events) - 1:012d}", partitions=[0] * len(events),
                     offsets=list(range(first, first + len(events))))


def by_views(lake_dir) -> dict:
    row = lake.connect(lake_dir).execute("""
        SELECT (SELECT count(*) FROM transfer_requests),
               (SELECT count(*) FROM decisions WHERE NOT coalesce(shadow, false)),
               (SELECT max(ts) FROM decisions)""").fetchone()
    return dict(zip(["transfers", "decisions", "last_decision_ts"], row))


@pytest.mark.parametrize("compacted", [False, True])
def test_totals_are_the_views_counts_as_files_come_and_go(tmp_path, compacted):
    from dashboards.lake_totals import LakeTotals

    totals = LakeTotals(str(tmp_path))
    assert totals.get() == {"transfers": 0, "decisions": 0, "last_decision_ts": None}
    write(tmp_path, "transfer-requests", [request(i) for i in range(4)], 0)
    write(tmp_path, "decisions", [decision(i) for i in range(4)] + [decision(1, shadow=True)], 0)
    assert totals.get() == by_views(tmp_path) == {"transfers": 4, "decisions": 4,
                                                  "last_decision_ts": T0 + 3 * 600_000}
    write(tmp_path, "transfer-requests", [request(i) for i in range(4, 9)], 4)  # two hours
    write(tmp_path, "decisions", [decision(i) for i in range(4, 9)], 5)
    if compacted:  # every hour's files merged into one: the merged files replace their inputs
        assert lake.compact(tmp_path, T0 + 10 * HOUR)["files_written"] > 0
    assert totals.get() == by_views(tmp_path) == {"transfers": 9, "decisions": 9,
                                                  "last_decision_ts": T0 + 8 * 600_000}


def test_since_reads_every_row_from_its_time_on(tmp_path, monkeypatch):
    """``common.since``: only the hour folders from the start's hour, and every row in them."""
    from dashboards import common

    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    write(tmp_path / "lake", "decisions", [decision(i) for i in range(12)], 0)  # two hours
    start = T0 + 5 * 600_000  # d5, in the first hour: from it on
    sql = "SELECT list(id ORDER BY ts) FROM {} WHERE ts >= " + str(start)
    rows = lake.connect(tmp_path / "lake").execute(sql.format("decisions")).fetchone()[0]
    assert rows == lake.connect(tmp_path / "lake").execute(
        sql.format(common.since("decisions", start))).fetchone()[0]
    assert rows == [f"d{i}" for i in range(5, 12)]
    assert "hour=" not in common.since("decisions", T0 + 3 * HOUR)  # no folder: no row

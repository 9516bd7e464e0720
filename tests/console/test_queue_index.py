"""The queue index (dashboards/queue_index.py) gives the queue HELD_SQL gives on the whole lake,
as files arrive: an old held transfer stays listed, a transfer first held long after its request
(an account lock) is listed with its request, a release in a new file takes one out; and the
overview's warnings heeded, for a transfer cancelled long after its warning."""
from __future__ import annotations

import pandas as pd

from pipelines.contracts import schemas as s
from pipelines.contracts.privacy import pseudonymize as h
from pipelines.lake import parquet as lake

DAY, MIN = 86_400_000, 60_000
NOW = 1_795_788_000_000
OLD = NOW - 2 * DAY


def request(tid: str, ts: int) -> s.TransferRequested:
    return s.TransferRequested(id=f"{tid}.r", ts=ts, transfer_id=tid, sender=h("account", tid),
                             recipient=h("account", "payee"), amount_cents=5_000,
                             conversation=h("conversation", tid), device=h("device", tid),
                             payout_due_ts=ts + 30_000)


def status(tid: str, n: int, ts: int, kind: str, reason: str = "") -> s.TransferStatus:
    return s.TransferStatus(id=f"{tid}.{n}", ts=ts, transfer_id=tid, sender=h("account", tid),
                            recipient=h("account", "payee"), amount_cents=5_000, status=kind,
                            reason=reason)


def decision(tid: str, ts: int, action: str) -> s.Decision:
    return s.Decision(id=f"{tid}.d", ts=ts, transfer_id=tid, sender=h("account", tid),
                      recipient=h("account", "payee"), amount_cents=5_000, action=action,
                      score=0.9, model_version="m-x")


def write(lake_dir, topic: str, events: list, first: int = 0) -> None:
    """A sink batch: named after its offsets, so compaction merges it."""
    lake.write_batch(lake_dir, topic, lake.TopicTable(topic, with_kafka_columns=True), events,
                     f"p0-{first:012d}-{first + len(events) - 1:012d}", partitions=[0] * len(events),
                     offsets=list(range(first, first + len(events))))


def same(index, lake_dir, sql: str) -> pd.DataFrame:
    """``sql`` on the index, checked against the whole lake."""
    indexed = index.query(sql)
    pd.testing.assert_frame_equal(indexed, lake.connect(lake_dir).execute(sql).df())
    return indexed


def queues(index, lake_dir) -> tuple[dict, pd.DataFrame]:
    """The queue from the index (transfer -> held by), checked against HELD_SQL on the lake."""
    from dashboards.common import HELD_SQL

    indexed = same(index, lake_dir, HELD_SQL + " ORDER BY transfer_id")
    return dict(zip(indexed["transfer_id"], indexed["held_by"])), indexed.set_index("transfer_id")


def test_the_index_keeps_old_holds_finds_late_ones_and_drops_released_ones(tmp_path):
    from dashboards.common import HEEDED_SQL
    from dashboards.queue_index import QueueIndex

    # two days ago: one transfer held and never answered, one held then (later) released, one
    # approved and still unpaid (locked later), one paid, one warned (cancelled later)
    write(tmp_path, "transfer-requests", [request(t, OLD) for t in ("old", "answered", "locked")])
    write(tmp_path, "transfer-requests", [request(t, OLD) for t in ("paid", "warned")], 3)
    write(tmp_path, "transfer-status", [
        status("old", 1, OLD, "pending"), status("old", 2, OLD + 40, "held", "decision:hold model=m-x"),
        status("answered", 1, OLD, "pending"), status("answered", 2, OLD + 40, "held", "decision:hold model=m-x"),
        status("locked", 1, OLD, "pending"), status("locked", 2, OLD + 40, "approved"),
        status("paid", 1, OLD, "pending"), status("paid", 2, OLD + 40, "approved"),
        status("paid", 3, OLD + 30_000, "paid_out"),
        status("warned", 1, OLD, "pending"), status("warned", 2, OLD + 40, "warned")])
    write(tmp_path, "decisions", [decision("old", OLD + 30, "hold"), decision("answered", OLD + 30, "hold"),
                                  decision("locked", OLD + 30, "approve"),
                                  decision("paid", OLD + 30, "approve"),
                                  decision("warned", OLD + 30, "warn")])
    index = QueueIndex(str(tmp_path))
    held, _ = queues(index, tmp_path)
    assert held == {"old": "decision:hold model=m-x", "answered": "decision:hold model=m-x"}
    # the sink compacts that hour: its two request files become one, the index reads it again
    assert lake.compact(tmp_path, NOW)["files_written"] == 1
    assert queues(index, tmp_path)[0] == held

    # now: the unpaid one's account is locked (its request and statuses were read two days ago),
    # the answered one is released
    write(tmp_path, "transfer-status", [status("locked", 3, NOW, "held", "account locked"),
                                        status("answered", 3, NOW, "released", "analyst"),
                                        status("warned", 3, NOW, "cancelled")], 11)
    held, rows = queues(index, tmp_path)
    assert held == {"old": "decision:hold model=m-x", "locked": "account locked"}
    assert rows.loc["locked", "requested_ts"] == OLD  # its request, from a file read before
    assert rows.loc["locked", "decision"] == "approve"
    assert rows.loc["locked", "device"] == h("device", "locked")
    heeded = same(index, tmp_path, HEEDED_SQL)  # the cancel came two days after the warning
    assert heeded[["label", "transfers", "amount_cents"]].values.tolist() == [["honest", 1, 5_000]]


def test_a_queue_too_big_to_colour_is_shown_plain(tmp_path, monkeypatch):
    """21,000 held transfers (an outage's fallback holds): over pandas' 262,144 styled cells, so
    the page shows the table without colours rather than failing."""
    from console_lake import signed_in
    from process_support import ROOT
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    tids = [f"f-{i:05d}" for i in range(21_000)]
    write(tmp_path / "lake", "transfer-requests", [request(t, NOW) for t in tids])
    write(tmp_path / "lake", "transfer-status",
          [status(t, n, NOW + n, kind, reason) for t in tids
           for n, kind, reason in ((1, "pending", ""), (2, "held", "fallback: no decision by deadline"))])
    at = signed_in(AppTest.from_file(str(ROOT / "dashboards" / "pages" / "review_queue.py"),
                                     default_timeout=120), "alice", "analyst").run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    assert len(at.dataframe[0].value) == 21_000
    assert any("the table is not coloured" in c.value for c in at.caption)

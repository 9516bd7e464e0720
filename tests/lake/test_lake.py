"""The lake: atomic, idempotent Parquet batches and DuckDB views over them."""
from __future__ import annotations

import time

import msgspec
import pyarrow.parquet as pq

import pipelines.services.requests as rq
from pipelines.contracts import schemas
from pipelines.lake import parquet as lake
from pipelines.stream.lake_sink import LakeWriter, flushed_offset

T0 = 1_790_000_000_000


def _messages(n: int, start: int = 0):
    return [rq.message_event(rq.MessageRequest(sender=f"u{i}", recipient="u-x", conversation=f"c{i}",
                                               text="on partage le resto ? 23€"), f"m{i}", T0 + i * 60_000)
            for i in range(start, start + n)]


def _records(events, partition=0, first_offset=0):
    return [("messages", partition, first_offset + i, schemas.encode(e)) for i, e in enumerate(events)]


def test_views_read_what_the_writer_wrote(tmp_path):
    writer = LakeWriter(tmp_path)
    assert writer.write(_records(_messages(100))) == 100
    con = lake.connect(tmp_path)
    count, first, last = con.execute("SELECT count(*), min(_offset), max(_offset) FROM messages").fetchone()
    assert (count, first, last) == (100, 0, 99)
    # 100 minutes of events span two or three event hours, each its own folder
    assert len({p.parent.name for p in (tmp_path / "messages").glob("hour=*/*.parquet")}) >= 2


def test_replayed_batch_is_not_written_twice(tmp_path):
    """After a crash the sink re-reads records it had already written: they are skipped."""
    events = _messages(50)
    LakeWriter(tmp_path).write(_records(events[:30]))
    assert flushed_offset(tmp_path, "messages", 0) == 29
    restarted = LakeWriter(tmp_path)  # a fresh process knows only the files
    assert restarted.write(_records(events)) == 20  # offsets 0..29 skipped, 30..49 written
    con = lake.connect(tmp_path)
    assert con.execute("SELECT count(*), count(DISTINCT _offset) FROM messages").fetchone() == (50, 50)


def test_a_record_dead_lettered_twice_shows_once(tmp_path):
    """A bad record read again after a rebalance is dead-lettered again, at another offset of
    dead-letters: the view shows one row per source record."""
    letter = schemas.DeadLetter(ts=T0, reason="truncated", topic="messages", partition=2,
                                offset=7, original_b64="", original_size=0)
    again = schemas.DeadLetter(ts=T0 + 5, reason="truncated", topic="messages", partition=2,
                               offset=8, original_b64="", original_size=0)
    LakeWriter(tmp_path).write([("dead-letters", 0, i, schemas.encode(e))
                                for i, e in enumerate([letter, letter, again])])
    rows = lake.connect(tmp_path).execute(
        'SELECT "offset", _offset FROM dead_letters ORDER BY 1').fetchall()
    assert rows == [(7, 0), (8, 2)]


def test_invalid_records_are_skipped_not_fatal(tmp_path):
    records = _records(_messages(3)) + [("messages", 0, 3, b"{not json")]
    assert LakeWriter(tmp_path).write(records) == 3
    assert flushed_offset(tmp_path, "messages", 0) == 3  # the bad offset is behind us too


def test_empty_topics_have_typed_empty_views(tmp_path):
    con = lake.connect(tmp_path)
    assert con.execute("SELECT count(*) FROM decisions").fetchone() == (0,)
    columns = {row[0] for row in con.execute("DESCRIBE transfer_requests").fetchall()}
    assert {"transfer_id", "sender", "amount_cents", "_offset"} <= columns


def test_no_temporary_file_is_left_visible(tmp_path):
    LakeWriter(tmp_path).write(_records(_messages(10)))
    assert not list(tmp_path.rglob(".*.tmp"))


def test_compaction_merges_a_closed_hours_files_and_loses_nothing(tmp_path):
    from pipelines.lake.event_log import read_topic

    events = _messages(120)  # two hours of events, one a minute
    writer = LakeWriter(tmp_path)
    for start in range(0, 120, 10):  # the sink's small batches, two partitions
        batch = events[start:start + 10]
        writer.write(_records(batch[:5], 0, start) + _records(batch[5:], 1, start))
    before = sorted(p.name for p in tmp_path.rglob("*.parquet"))
    first_hour = lake.hour_of(T0)
    end_of_first_hour = lake._hour_start_ms(tmp_path / "messages" / f"hour={first_hour}") \
        + 3_600_000
    done = lake.compact(tmp_path, closed_before_ms=end_of_first_hour)
    folders = {p.name: sorted(f.name for f in p.glob("*.parquet"))
               for p in (tmp_path / "messages").glob("hour=*")}
    merged = folders[f"hour={first_hour}"]
    assert [name[:2] for name in merged] == ["p0", "p1"]  # one file per partition
    for name in merged:  # named after the batches' offsets it spans, rows in offset order
        partition, first, last = map(int, lake.SINK_FILE.match(name).groups())
        offsets = pq.read_table(tmp_path / "messages" / f"hour={first_hour}" / name
                                ).column("_offset").to_pylist()
        assert offsets == sorted(offsets) and first <= offsets[0] <= offsets[-1] <= last
    assert done["files_written"] == 2 and done["files_merged"] > 2
    later = [name for hour, names in folders.items() if hour != f"hour={first_hour}"
             for name in names]
    assert later and set(later) <= set(before)  # an hour still open is left alone
    # every row is still there, once, in offset order within each merged file
    assert {e.id for e in read_topic(tmp_path, "messages")} == {e.id for e in events}
    con = lake.connect(tmp_path)
    assert con.execute("SELECT count(*), count(DISTINCT (_partition, _offset)) FROM messages"
                       ).fetchone() == (120, 120)
    # the sink, restarted, still knows what the lake holds
    assert flushed_offset(tmp_path, "messages", 0) == 114
    assert LakeWriter(tmp_path).write(_records(events[:5], 0, 0)) == 0
    assert lake.compact(tmp_path, closed_before_ms=end_of_first_hour)["files_merged"] == 0


def test_an_input_event_the_worker_refuses_as_far_future_never_reaches_the_lake(tmp_path):
    """The sink holds the worker's far-future bound: training replays what the stream applied."""
    now = int(time.time() * 1000)
    on_time, far = _messages(2)
    on_time = msgspec.structs.replace(on_time, ts=now - 60_000)
    far = msgspec.structs.replace(far, ts=now + 3_600_000)  # an hour ahead
    assert LakeWriter(tmp_path, max_ahead_s=600).write(_records([on_time, far])) == 1
    assert lake.connect(tmp_path).sql("SELECT id FROM messages").fetchall() == [(on_time.id,)]
    assert flushed_offset(tmp_path, "messages", 0) == 1  # its offset is behind us, like a bad one
    assert LakeWriter(tmp_path / "off", max_ahead_s=0).write(_records([on_time, far])) == 2


def test_row_counts_read_each_footer_once_and_follow_compaction(tmp_path, monkeypatch):
    read = []
    monkeypatch.setattr(lake.pq, "read_metadata", lambda f, _real=pq.read_metadata: (
        read.append(f), _real(f))[1])
    counts, writer, events = lake.RowCounts(tmp_path), LakeWriter(tmp_path), _messages(120)
    assert counts(["messages", "decisions"]) == {"messages": 0, "decisions": 0}
    writer.write(_records(events[:60], 0, 0))
    assert counts(["messages"]) == {"messages": 60}
    first_files = set(read)
    writer.write(_records(events[60:], 1, 0))
    assert counts(["messages"]) == {"messages": 120}
    assert len(read) == len(set(read)) and first_files < set(read)  # each footer read once
    lake.compact(tmp_path, closed_before_ms=T0 + 10 * 3_600_000)
    assert counts(["messages"]) == {"messages": 120}
    assert all(path.exists() for path in counts.rows)  # merged-away files forgotten

"""The lake: atomic, idempotent Parquet batches and DuckDB views over them."""
from __future__ import annotations

import pipelines.requests as rq
from pipelines import lake, schemas
from pipelines.agents.lake_sink import LakeWriter, flushed_offset

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

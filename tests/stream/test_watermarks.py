"""Event-time alignment, without Kafka: the ingest clock's order_ts and watermarks, and the
entity stage's aligner (see pipelines/stream/watermarks.py)."""
from __future__ import annotations

from pipelines.stream.watermarks import Aligner, SourceClock

MSG, TRF = 1, 2  # two source ids


def test_order_ts_never_goes_back_within_a_source():
    clock = SourceClock()
    stamps = []
    for offset, ts in enumerate([100, 105, 103, 110]):  # 103 is late (a skewed producer)
        order_ts = clock.stamp(MSG, ts)
        clock.done(MSG, offset, order_ts)
        stamps.append(order_ts)
    assert stamps == [100, 105, 105, 110]
    assert clock.stream_time == 110


def test_a_caught_up_source_advances_to_the_stream_time_and_is_announced_once():
    clock = SourceClock()
    clock.done(TRF, 0, clock.stamp(TRF, 500))
    assert clock.moved() == {TRF: 500}
    assert not clock.caught_up(MSG, end_offset=3, committed=None)  # 3 records not read yet
    assert clock.caught_up(MSG, end_offset=3, committed=3)  # all committed before we started
    clock.advance_idle(MSG, clock.stream_time)
    assert clock.moved() == {MSG: 500}
    assert clock.moved() == {}  # nothing new to announce
    clock.advance_idle(MSG, 400)  # a watermark never goes back
    assert clock.moved() == {}
    clock.done(MSG, 0)  # a dead-lettered record: progress without a time
    assert clock.caught_up(MSG, end_offset=1, committed=None)


def test_events_wait_for_every_source_then_come_out_in_the_replays_order():
    aligner = Aligner(lambda: [MSG, TRF])
    aligner.add(0, (120, 3, "t1"), TRF, "transfer@120")
    assert aligner.ready(0) == []  # the message source has not spoken
    aligner.add(0, (110, 1, "m1"), MSG, "message@110")
    assert aligner.ready(0) == ["message@110"]  # low watermark 110: the transfer waits
    aligner.add(0, (120, 1, "m2"), MSG, "message@120")
    # same millisecond: the replay's tie-break (messages before transfers), not arrival order
    assert aligner.ready(0) == ["message@120", "transfer@120"]


def test_a_source_keeps_its_offset_order_and_watermarks_come_per_partition():
    aligner = Aligner(lambda: [MSG, TRF])
    aligner.add(1, (200, 1, "z"), MSG, "first")
    aligner.add(1, (200, 1, "a"), MSG, "second")  # same ms, smaller id, later offset
    aligner.watermark(0, {TRF: 300})  # announced on another partition: not this one's
    assert aligner.ready(1) == []
    aligner.watermark(1, {TRF: 300})
    assert aligner.ready(1) == ["first", "second"]
    assert aligner.latest == 300


def test_a_revoked_partition_forgets_its_waiting_events():
    aligner = Aligner(lambda: [MSG])
    aligner.add(2, (10, 1, "m"), MSG, "m")
    aligner.forget([2])
    aligner.watermark(2, {MSG: 10})
    assert aligner.ready(2) == []


def test_a_stalled_partition_names_the_silent_sources():
    aligner = Aligner(lambda: [MSG, TRF])
    aligner.add(0, (10, 1, "m"), MSG, "m")
    aligner.ready(0)
    (partition, waiting, behind), = aligner.stalled(now=aligner.partitions[0].since + 60)
    assert (partition, waiting, behind) == (0, 1, [TRF])


class _Message:
    def __init__(self, tp, offset):
        self.tp, self.offset = tp, offset


class _Event:
    def __init__(self, tp, offset, acked):
        self.message, self._acked = _Message(tp, offset), acked

    def ack(self):
        self._acked.append(self.message.offset)


def test_events_finished_out_of_order_are_acknowledged_in_offset_order():
    from pipelines.stream.acks import InOrderAcks

    acked: list[int] = []
    acks = InOrderAcks()
    handles = [acks.track(_Event("entity-events/0", offset, acked)) for offset in range(37, 41)]
    for i in (1, 2):  # 38 and 39 finish while 37 still waits for the watermark
        acks.finish(handles[i])
    assert acked == []  # Faust would commit 40 if 38 and 39 were acked now
    acks.finish(handles[0])
    assert acked == [37, 38, 39]
    acks.forget(["entity-events/0"])
    acks.finish(handles[3])  # a revoked partition's leftovers acknowledge nothing
    assert acked == [37, 38, 39]


def test_watermarks_are_announced_again_for_a_partitions_new_owner():
    clock = SourceClock()
    clock.done(MSG, 0, clock.stamp(MSG, 100))
    clock.done(TRF, 0, clock.stamp(TRF, 90))
    assert clock.moved() == {MSG: 100, TRF: 90}
    clock.resend([TRF])
    assert clock.moved() == {TRF: 90}
    clock.resend()
    assert clock.moved() == {MSG: 100, TRF: 90}


def test_an_event_tells_the_stream_time_as_a_watermark_does():
    """A worker restarted with no input left to read (its ingest had committed it) and no
    watermark record after its committed entity-events offset learns the stream time from the
    events it re-reads, so its tick can move the idle sources those events wait for (seen: the
    decide-stage crash in test_batch_ingest_crash.py waited for ever)."""
    aligner = Aligner(sources=lambda: [0, 1])
    assert aligner.latest is None
    aligner.add(0, (500, 2, "t1"), 0, "transfer t1")
    assert aligner.latest == 500
    aligner.watermark(1, {1: 400})
    assert aligner.latest == 500

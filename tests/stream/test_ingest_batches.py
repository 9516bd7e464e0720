"""The ingest's batch loop (``ingest.Batches``): a batch's delivery and commit overlap the next
batch, never two at once, and whatever fails is read again from the first offset not known to
be committed."""
from __future__ import annotations

import asyncio
from collections import namedtuple

import pytest
from aiokafka import TopicPartition

from pipelines.stream import ingest

Record = namedtuple("Record", "offset")
A, B = TopicPartition("messages", 0), TopicPartition("messages", 1)


class Consumer:
    """Hands out the batches given, then nothing; records its seeks."""

    def __init__(self, *batches):
        self.batches = list(batches)
        self.seeks: dict = {}

    async def getmany(self, timeout_ms, max_records):
        await asyncio.sleep(0)  # a fetch: other tasks run meanwhile
        return self.batches.pop(0) if self.batches else {}

    def assignment(self):
        return {A, B}

    def seek(self, tp, offset):
        self.seeks[tp] = offset

    async def stop(self):
        pass


def batch(**offsets) -> dict:
    """batch(a=(0, 4)): records 0..4 of partition A."""
    tps = {"a": A, "b": B}
    return {tps[name]: [Record(o) for o in range(lo, hi + 1)] for name, (lo, hi) in offsets.items()}


def run(consumer, handle, settle, steps: int) -> None:
    async def main():
        loop = ingest.Batches(consumer, handle, settle)
        for _ in range(steps):
            await loop.step()
        if loop.settling is not None:
            await asyncio.gather(loop.settling, return_exceptions=True)
    asyncio.run(main())


@pytest.fixture(autouse=True)
def no_wait(monkeypatch):
    monkeypatch.setattr(ingest, "RETRY_S", 0.0)


def test_a_batch_is_handled_while_the_one_before_is_delivered_and_committed():
    log = []

    async def handle(b):
        log.append(f"handle {b[A][0].offset}")
        return True

    async def settle(offsets):
        log.append(f"deliver up to {offsets[A]}")
        await asyncio.sleep(0.05)  # the broker's round trips
        log.append(f"committed {offsets[A]}")

    run(Consumer(batch(a=(0, 4)), batch(a=(5, 9)), batch(a=(10, 12))), handle, settle, 3)
    assert log == ["handle 0", "deliver up to 5", "handle 5", "committed 5", "deliver up to 10",
                   "handle 10", "committed 10", "deliver up to 13", "committed 13"]


def test_a_failed_commit_reads_again_from_the_batch_it_was_for():
    async def handle(b):
        return True

    async def settle(offsets):
        if offsets[A] == 5:
            raise ConnectionError("the broker went away")

    consumer = Consumer(batch(a=(0, 4)), batch(a=(5, 9), b=(0, 2)))
    run(consumer, handle, settle, 2)
    # batch 1 (A 0..4) was not committed; batch 2 brought B's first records
    assert consumer.seeks == {A: 0, B: 0}


def test_a_failed_batch_reads_again_from_its_start_once_the_one_before_is_committed():
    async def handle(b):
        if A in b and b[A][0].offset == 5:
            raise ConnectionError("the broker went away")
        return True

    async def settle(offsets):
        pass

    consumer = Consumer(batch(a=(0, 4), b=(0, 1)), batch(a=(5, 9)))
    run(consumer, handle, settle, 2)
    # the first batch's settle may not have run yet: everything since its start is read again
    assert consumer.seeks == {A: 0, B: 0}


def test_a_stopping_app_handles_nothing_more():
    async def handle(b):
        return False

    async def settle(offsets):
        raise AssertionError("nothing is committed")

    async def main():
        loop = ingest.Batches(Consumer(batch(a=(0, 4))), handle, settle)
        assert await loop.step() is False
        assert loop.settling is None
    asyncio.run(main())


def test_batches_within_the_commit_interval_are_committed_together_and_once_idle():
    """``every_s``: one delivery and commit for the batches handled meanwhile, from the first
    of them; what was handled last is committed at an idle fetch once the interval is over."""
    settled = []

    async def handle(b):
        return True

    async def settle(offsets):
        settled.append(dict(offsets))

    async def main():
        consumer = Consumer(batch(a=(0, 4)), batch(a=(5, 9), b=(0, 2)), batch(a=(10, 12)))
        loop = ingest.Batches(consumer, handle, settle, every_s=0.2)
        for _ in range(3):  # the first batch is settled at once, the next two wait
            await loop.step()
        await loop.settling
        assert settled == [{A: 5}]
        assert loop.unsettled == {A: 0, B: 0}  # the first commit may be in flight: from there
        await asyncio.sleep(0.2)
        await loop.step()  # nothing fetched, the interval over: the two batches together
        await loop.settling
        assert settled == [{A: 5}, {A: 13, B: 3}]
        assert loop.unsettled == {A: 5, B: 0}  # from where the range in flight began
        await loop.step()  # nothing new: nothing more to commit
        assert len(settled) == 2
    asyncio.run(main())


def test_a_failed_commit_of_several_batches_reads_them_all_again():
    async def handle(b):
        return True

    async def settle(offsets):
        if offsets.get(B) == 3:
            raise ConnectionError("the broker went away")

    async def main():
        consumer = Consumer(batch(a=(0, 4)), batch(a=(5, 9), b=(0, 2)), batch(a=(10, 12)))
        loop = ingest.Batches(consumer, handle, settle, every_s=0.05)
        for _ in range(3):
            await loop.step()
        await asyncio.sleep(0.05)
        await loop.step()  # settles A 5..12 and B 0..2, which fails
        assert consumer.seeks == {}
        await loop.step()  # nothing new to handle: the failure is seen all the same
        assert consumer.seeks == {A: 5, B: 0}
    asyncio.run(main())

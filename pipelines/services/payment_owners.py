"""Which payment instance owns which senders, and the fence that keeps a former owner from
paying out.

Instances join consumer group "vigie-payment" on ``decisions`` (keyed by sender): the
partitions the group gives an instance are the sender partitions it owns, on every
sender-keyed topic. Each owned partition has its own transactional producer
(``PartitionWriter``, transactional id ``vigie-payment-<partition>``): everything the
service writes about a partition's transfers goes through it, one transaction a change. A new
owner's producer, when it starts, makes the broker end the previous owner's open transaction
and refuse that owner's producer from then on (``ProducerFenced``): Kafka's zombie fencing. So
an instance that lost a partition and does not know it yet (stalled past its session, say)
cannot write a payout any more, and the new owner restores the partition only once fenced,
so it sees every payout the old one committed.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Optional

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError, ProducerFenced

from pipelines.contracts import metrics
from pipelines.services.common import GroupReader

log = logging.getLogger(__name__)
GROUP = "vigie-payment"
TRANSACTIONAL_PREFIX = "vigie-payment-"  # pipelines/kafka/acls.py gives the payment principal these


class NotOwner(Exception):
    """This instance does not (or no longer) write this partition: the change is not its own."""


class PartitionWriter:
    """The one writer of a partition's records, in transactions; fenced by the next owner's.

    Group commit: the writes asked for while a transaction is in flight go together in the
    next one (up to ``MAX_WRITES``), all or none, each caller told the outcome. A transaction
    costs several round trips to the broker, so one a change held a backlog (the decisions
    read after an outage, the payouts due at one tick) to ~65 changes a second (measured:
    tests/services/test_payment_backlog.py), and a fresh transfer's decision waited behind
    it past the availability delay."""

    MAX_WRITES = 256  # a transaction's writes: bounded, so that it stays well under a minute

    def __init__(self, conf, partition: int):
        self.conf, self.partition = conf, partition
        self.producer: Optional[AIOKafkaProducer] = None
        self.lock = asyncio.Lock()  # one transaction at a time
        self.closed = False
        self.waiting: list[tuple[list, asyncio.Future]] = []  # writes for the next transaction
        self.committer: Optional[asyncio.Task] = None

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **self.conf.kafka.aiokafka_kwargs(), acks="all", enable_idempotence=True,
            linger_ms=1, transactional_id=f"{TRANSACTIONAL_PREFIX}{self.partition}",
            # an owner that dies mid-transaction holds readers (read_committed) back this long
            # at most, unless the next owner fences it first
            transaction_timeout_ms=10_000)

    async def start(self) -> "PartitionWriter":
        """Start the producer: from now on, any earlier owner's producer is fenced."""
        async with self.lock:
            await self._start()
        return self

    async def _start(self) -> None:
        producer = self._new_producer()
        try:
            await producer.start()  # InitProducerId: ends and fences the previous owner's
        except BaseException:
            await producer.stop()
            raise
        self.producer = producer

    async def write(self, records: list[tuple[str, bytes, Optional[bytes]]]) -> None:
        """Write ``(topic, key, value)`` records to this partition, all or none. Raises
        ``NotOwner`` once fenced or closed; another ``KafkaError`` if the log refused them
        (the next write starts a fresh producer)."""
        if self.closed:
            raise NotOwner(self.partition)
        done = asyncio.get_running_loop().create_future()
        self.waiting.append((records, done))
        if self.committer is None or self.committer.done():
            self.committer = asyncio.ensure_future(self._commit_waiting())
        await done

    async def _commit_waiting(self) -> None:
        while self.waiting:
            group, self.waiting = self.waiting[:self.MAX_WRITES], self.waiting[self.MAX_WRITES:]
            try:
                await self._transaction([r for records, _ in group for r in records])
            except Exception as exc:
                _tell(group, exc)
                continue
            except BaseException:  # cancelled (the service stopping): nothing more is written
                _tell(group + self.waiting, NotOwner(self.partition))
                raise
            metrics.PAYMENT_TRANSACTION_CHANGES.observe(len(group))
            _tell(group, None)

    async def _transaction(self, records: list[tuple[str, bytes, Optional[bytes]]]) -> None:
        async with self.lock:
            if self.closed:
                raise NotOwner(self.partition)
            if self.producer is None:
                await self._start()
            producer = self.producer
            try:
                await producer.begin_transaction()
                sent = [await producer.send(topic, value, key=key, partition=self.partition)
                        for topic, key, value in records]
                for outcome in await asyncio.gather(*sent, return_exceptions=True):
                    if isinstance(outcome, BaseException):
                        raise outcome
                await producer.commit_transaction()
            except ProducerFenced:
                log.warning("payment partition %d: fenced by its new owner", self.partition)
                self.closed, self.producer = True, None
                await _discard(producer)
                raise NotOwner(self.partition) from None
            except KafkaError:
                # Not aborted here (aiokafka may wait for ever to abort after a refused
                # batch): the next write's new producer (a new epoch) makes the broker abort it.
                self.producer = None
                await _discard(producer)
                raise

    async def close(self) -> None:
        """Stop writing (the partition was revoked): waits for the transaction in flight;
        the writes still waiting get ``NotOwner``."""
        async with self.lock:
            self.closed = True
            if self.producer is not None:
                await _discard(self.producer)
                self.producer = None


def _tell(writes: list[tuple[list, asyncio.Future]], error: Optional[Exception]) -> None:
    """Tell the callers of ``writes`` their outcome (a caller may have been cancelled)."""
    for _, done in writes:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


async def _discard(producer: AIOKafkaProducer) -> None:
    """Stop a producer, not waiting long for what it may never deliver."""
    try:
        await asyncio.wait_for(producer.stop(), 5.0)
    except (asyncio.TimeoutError, KafkaError):
        log.warning("a payment producer did not stop cleanly")


class Membership(GroupReader):
    """The group's reader of ``decisions``: on assignment, ``take`` (fence, restore, announce)
    the new partitions before their decisions are read; on revocation, ``give_up`` the
    partitions lost. ``start`` returns once the first assignment is taken.

    The take runs beside the group protocol, not in its callback: aiokafka sends no heartbeat
    while a rebalance callback runs, and a take (fencing, then reading a partition's state)
    can outlast the session (10 s), which would cost the instance its membership and start the
    take again. The taken partitions stay paused until their take ends."""

    # A batch's decisions are applied concurrently, so that their changes share transactions
    # (``PartitionWriter``); a transfer's decisions keep their order by its lock.
    handles_together = True

    def __init__(self, conf, take: Callable[[set[int], int], Awaitable[None]],
                 give_up: Callable[[set[int]], Awaitable[None]]):
        super().__init__(conf, "decisions", GROUP)
        self.take, self.give_up = take, give_up
        self.taking: Optional[asyncio.Task] = None  # the take of the last assignment

    async def start(self, timeout_s: float = 60.0) -> "Membership":
        await self.consumer.start()
        self.consumer.subscribe([self.topic], listener=_Listener(self))
        await asyncio.wait_for(self.assigned.wait(), timeout_s)
        return self

    async def _take(self, assigned: set, of: int) -> None:
        """Take ``assigned`` (tried again while it fails and they are still ours), then read
        their decisions."""
        while True:
            mine = {tp.partition for tp in assigned if tp in self.consumer.assignment()}
            try:
                await self.take(mine, of)
                break
            except Exception:  # the broker away, say: their decisions wait, paused
                log.exception("taking payment partitions %s failed: tried again in 1 s",
                              sorted(mine))
                await asyncio.sleep(1.0)
        self.consumer.resume(*[tp for tp in assigned if tp in self.consumer.assignment()])
        self.assigned.set()

    async def stop_taking(self) -> None:
        """Cancel a take still running (its partitions are being revoked)."""
        if self.taking is not None and not self.taking.done():
            self.taking.cancel()
            await asyncio.gather(self.taking, return_exceptions=True)

    async def stop(self) -> None:
        await self.stop_taking()
        await super().stop()


class _Listener(ConsumerRebalanceListener):
    def __init__(self, membership: Membership):
        self.m = membership

    async def on_partitions_revoked(self, revoked) -> None:
        self.m.moves += 1  # the batch in hand is read again (GroupReader.follow)
        await self.m.stop_taking()
        await self.m.give_up({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned) -> None:
        self.m.moves += 1
        # aiokafka fetches a partition from its assignment on: paused, its decisions wait for
        # the take (a decision read before its transfer is restored would find nothing to act
        # on, and be committed all the same)
        self.m.consumer.pause(*assigned)
        of = len(self.m.consumer.partitions_for_topic(self.m.topic))  # sender-keyed topics'
        self.m.taking = asyncio.create_task(self.m._take(set(assigned), of))

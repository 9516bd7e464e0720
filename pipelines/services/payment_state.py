"""The payment service's compacted state topic, ``payment-state``: what an instance restores a
partition from, instead of the whole transfer history.

Each record is one transfer's whole current state (its request and its status history),
keyed by the transfer id, written in the same transaction as the status it follows. A
record goes to the partition of its sender (``partition_of``: the partitioner the
producers of ``transfer-requests``, ``transfer-status`` and ``decisions`` use, which are all
keyed by sender), so one partition of the state is everything about the senders of that
partition. A second kind of record, keyed ``sender:<hash>``, keeps when a sender first sent
money (the new-account limit) after its transfers have left. A transfer that finished more
than ``VIGIE_PAYMENT_KEEP_S`` ago is removed by a tombstone; compaction then keeps about one
record a live key.
"""
from __future__ import annotations

import asyncio
from typing import Any, Optional, Union

import msgspec
from aiokafka.partitioner import murmur2
from aiokafka.structs import TopicPartition

from pipelines.contracts import schemas as s
from pipelines.contracts.topics import InvalidEvent, decode
from pipelines.kafka.clients import consumer

STATE_TOPIC, OWNERS_TOPIC = "payment-state", "payment-owners"


class Stored(msgspec.Struct, tag="transfer", kw_only=True):
    request: s.TransferRequested
    history: list[dict[str, Any]]  # {"status", "ts", "reason"}, oldest first


class SenderSeen(msgspec.Struct, tag="sender", kw_only=True):
    sender: str
    first_ts: int  # the sender's first transfer


class Owner(msgspec.Struct, kw_only=True):
    """On ``payment-owners`` (key: the partition): the instance that took a partition last."""
    partition: int
    url: str
    ts: int


Record = Union[Stored, SenderSeen]
_decode = msgspec.json.Decoder(Record).decode
_decode_owner = msgspec.json.Decoder(Owner).decode
encode = msgspec.json.encode


def partition_of(key: str, partitions: int) -> int:
    """The partition a sender-keyed record goes to: Kafka's default partitioner (murmur2),
    the one aiokafka and Faust use for a keyed record."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def transfer_key(transfer_id: str) -> bytes:
    return transfer_id.encode()


def sender_key(sender: str) -> bytes:
    return f"sender:{sender}".encode()


async def _read(conf, tp: TopicPartition, since_ms: Optional[int] = None):
    """The committed records of one partition, from ``since_ms`` (event time) or the start."""
    c = consumer(conf=conf, enable_auto_commit=False)
    await c.start()
    try:
        c.assign([tp])
        end = (await c.end_offsets([tp]))[tp]
        found = (await c.offsets_for_times({tp: since_ms}))[tp] if since_ms is not None else None
        if since_ms is None:
            await c.seek_to_beginning(tp)
        else:
            c.seek(tp, found.offset if found else end)
        while await c.position(tp) < end:
            for rec in (await c.getmany(tp, timeout_ms=500)).get(tp, ()):
                yield rec
    finally:
        await c.stop()


async def requests_since(conf, partition: int, since_ms: int) -> list[s.TransferRequested]:
    """The transfer requests of one partition since ``since_ms``: a request whose first state
    never followed it (its instance died in between) is found among them."""
    tp = TopicPartition("transfer-requests", partition)
    out = []
    async for rec in _read(conf, tp, since_ms):
        try:
            out.append(decode("transfer-requests", rec.value))
        except InvalidEvent:
            continue
    return out


class Restored(msgspec.Struct):
    transfers: dict[str, Stored]
    first_sent: dict[str, int]
    records_read: int


async def restore(conf, partition: int) -> Restored:
    """Partition ``partition`` of the state, read to its end (committed records only: an
    aborted transaction never happened)."""
    out = Restored({}, {}, 0)
    async for rec in _read(conf, TopicPartition(STATE_TOPIC, partition)):
        out.records_read += 1
        key = rec.key.decode()
        if rec.value is None:  # a tombstone: the transfer left
            out.transfers.pop(key, None)
            continue
        item = _decode(rec.value)
        if isinstance(item, Stored):
            out.transfers[key] = item
        else:
            out.first_sent[item.sender] = item.first_ts
    return out


class Owners:
    """Which instance serves each partition, as ``payment-owners`` says (read whole, followed)."""

    def __init__(self, conf):
        self.consumer = consumer(OWNERS_TOPIC, conf=conf, enable_auto_commit=False)
        self.urls: dict[int, str] = {}
        self.since: dict[int, int] = {}  # partition -> when its current owner took it

    async def start(self) -> "Owners":
        await self.consumer.start()
        await self.consumer.seek_to_beginning()
        return self

    async def follow(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=1000)).values():
                for rec in records:
                    owner = _decode_owner(rec.value)
                    self.urls[owner.partition] = owner.url
                    self.since[owner.partition] = owner.ts

    def url(self, partition: int) -> Optional[str]:
        return self.urls.get(partition)

    async def stop(self) -> None:
        await asyncio.shield(self.consumer.stop())

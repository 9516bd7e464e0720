"""The decide stage's transfer-parts records are bundles (``envelopes.decode_parts``): one record
holds parts of several transfers, so it may be acknowledged (and its offset committed) only once
every one of those transfers is decided, and never before an earlier record of its partition.
Acknowledged any sooner, a crash before the decisions leave would lose them; the end-to-end
kill is in test_batch_ingest_crash.py (``decide``)."""
from __future__ import annotations

import msgspec

from pipelines.contracts import schemas
from pipelines.contracts.privacy import HEX_CHARS
from pipelines.stream.acks import InOrderAcks
from pipelines.stream.decide import DecideStage, decided, receive
from pipelines.stream.envelopes import Part, decode_parts, encode


class Record:
    """What ``receive`` reads of a Faust event: its value, partition, offset, and ``ack``."""

    def __init__(self, offset: int, parts: list[bytes]):
        self.value = msgspec.msgpack.encode([msgspec.Raw(p) for p in parts])
        self.message = type("Message", (), {"tp": ("transfer-parts", 0), "offset": offset})()
        self.acked = False

    def ack(self) -> None:
        self.acked = True


def _part(transfer_id: str, role: str, parts: int = 2) -> bytes:
    transfer = schemas.TransferRequested(
        id=f"e-{transfer_id}", ts=1_800_000_000_000, transfer_id=transfer_id,
        sender="a_" + "1" * HEX_CHARS, recipient="a_" + "2" * HEX_CHARS, amount_cents=500,
        payout_due_ts=1_800_000_030_000)
    return encode(Part(schemas.encode(transfer), role, "account", {"x": 1.0}, parts))


def test_a_parts_bundle_is_acknowledged_once_every_transfer_in_it_is_decided():
    stage, acks = DecideStage(control=None), InOrderAcks()
    first = Record(0, [_part("t1", "sender"), _part("t1", "recipient"), _part("t2", "sender")])
    second = Record(1, [_part("t2", "recipient"), _part("t3", "sender", parts=1)])

    ready = receive(stage, acks, [first])
    assert [p.parts[0].role for p in ready] == ["sender"] and len(ready[0].parts) == 2
    decided(ready)  # t1 decided: t2's part still waits in the first record
    assert not first.acked

    ready = receive(stage, acks, [second])
    by_transfer = {len(p.parts): p for p in ready}
    decided([by_transfer[1]])  # t3 alone: the second record still holds t2's other part
    assert not first.acked and not second.acked
    decided([by_transfer[2]])  # t2
    assert first.acked and second.acked
    assert not stage.pending


def test_a_later_record_waits_for_an_earlier_one():
    stage, acks = DecideStage(control=None), InOrderAcks()
    first = Record(0, [_part("t1", "sender")])
    second = Record(1, [_part("t2", "sender", parts=1)])
    decided(receive(stage, acks, [first, second]))  # t2 decided, t1 waits for its other part
    assert not first.acked and not second.acked  # a commit past 0 would lose t1's part


def test_a_record_of_one_part_as_written_before_bundles_is_read():
    raw = _part("t1", "sender", parts=1)
    assert decode_parts(raw) == decode_parts(msgspec.msgpack.encode([msgspec.Raw(raw)]))

"""The entity stage without Kafka: a redelivered event changes nothing, except that a
redelivered transfer re-sends the part it sent the first time (a crash can keep the state write
and lose the part: two topics)."""
from __future__ import annotations

import asyncio

import pipelines.services.requests as rq
from pipelines.contracts import schemas
from pipelines.contracts.privacy import pseudonymize
from pipelines.kafka.tables import MemoryStore
from pipelines.stream.entities import EntityStage, routed_for
from pipelines.stream.envelopes import PART_DECODER, source_id


def test_a_redelivered_transfer_resends_its_part_and_learns_nothing():
    table, parts = MemoryStore(), []

    async def send_part(key, value):
        parts.append((key, value))

    async def nothing(key, value):
        pass

    stage = EntityStage(table, nothing, send_part)
    tr = rq.transfer_event(rq.TransferRequest(sender="alice", recipient="bob", amount_cents=500),
                           "t-1", "t-1.r", 1_800_000_000_000, 30_000)
    raw = schemas.encode(tr)
    src = source_id("transfer-requests", 0)
    (key, routed), *_ = routed_for(tr, "transfer-requests", raw, src, 7, tr.ts)

    asyncio.run(stage.apply(routed, 0, 100))
    asyncio.run(stage.write_states())
    state_after_first = table[key]
    asyncio.run(stage.apply(routed, 0, 101))  # the same event, read again after a crash
    asyncio.run(stage.write_states())

    assert table[key] == state_after_first  # learnt once
    assert len(parts) == 2 and parts[0] == parts[1]  # the very same part, sent again
    assert parts[0][0] == pseudonymize("account", "alice").encode()
    assert PART_DECODER.decode(parts[0][1]).role == routed.role


def test_an_entity_touched_by_many_events_is_written_once_per_flush():
    class CountingTable(MemoryStore):
        writes = 0

        def __setitem__(self, key, value):
            CountingTable.writes += 1
            super().__setitem__(key, value)

    async def nothing(key, value):
        pass

    table = CountingTable()
    stage = EntityStage(table, nothing, nothing)
    src = source_id("messages", 0)
    for i in range(5):  # alice writes to bob five times
        msg = rq.message_event(rq.MessageRequest(sender="alice", recipient="bob",
                                                 conversation="c-ab", text="ça va ?"),
                               f"m{i}", 1_800_000_000_000 + i * 1000)
        for _, routed in routed_for(msg, "messages", schemas.encode(msg), src, i, msg.ts):
            asyncio.run(stage.apply(routed, 0, i))
    assert CountingTable.writes == 0
    asyncio.run(stage.write_states())
    assert CountingTable.writes == 2 and len(table) == 2  # alice's state and bob's, once each

"""Stored entity states carry their layout's format version (``features.state``): bytes written
before versions existed read as format 1, with the same features; a newer worker reads older
formats through its migrations; a format newer than the worker's is refused, and the entity
stage leaves such a state as it is."""
from __future__ import annotations

import asyncio

import msgspec
import pytest
from msgspec import Struct

import pipelines.services.requests as rq
from features.replay import replay
from features.routing import STATE_CLASSES, order_key
from features.state import EntityState, StateFormatError
from pipelines.contracts import schemas
from pipelines.kafka.tables import MemoryStore
from pipelines.simulator.events import synthetic_log
from pipelines.stream.entities import EntityStage, routed_for
from pipelines.stream.envelopes import Stored, decode_stored, encode, source_id


def unversioned(state: EntityState) -> bytes:
    """A state's bytes as ``to_bytes`` wrote them before format versions: the bare array."""
    return msgspec.msgpack.encode(state)


def features(events, states: dict) -> bytes:
    """Every transfer's features, in order, as JSON (NaN, a missing value, is null): equal bytes
    are equal values, bit for bit."""
    return msgspec.json.encode([(r.transfer_id, r.features)
                                for r in replay(events, states=states, presorted=True)])


@pytest.fixture(scope="module")
def halfway():
    """Three weeks of life, the states kept halfway (the time base has moved by then)."""
    ordered = sorted(synthetic_log(n_accounts=80, days=21, seed=11), key=order_key)
    half = len(ordered) // 2
    states: dict = {}
    features(ordered[:half], states)
    return states, ordered[half:]


def test_unversioned_bytes_read_as_format_1_with_the_same_features(halfway):
    states, rest = halfway
    assert {kind for kind, _ in states} == set(STATE_CLASSES)
    restored = {}
    for (kind, key), st in states.items():
        old = unversioned(st)
        assert old[0] >= 0x90  # a msgpack array header: no version byte
        copy = STATE_CLASSES[kind].from_bytes(old)
        assert copy == st and copy.to_bytes() == b"\x01" + old  # written back as format 1
        restored[(kind, key)] = copy
    assert features(rest, restored) == features(rest, states)


# --- a layout change and its migration --------------------------------------------------------
class Visits(Struct, array_like=True):  # format 1: times and amounts as two lists
    ts: list[int] = []
    amounts: list[int] = []
    TIMES = ()


class VisitRows(Struct, array_like=True):  # format 2: one (time, amount) row per visit
    rows: list[tuple[int, int]] = []
    TIMES = ()


def visits_as_rows(fields: list) -> list:
    seq, base, last, (ts, amounts) = fields
    return [seq, base, last, [list(zip(ts, amounts))]]


class ShopV1(EntityState):
    KIND = "shop"
    visits: Visits = msgspec.field(default_factory=Visits)


class ShopV2(EntityState):
    KIND = "shop"
    FORMAT = 2
    MIGRATIONS = {1: visits_as_rows}
    visits: VisitRows = msgspec.field(default_factory=VisitRows)


def test_a_newer_worker_migrates_an_older_format_and_an_older_worker_refuses_a_newer_one():
    old = ShopV1(seq=7, base=1_000, last=60, visits=Visits([10, 60], [500, 2_000]))
    expected = ShopV2(seq=7, base=1_000, last=60, visits=VisitRows([(10, 500), (60, 2_000)]))
    for stored in (old.to_bytes(), unversioned(old)):  # format 1, with and without its byte
        assert ShopV2.from_bytes(stored) == expected
    assert ShopV2.from_bytes(expected.to_bytes()) == expected
    assert expected.to_bytes()[0] == 2
    with pytest.raises(StateFormatError, match=r"shop state in format 2: this worker reads "
                                               r"formats 1 to 1 \(a newer worker wrote it\?\)"):
        ShopV1.from_bytes(expected.to_bytes())
    for bad in (b"\x00" + unversioned(old), b""):
        with pytest.raises(StateFormatError):
            ShopV1.from_bytes(bad)


def test_every_kind_reads_through_the_migration_path_unchanged(halfway):
    """A migration sees a state as plain msgpack values and hands back the next format's: with
    an identity step, each real kind comes back whole (its dicts, tuples and nested parts)."""
    states, _ = halfway
    newer = {kind: type(f"{cls.__name__}Next", (cls,), {"FORMAT": 2, "MIGRATIONS": {1: list}})
             for kind, cls in STATE_CLASSES.items()}
    for (kind, _), st in states.items():
        copy = newer[kind].from_bytes(st.to_bytes())
        assert unversioned(copy) == unversioned(st)


def test_a_newer_format_is_refused_by_every_kind(halfway):
    states, _ = halfway
    for (kind, _), st in list(states.items())[:50]:
        with pytest.raises(StateFormatError, match=f"{kind} state in format 2"):
            STATE_CLASSES[kind].from_bytes(b"\x02" + unversioned(st))


# --- in the entity stage ------------------------------------------------------------------------
def _stage(table: MemoryStore, parts: list) -> EntityStage:
    async def send_part(key, value):
        parts.append(value)

    async def nothing(key, value):
        pass

    return EntityStage(table, nothing, send_part)


def _apply(stage: EntityStage, event, topic: str, offset: int) -> None:
    raw = schemas.encode(event)
    for _, routed in routed_for(event, topic, raw, source_id(topic, 0), offset, event.ts):
        asyncio.run(stage.apply(routed, 0, offset))
    asyncio.run(stage.write_states())


def test_the_entity_stage_carries_on_from_unversioned_state_and_leaves_a_newer_one_alone():
    t0 = 1_800_000_000_000
    table = MemoryStore()
    stage = _stage(table, [])
    for i in range(3):
        _apply(stage, rq.message_event(rq.MessageRequest(
            sender="alice", recipient="bob", conversation="c-ab", text="tu peux m'avancer 50 ?"),
            f"m{i}", t0 + i * 1000), "messages", i)
    # the same table as a worker before format versions left it
    old_table = MemoryStore()
    for key, value in table.items():
        stored = decode_stored(value)
        state = STATE_CLASSES[key.decode().split(":")[0]].from_bytes(stored.state)
        # the layout before 2026-12-06 also kept the parts the entity sent (read, ignored)
        old_table[key] = encode([unversioned(state), stored.marks, {}])
        assert old_table[key] != value
    transfer = rq.transfer_event(rq.TransferRequest(sender="alice", recipient="bob",
                                                    amount_cents=5_000), "t1", "t1.r",
                                 t0 + 60_000, 30_000)
    parts, old_parts = [], []
    _apply(_stage(table, parts), transfer, "transfer-requests", 10)
    _apply(_stage(old_table, old_parts), transfer, "transfer-requests", 10)
    assert old_parts == parts and len(parts) == 2  # the same features, from both accounts
    assert old_table == table  # and written back in format 1

    newer = MemoryStore({key: encode(Stored(b"\x02" + unversioned(
        STATE_CLASSES["account"].from_bytes(decode_stored(value).state)),
        decode_stored(value).marks)) for key, value in table.items()})
    before, parts = dict(newer), []
    stage = _stage(newer, parts)
    raw = schemas.encode(transfer)
    (_, routed), *_ = routed_for(transfer, "transfer-requests", raw,
                                 source_id("transfer-requests", 0), 11, transfer.ts)
    with pytest.raises(StateFormatError, match="account state in format 2"):
        asyncio.run(stage.apply(routed, 0, 11))
    asyncio.run(stage.write_states())
    assert newer == before and not parts  # nothing read, nothing overwritten, no part sent

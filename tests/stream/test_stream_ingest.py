"""The worker on the real broker: bad input is dead-lettered with its reason, valid input is
handled (the worker's own output shows it), and nothing makes the worker restart.

The session's broker and lake are shared by every test module, and an input topic may hold
records an earlier module left unconsumed (some of them bad on purpose). So each test judges
only the records it wrote, by the (topic, partition, offset) the broker gave them, and only the
output written after it began."""
from __future__ import annotations

import asyncio
import base64
import random
import time
import uuid

import msgspec
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from factories import INPUT_TOPICS, MALFORMATIONS, malformed, valid_event
from msgspec.structs import replace
from process_support import wait_for

from features.vector import FEATURE_NAMES
from pipelines.contracts import schemas, settings, signatures
from pipelines.contracts.privacy import pseudonymize
from pipelines.contracts.topics import FEATURE_TOPICS
from pipelines.kafka.clients import Publisher, consumer
from pipelines.lake import parquet as lake
from pipelines.stream.envelopes import BUNDLE_DECODER, BUNDLE_KEY, source_id

pytestmark = pytest.mark.kafka
CONTROL_CHANGELOG = "vigie-control-changelog"  # the control table's (pipelines/stream/control.py)
OUTPUTS = ("dead-letters", "entity-events", "decisions", CONTROL_CHANGELOG)


async def _produce(records) -> list[tuple[str, int, int]]:
    """Send (topic, key, value) records; where each landed: (topic, partition, offset)."""
    pub = await Publisher().start()
    try:
        sent = [await pub.producer.send(topic, value, key=key) for topic, key, value in records]
        return [(m.topic, m.partition, m.offset) for m in await asyncio.gather(*sent)]
    finally:
        await pub.stop()


async def _reader(topics):
    """A started reader of every partition of those of ``topics`` that exist, or None."""
    probe = consumer()
    await probe.start()
    try:
        existing = [t for t in topics if t in await probe.topics()]
    finally:
        await probe.stop()
    if not existing:
        return None
    reader = consumer(*existing, enable_auto_commit=False)  # no group: every partition
    await reader.start()
    return reader


async def _ends(topics) -> dict[TopicPartition, int]:
    """The end offsets of ``topics`` now (a topic not created yet starts at 0)."""
    reader = await _reader(topics)
    if reader is None:
        return {}
    try:
        return await reader.end_offsets(list(reader.assignment()))
    finally:
        await reader.stop()


class Outputs:
    """What the worker wrote after ``starts`` (end offsets taken before it ran)."""

    def __init__(self, starts: dict[TopicPartition, int]):
        self.next = dict(starts)  # where reading goes on
        self.letters: dict[tuple[str, int, int], list[schemas.DeadLetter]] = {}  # by source
        self.routed: set[tuple[int, int, str]] = set()  # (source, offset, event id)
        self.decisions: dict[str, schemas.Decision] = {}
        self.control: list[tuple[bytes, bytes]] = []  # (key, value) written to the changelog

    def add(self, record) -> None:
        self.next[TopicPartition(record.topic, record.partition)] = record.offset + 1
        if record.topic == "dead-letters":
            letter = msgspec.json.decode(record.value, type=schemas.DeadLetter)
            self.letters.setdefault((letter.topic, letter.partition, letter.offset), []).append(letter)
        elif record.topic == "entity-events" and record.key == BUNDLE_KEY:
            self.routed.update((r.source, r.offset, r.event_id)
                               for r in BUNDLE_DECODER.decode(record.value))
        elif record.topic == "decisions":
            decision = msgspec.json.decode(record.value, type=schemas.Decision)
            self.decisions[decision.id] = decision
        elif record.topic == CONTROL_CHANGELOG:
            self.control.append((record.key, record.value))

    def read_until(self, done, timeout: float, what: str) -> None:
        """Read the outputs on until ``done(self)`` (None: to their present end); fail the test
        after ``timeout``."""
        async def go() -> bool:
            until = done
            if done is None:
                ends = await _ends(OUTPUTS)
                until = lambda o: all(o.next.get(tp, 0) >= end for tp, end in ends.items())  # noqa: E731
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                reader = await _reader(OUTPUTS)  # again while a topic is not created yet
                try:
                    parts = list(reader.assignment())
                    for tp in parts:
                        reader.seek(tp, self.next.get(tp, 0))
                    every = {tp.topic for tp in parts} == set(OUTPUTS)
                    reopen = time.monotonic() + 5
                    while every or time.monotonic() < reopen:
                        if until(self):
                            return True
                        if time.monotonic() > deadline:
                            return False
                        for records in (await reader.getmany(timeout_ms=500)).values():
                            for record in records:
                                self.add(record)
                finally:
                    await reader.stop()
            return until(self)

        if not asyncio.run(go()):
            pytest.fail(f"timed out after {timeout}s waiting for {what}")


async def _lag(group: str, topics) -> int:
    """Messages not yet committed by ``group`` on ``topics`` (0 = all processed)."""
    conf = settings.load()
    admin = AIOKafkaAdminClient(**conf.kafka.aiokafka_kwargs())
    await admin.start()
    reader = consumer(*topics, conf=conf)
    await reader.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        parts = [TopicPartition(t, p) for t in topics for p in reader.partitions_for_topic(t)]
        ends = await reader.end_offsets(parts)
        assert sum(ends.values()) > 0
        return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())
    finally:
        await reader.stop()
        await admin.close()


def _valid(topic: str, rnd: random.Random):
    """A valid event whose handling shows in the worker's output: a feature event is routed
    to entity states, an analyst's release becomes a decision, a model update a control
    change."""
    event = valid_event(topic, rnd)
    if topic == "analyst-actions":
        event = signatures.sign(replace(event, action="release", params={
            "sender": pseudonymize("account", "ingest-sender"),
            "recipient": pseudonymize("account", "ingest-recipient"), "amount_cents": "100"}))
    return event


def test_malformed_events_are_dead_lettered_and_valid_ones_processed(kafka, processes, session_dir):
    rnd = random.Random(1)
    records, kinds, valid = [], [], []
    for i in range(1000):
        topic = INPUT_TOPICS[i % len(INPUT_TOPICS)]
        kind = MALFORMATIONS[i % len(MALFORMATIONS)]
        records.append((topic, b"k", malformed(topic, kind, rnd)))
        kinds.append(kind)
        good = _valid(topic, rnd)  # interleaved: one valid for each bad one
        records.append((topic, b"k", schemas.encode(good)))
        valid.append(good)
    outputs = Outputs(asyncio.run(_ends(OUTPUTS)))
    where = asyncio.run(_produce(records))
    bad_at = {where[2 * i]: records[2 * i][2] for i in range(1000)}  # position -> bytes
    good_at = {where[2 * i + 1]: valid[i] for i in range(1000)}

    def proof(position, event) -> bool:
        """The worker's own output shows it handled this valid event."""
        topic, partition, offset = position
        if topic in FEATURE_TOPICS:
            return (source_id(topic, partition), offset, event.id) in outputs.routed
        if topic == "analyst-actions":
            return f"{event.target}.a{event.ts}" in outputs.decisions
        return (b"model:shadow", event.version.encode()) in outputs.control  # model-updates

    worker = processes.start("worker", "worker")
    sink = processes.start("sink", "sink")
    outputs.read_until(lambda o: bad_at.keys() <= o.letters.keys()
                       and all(p in o.letters or proof(p, e) for p, e in good_at.items()),
                       timeout=90, what="a dead letter for every bad record, an output for every good one")

    # every bad record: dead-lettered (a redelivery may repeat it), with a reason and its bytes
    for position, raw in bad_at.items():
        for letter in outputs.letters[position]:
            assert letter.reason and base64.b64decode(letter.original_b64) == raw, position
    # no valid record among the dead letters, nor routed as if it were a bad one
    wrongly = sorted(good_at.keys() & outputs.letters.keys())
    assert not wrongly, (f"{len(wrongly)} valid records dead-lettered, e.g. {wrongly[0]}: "
                         f"{outputs.letters[wrongly[0]][0].reason}")
    assert all(proof(p, e) for p, e in good_at.items())
    assert not {(source_id(t, p), o) for t, p, o in bad_at if t in FEATURE_TOPICS} \
        & {(s, o) for s, o, _ in outputs.routed}
    by_kind = {kind: outputs.letters[position][0].reason
               for kind, position in zip(kinds, bad_at)}
    assert {t for t, _, _ in bad_at} == set(INPUT_TOPICS)
    for kind, fragment in [("bad_json", "truncated"), ("wrong_type", "Expected `int`, got `str`"),
                           ("missing_field", "missing required field"), ("oversized", "oversized"),
                           ("unknown_version", "Invalid enum value 99"),
                           ("unknown_field", "unknown field `text`"),
                           ("raw_identifier", "matching regex"),
                           ("not_an_object", "Expected `object`, got `array`")]:
        assert fragment in by_kind[kind], (kind, by_kind[kind])

    # the lake sink lands the letters where the console reads them, one per source record
    lake_dir = settings.load().lake_dir

    def letters_in_lake() -> set:
        rows = lake.connect(lake_dir).execute(
            "SELECT topic, partition, \"offset\" FROM dead_letters").fetchall()
        return {tuple(row) for row in rows} & bad_at.keys()

    wait_for(lambda: letters_in_lake() == bad_at.keys(), timeout=60,
             what="the 1000 dead letters in the lake")

    # the worker consumed and committed every input record: all processed
    wait_for(lambda: asyncio.run(_lag("vigie", INPUT_TOPICS)) == 0, timeout=60,
             what="the worker to commit every input offset")
    assert worker.poll() is None and sink.poll() is None, "a worker died"
    log = processes.log_of(worker)
    assert "Traceback" not in log and "Crashed" not in log and log.count("[^Worker]: Starting") == 1


def _rule_change(params: dict) -> schemas.AnalystAction:
    return signatures.sign(schemas.AnalystAction(
        id=f"stop-{uuid.uuid4().hex}", ts=int(time.time() * 1000), actor="leo", role="lead",
        action="rule_change", target_kind="rule", target=params["name"], params=params,
        reason="ingest stop test"))


def test_a_stopping_worker_leaves_what_it_did_not_finish_to_the_next(kafka, processes):
    """A worker stops its tables before its agents: whatever it handled in between read empty
    tables (CI's unexplained 1,001st dead letter was a rule change refused so, "no rule named",
    by a worker stopping right after it arrived). A burst of rule changes, then SIGTERM: none
    may be refused, and the next worker handles what the first left."""
    rule = f"stop_{uuid.uuid4().hex[:16]}"

    def rules_written(o: Outputs) -> int:
        """Rule sets written since the test began that hold the test's rule."""
        return sum(1 for key, value in o.control if key == b"rules" and rule.encode() in value)

    outputs = Outputs(asyncio.run(_ends(OUTPUTS)))
    first = processes.start("worker", "worker")
    upsert = _rule_change({"op": "upsert", "name": rule, "action": "hold", "enabled": "false",
                           "expression": f"{FEATURE_NAMES[0]} < 0"})  # disabled: changes nothing
    asyncio.run(_produce([("analyst-actions", None, schemas.encode(upsert))]))
    outputs.read_until(lambda o: rules_written(o) > 0, timeout=90, what="the rule upserted")
    upserted = rules_written(outputs)
    # a no-op "disable" needs the rule: refused if the worker no longer sees it
    # a rule change costs the worker tens of ms (the rule set is rebuilt and checked): 300 of
    # them keep it busy for seconds, and it is stopped after the first 30
    burst = [_rule_change({"op": "disable", "name": rule}) for _ in range(300)]
    where = asyncio.run(_produce([("analyst-actions", None, schemas.encode(c)) for c in burst]))
    outputs.read_until(lambda o: rules_written(o) >= upserted + 30, timeout=60,
                       what="the worker midway through the rule changes")
    processes.stop(first)  # SIGTERM, with most of the burst still to handle
    second = processes.start("worker2", "worker")
    wait_for(lambda: asyncio.run(_lag("vigie", ["analyst-actions"])) == 0, timeout=90,
             what="the second worker to commit every rule change")
    outputs.read_until(None, timeout=30, what="every output written so far")
    refused = [outputs.letters[p][0].reason for p in where if p in outputs.letters]
    assert not refused, f"{len(refused)} of {len(burst)} refused: {refused[0]}"
    assert rules_written(outputs) >= upserted + len(burst)  # each handled (some twice)
    assert second.poll() is None
    for proc in (first, second):
        assert "Traceback" not in processes.log_of(proc)


def test_dead_letter_keeps_the_original_bytes(kafka, processes):
    bad = b'{"id": "zz", "ts": "yesterday"}'
    asyncio.run(_produce([("labels", b"k", bad)]))
    processes.start("worker", "worker")

    async def find():
        reader = consumer("dead-letters")
        await reader.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                batch = await reader.getmany(timeout_ms=1000)
                for records in batch.values():
                    for record in records:
                        letter = msgspec.json.decode(record.value, type=schemas.DeadLetter)
                        if base64.b64decode(letter.original_b64) == bad:
                            return letter
        finally:
            await reader.stop()

    letter = asyncio.run(find())
    assert letter is not None and letter.topic == "labels" and "ts" in letter.reason

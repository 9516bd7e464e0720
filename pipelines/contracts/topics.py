"""Every Kafka topic Vigie uses: its schema, the field it is keyed (partitioned) by, and
who writes it. Topics are partitioned by account, so adding a worker is the whole
scale-out story. ``decode`` validates a record's bytes against its topic's schema:

>>> try:
...     decode("messages", b"not json")
... except InvalidEvent as refused:
...     print(refused)
JSON is malformed: invalid character (byte 4)

A topic may accept more than one version of its schema while producers move (see
``pipelines.contracts.schemas``): ``schema`` is the struct every stage reads (and its version
on the wire: 1, or 2 for analyst-actions), ``also`` the other wire versions, each recognised by its ``v`` and turned into
``schema`` by its ``as_current()``. ``decode`` is the one place the versions are told apart; the
raw bytes travel on between stages and every stage decodes them with it. A version the topic
does not list is refused with a reason naming the versions it reads.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import msgspec

from pipelines.contracts import schemas as s

MAX_EVENT_BYTES = 16 * 1024  # an input event is metadata only; anything larger is refused
MAX_RECORD_BYTES = 1024 * 1024  # stream outputs (a dead letter carries the refused bytes)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    schema: type
    key_field: Optional[str]  # the field the producer keys by; None for single-partition topics
    writer: str
    input: bool = False  # validated by the stream's ingest agent
    also: tuple[type, ...] = ()  # other wire versions accepted, each with ``as_current()``
    config: dict[str, str] = field(default_factory=dict)  # topic configs set at creation


TOPICS: dict[str, TopicSpec] = {t.name: t for t in [
    TopicSpec("messages", s.MessageSent, "sender", "messaging service", input=True),
    TopicSpec("account-events", s.AccountEvent, "account", "messaging service", input=True),
    TopicSpec("transfer-requests", s.TransferRequested, "sender", "payment service", input=True,
              also=(s.TransferRequestedV2,)),
    TopicSpec("assistant-events", s.AssistantEvent, "user", "assistant service", input=True),
    TopicSpec("labels", s.Label, "account", "payment/messaging services, console", input=True),
    TopicSpec("analyst-actions", s.AnalystAction, None, "console (signed)", input=True,
              also=(s.AnalystActionV1,)),
    TopicSpec("transfer-status", s.TransferStatus, "sender", "payment service"),
    TopicSpec("decisions", s.Decision, "sender", "stream"),
    TopicSpec("notifications", s.Notification, "account", "stream"),
    TopicSpec("recovery", s.RecoveryEvent, "account", "stream (recovery agent) only"),
    TopicSpec("owner-verification", s.OwnerVerification, "account", "messaging service"),
    TopicSpec("model-updates", s.ModelUpdate, None, "console, vigie promote/rollback", input=True),
    TopicSpec("dead-letters", s.DeadLetter, None, "stream"),
    TopicSpec("data-quality", s.DataQuality, "topic", "lake sink (sampled GX checks)"),
    TopicSpec("console-audit", s.ConsoleAudit, None, "console (sign-ins, SQL queries)"),
]}
INPUT_TOPICS = [t.name for t in TOPICS.values() if t.input]
# The topics that feed features, in the order that breaks ties between equal timestamps.
FEATURE_TOPICS = ("account-events", "messages", "assistant-events", "transfer-requests", "labels")
# The stream's own hops (see pipelines/stream/envelopes.py): keyed by entity, and by sender;
# recovery-signals (pipelines/recovery/stage.py): keyed by account, like ``recovery``.
INTERNAL_TOPICS = ["entity-events", "transfer-parts", "recovery-signals"]
# Each service's record of its answers to ``Idempotency-Key`` POSTs (pipelines/services/
# idempotency.py), written and read by that service alone: service state, not events, so
# neither in ``TOPICS`` (the lake, the console) nor read by the stream. Compacted by key (the
# key's keyed hash) and deleted past a day: records live 25 h to 26 h (1 h segments), the
# services ignore those older than 24 h. No tombstones are written (docs/services.md).
KEEP_REPLIES_MS = 24 * 3_600_000
_REPLIES_CONFIG = {"cleanup.policy": "compact,delete",
                   "retention.ms": str(KEEP_REPLIES_MS + 3_600_000), "segment.ms": "3600000"}
REPLY_TOPICS: dict[str, TopicSpec] = {t.name: t for t in [
    TopicSpec(f"idempotency-{service}", s.IdempotentReply, "id", f"{service} service",
              config=_REPLIES_CONFIG) for service in ("messaging", "assistant", "payment")]}
# The payment service's own compacted topics (pipelines/services/payment_state.py): each
# transfer's current state, keyed by transfer id and partitioned like its sender; and which
# instance serves which partition (one partition, keyed by partition number).
STATE_TOPICS = ["payment-state", "payment-owners"]
_SPECS = {**TOPICS, **REPLY_TOPICS}
_DECODERS = {name: msgspec.json.Decoder(spec.schema) for name, spec in _SPECS.items()}


def _version(schema: type) -> int:
    return next(f.default for f in msgspec.structs.fields(schema) if f.name == "v")


class _Version(msgspec.Struct):
    v: int = 1  # every other field is skipped; no "v" is version 1, as for the schemas


_PEEK = msgspec.json.Decoder(_Version)
# topic -> version -> decoder, for the topics with more than one version (the others skip the peek)
_VERSIONS = {name: {_version(t): msgspec.json.Decoder(t) for t in (spec.schema, *spec.also)}
             for name, spec in TOPICS.items() if spec.also}


class InvalidEvent(ValueError):
    """Why an event was refused; the message is the dead-letter reason."""


def decode(topic: str, raw: bytes | None):
    """Validate one record's bytes against its topic's schema (any version the topic reads), as
    the topic's current struct; or raise InvalidEvent."""
    if raw is None:
        raise InvalidEvent("empty record (no value)")
    limit = MAX_EVENT_BYTES if _SPECS[topic].input else MAX_RECORD_BYTES
    if len(raw) > limit:
        raise InvalidEvent(f"oversized: {len(raw)} bytes > {limit}")
    versions = _VERSIONS.get(topic)
    try:
        if versions is None:
            return _DECODERS[topic].decode(raw)
        version = _PEEK.decode(raw).v
        decoder = versions.get(version)
        if decoder is None:
            raise InvalidEvent(  # msgspec's words for a one-version topic, and which it reads
                f"Invalid enum value {version} - at `$.v`: {topic} is read in schema versions "
                f"{', '.join(map(str, versions))}")
        event = decoder.decode(raw)
    except msgspec.DecodeError as exc:  # covers bad JSON and ValidationError
        raise InvalidEvent(str(exc)) from None
    return event if type(event) is TOPICS[topic].schema else event.as_current()


def key_of(topic: str, event) -> bytes | None:
    key = _SPECS[topic].key_field
    return getattr(event, key).encode() if key else None

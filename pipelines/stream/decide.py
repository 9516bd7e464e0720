"""The decide stage: join a transfer's parts, score, apply rules and lists, decide, explain.

Parts arrive on ``transfer-parts`` in their sender's partition, in bundles (one record holds the
parts an entity-events record produced for that partition). They wait in memory,
*unacknowledged*, until every part of their transfer is in: a record is acknowledged once every
transfer its parts belong to is decided, and a crash re-reads it from Kafka, so the join needs
no table writes. Complete transfers are decided in micro-batches (one model call, one rules call,
reason codes only for what is not approved). A decision's id is derived from its transfer, so a
redelivered transfer yields the same decision, which the payment service applies once.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.vector import FEATURE_NAMES, WARNING_CODES, combine, transfer_part
from models import policy, registry
from models.scorer import Scorer
from pipelines.contracts import metrics, schemas
from pipelines.contracts.topics import decode
from pipelines.kafka.delivery import Sender
from pipelines.stream.acks import CrashAfterProduce, InOrderAcks, take
from pipelines.stream.control import Control
from pipelines.stream.envelopes import Part, decode_parts

log = logging.getLogger(__name__)
# Decide with the parts that came, as a last resort: a part only comes late, never lost (parts
# are acknowledged in order), but after a restart the entity stage may hold a partition for
# many seconds until every source's watermark is back. The payment service holds a transfer
# undecided at its payout deadline, so waiting costs no money.
PART_TIMEOUT_S = 60.0
LOAD_RETRY_S = 5.0  # how soon a model that could not be loaded is tried again


def warning_code(reasons: list[schemas.ReasonCode]) -> str:
    """The in-chat warning of the strongest reason that has one (``WARNING_CODES``: declared by
    the feature families)."""
    for reason in reasons:
        if reason.feature in WARNING_CODES:
            return WARNING_CODES[reason.feature]
    return "unusual_transfer"


class Held:
    """A transfer-parts record, acknowledged once each of its parts was ``release``d."""
    __slots__ = ("acks", "handle", "parts")

    def __init__(self, acks: InOrderAcks, handle, parts: int):
        self.acks, self.handle, self.parts = acks, handle, parts
        if not parts:
            acks.finish(handle)

    def release(self) -> None:
        self.parts -= 1
        if not self.parts:
            self.acks.finish(self.handle)  # only now may the consumer commit past the record


@dataclass
class Pending:
    transfer: schemas.TransferRequested  # decoded once, from its first part
    parts: list[Part] = field(default_factory=list)
    events: list = field(default_factory=list)  # a Held per part, released once decided
    first_seen: float = field(default_factory=time.monotonic)


def _clean(value: float):
    return None if value != value else float(value)  # NaN -> None (JSON has no NaN)


class DecideStage:
    """Framework-free: ``add`` parts, ``ready`` transfers come out, ``decide`` a batch."""

    def __init__(self, control: Control, models_root=None):
        self.control = control
        self.models_root = models_root
        # the transfers waiting for parts, by the transfer's bytes (every part of a transfer
        # carries the very bytes the ingest read, so one decode serves them all)
        self.pending: dict[bytes, Pending] = {}
        self._scorers: dict[str, Scorer] = {}
        self._failed: dict[str, float] = {}  # version -> when it last failed to load
        self._last_acting = None  # the last promoted model this worker scored with
        self.adjust = None  # (transfer, action, rule hits) -> action, e.g. recovery holds

    def scorer(self, which: str):
        """The acting or shadow model, loaded whole before it scores anything (a batch holds
        one scorer throughout, and names its version in every decision). Only a promoted model
        acts: a model trained since, however new, waits for its promotion. An acting version
        this worker cannot load (promoted before its files reached this machine, say, or one
        needing features it does not compute) leaves the model that acted before in place (on
        a fresh worker, the previous promoted one); with none, None: rules and lists decide."""
        scorer = self._load(self.control.model(which), which)
        if which != "acting":
            return scorer
        if scorer is not None:
            self._last_acting = scorer
        else:
            scorer = self._last_acting or self._load(self.control.model("previous"), "previous")
        return scorer

    def _load(self, version, which: str):
        """The scorer of ``version``, loaded once; None while it cannot be (tried again every
        ``LOAD_RETRY_S``: a promoted model's files may reach this machine after the update)."""
        if version is None:
            return None
        if version not in self._scorers:
            if time.monotonic() - self._failed.get(version, float("-inf")) < LOAD_RETRY_S:
                return None
            try:
                scorer = Scorer.load(version, self.models_root)
                missing = registry.missing_features(scorer.meta, FEATURE_NAMES)
                if missing:  # the router refuses its promotion; never score with it anyway
                    raise ValueError(f"needs features the worker does not compute: {missing}")
            except Exception as exc:  # a missing or corrupt model must not stop decisions
                log.error("cannot load %s model %s: %s", which, version, exc)
                self._failed[version] = time.monotonic()
                return None
            self._scorers[version] = scorer
        return self._scorers[version]

    def add(self, part: Part, event) -> list[Pending]:
        """Add one part; returns the transfers it completed, plus any that timed out."""
        pending = self.pending.get(part.transfer)
        if pending is None:
            pending = self.pending[part.transfer] = Pending(
                decode("transfer-requests", part.transfer))
        if all(p.kind != part.kind or p.role != part.role for p in pending.parts):
            pending.parts.append(part)  # a redelivered part replaces nothing
        pending.events.append(event)
        if len(pending.parts) >= part.parts:
            return [self.pending.pop(part.transfer)]
        return []

    def overdue(self) -> list[Pending]:
        now = time.monotonic()
        late = [key for key, p in self.pending.items() if now - p.first_seen > PART_TIMEOUT_S]
        if late:
            log.warning("deciding %d transfers with missing parts", len(late))
        return [self.pending.pop(key) for key in late]

    def decide(self, batch: list[Pending]) -> list[schemas.Decision]:
        transfers = [p.transfer for p in batch]
        vectors = [combine([transfer_part(tr)] + [part.features for part in p.parts])
                   for tr, p in zip(transfers, batch)]
        decisions = self._decide(transfers, vectors, "acting", shadow=False)
        shadow = self.scorer("shadow")
        if shadow is not None:
            decisions += self._decide(transfers, vectors, "shadow", shadow=True)
        return decisions

    def _decide(self, transfers, vectors, which: str, shadow: bool) -> list[schemas.Decision]:
        scorer = self.scorer(which)
        rules = self.control.rules
        if rules.rules:  # the table costs ~3 ms a batch: built only when a rule will read it
            rule_hits = rules.evaluate(pd.DataFrame(vectors, columns=list(FEATURE_NAMES)))
        else:
            rule_hits = [[] for _ in transfers]
        lists = self.control.lists
        if scorer is not None:
            matrix = scorer.matrix(vectors)
            scores = scorer.score(matrix)
            model_actions = scorer.actions(scores)
        else:  # no model promoted: rules and lists alone (docs/models.md#promotion)
            matrix, scores = None, np.full(len(transfers), np.nan)
            model_actions = [policy.NO_MODEL_ACTION] * len(transfers)
        actions = []
        for i, tr in enumerate(transfers):
            hits = lists.hits(tr.sender, tr.recipient, tr.device, tr.card, tr.ts)
            action, _ = policy.decide(float(scores[i]), model_actions[i],
                                      rules.with_actions(rule_hits[i]), hits)
            if self.adjust is not None and not shadow:
                action = self.adjust(tr, action, rule_hits[i])
            actions.append((action, hits))
        explain = [i for i, (action, _) in enumerate(actions) if action != "approve"]
        reasons = dict(zip(explain, scorer.reasons(matrix, explain))) if scorer and explain else {}
        now = int(time.time() * 1000)
        out = []
        for i, tr in enumerate(transfers):
            action, hits = actions[i]
            out.append(schemas.Decision(
                id=f"{tr.transfer_id}.{'s' if shadow else 'd'}", ts=now,
                transfer_id=tr.transfer_id, sender=tr.sender, recipient=tr.recipient,
                amount_cents=tr.amount_cents, action=action, score=_clean(scores[i]) or 0.0,
                model_version=scorer.version if scorer else policy.RULES_ONLY, shadow=shadow,
                rule_hits=list(rule_hits[i]), list_hits=hits,
                reasons=reasons.get(i, []),
                features={k: _clean(v) for k, v in vectors[i].items()},
                latency_ms=float(now - tr.ts),
            ))
        return out


def notification_for(decision: schemas.Decision):
    """The in-chat warning for a warned transfer, tailored to its strongest reason."""
    if decision.action != "warn" or decision.shadow:
        return None
    return schemas.Notification(id=f"{decision.transfer_id}.w", ts=decision.ts,
                                account=decision.sender, kind="transfer_warning",
                                code=warning_code(decision.reasons),
                                transfer_id=decision.transfer_id)


def receive(stage: DecideStage, acks: InOrderAcks, records) -> list[Pending]:
    """Track transfer-parts ``records`` (Faust events, in offset order) and add their parts;
    returns the transfers they completed. A record stays unacknowledged until ``decided`` was
    called for every transfer its parts belong to."""
    ready = []
    for record in records:
        handle = acks.track(record)
        try:
            parts = decode_parts(record.value)
        except Exception:
            log.exception("unreadable parts at offset %d", record.message.offset)
            parts = []
        held = Held(acks, handle, len(parts))
        now = time.time() * 1000
        for part in parts:
            try:
                completed = stage.add(part, held)
                for pending in completed:
                    metrics.transfer_reached("parts_complete", pending.transfer.ts, now)
                ready += completed
            except Exception:
                log.exception("unreadable part at offset %d", record.message.offset)
                held.release()
    return ready


def decided(transfers: list[Pending]) -> None:
    """``transfers``' decisions were sent: their parts are done with (the producer is flushed
    before any commit, by Faust's consumer)."""
    for pending in transfers:
        for held in pending.events:
            held.release()


def register(app, control: Control, parts_topic, adjust=None) -> None:
    decisions = Sender(app, "decisions")
    notifications = Sender(app, "notifications")
    stage = DecideStage(control)
    stage.adjust = adjust
    acks = InOrderAcks()
    acks.register(app, parts_topic.get_topic_name())

    crash_hook = CrashAfterProduce("decide")

    @app.agent(parts_topic, name="decide")
    async def decide(stream):
        async for batch in take(stream, 500):  # one scoring call for a window's transfers
            await publish(receive(stage, acks, batch))

    @app.timer(1.0)
    async def decide_overdue():
        """Transfers whose parts stopped coming are decided on what arrived (missing = NaN)."""
        await publish(stage.overdue())

    async def publish(ready: list[Pending]) -> None:
        if not ready:
            return
        for decision in stage.decide(ready):
            await decisions.send(key=decision.sender.encode(), value=schemas.encode(decision))
            metrics.decided(decision)
            note = notification_for(decision)
            if note is not None:
                await notifications.send(key=note.account.encode(), value=schemas.encode(note))
        if crash_hook.armed:
            await app.producer.flush()
            crash_hook.produced_one()
        decided(ready)

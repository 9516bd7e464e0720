"""The Router: what happens to a valid input event after validation. A feature event is routed
to the entities it touches (bundled by entity-events partition); an analyst action, once its
console signature and its role are checked, changes rules or lists, claims or decides a held
transfer (the first release or block wins) or drives a recovery case; a model update moves the acting, previous and shadow models. An action or update
that cannot apply is refused: a dead letter with the reason, nothing changed."""
from __future__ import annotations

import logging
import time
from typing import Optional

from features import routing
from features.vector import FEATURE_NAMES
from models import registry
from models.scorer import Scorer
from pipelines.contracts import schemas, signatures
from pipelines.contracts.topics import FEATURE_TOPICS
from pipelines.kafka.tables import raw_topic
from pipelines.recovery import stage as recovery
from pipelines.stream import control as control_mod, entities, ingest
from pipelines.stream.envelopes import source_id

log = logging.getLogger(__name__)


class Router:
    """What happens to a valid input event after validation."""

    def __init__(self, entity_topic, control: control_mod.Control, dead_letters, clock,
                 bundler: entities.Bundler):
        self.entity_topic = entity_topic
        self.clock = clock  # watermarks.SourceClock: each feature source's order_ts
        self.bundler = bundler  # the micro-batch's routed events, by entity-events partition
        self.control = control
        self.dead_letters = dead_letters
        self.decisions = raw_topic(entity_topic.app, "decisions")
        self.handled: list[tuple[int, int, Optional[int]]] = []  # (source, offset, order_ts)

    async def __call__(self, topic: str, event, message) -> None:
        if topic in FEATURE_TOPICS:
            source = source_id(topic, message.partition)
            order_ts = self.clock.stamp(source, routing.event_time(event))
            for key, routed in entities.routed_for(event, topic, message.value, source,
                                                   message.offset, order_ts):
                self.bundler.add(key, routed)
            self.handled.append((source, message.offset, order_ts))
        elif topic == "analyst-actions":
            await self.analyst_action(event, message)
        elif topic == "model-updates":
            await self.model_update(event, message)

    def skipped(self, message) -> None:
        """A dead-lettered input record: handled too, as far as its source's progress goes."""
        if message.topic in FEATURE_TOPICS:
            self.handled.append((source_id(message.topic, message.partition), message.offset,
                                 None))

    async def flush(self) -> None:
        """The end of a micro-batch: its routed events leave, and only then may the clock
        count them handled (a watermark announced before them would let them arrive late)."""
        await self.bundler.flush()
        for source, offset, order_ts in self.handled:
            self.clock.done(source, offset, order_ts)
        self.handled.clear()

    async def refuse(self, reason: str, message) -> None:
        letter = ingest.dead_letter(reason, message.topic, message.partition, message.offset,
                                    message.value)
        await self.dead_letters.send(value=schemas.encode(letter))
        log.warning("refused %s[%d]@%d: %s", message.topic, message.partition, message.offset, reason)

    async def analyst_action(self, action: schemas.AnalystAction, message) -> None:
        unverified = action_refusal(action)
        if unverified:  # before anything else: a forged or over-reaching action changes nothing
            await self.refuse(f"{action.action} refused: {unverified}", message)
            return
        params = dict(action.params)
        try:
            if action.action == "rule_change":
                await self.control.change_rules({**params, "ts": action.ts, "author": action.actor})
            elif action.action in ("add_to_list", "remove_from_list"):
                op = "add" if action.action == "add_to_list" else "remove"
                await self.control.change_lists({**params, "op": op, "kind": action.target_kind,
                                           "value": action.target, "ts": action.ts,
                                           "author": action.actor, "reason": action.reason})
            elif action.action in ("release", "block") and action.target_kind == "transfer":
                await self.analyst_decision(action, params)
            elif action.action in ("claim", "assign") and action.target_kind == "transfer":
                await self.control.transfer_action(action)
            elif action.action in ("open_case", "case_transition"):  # account recovery
                topic, key, value = recovery.from_analyst(action)
                await raw_topic(self.entity_topic.app, topic).send(key=key, value=value)
        except (control_mod.RuleError, control_mod.ListError, control_mod.ActionError, KeyError,
                ValueError) as exc:
            await self.refuse(f"{action.action} refused: {exc}", message)

    async def analyst_decision(self, action: schemas.AnalystAction, params: dict) -> None:
        """Release or block a held transfer: a decision the payment service applies. The first
        analyst's wins; a later one is refused (``Control.transfer_action``), never sent."""
        decision = schemas.Decision(
            id=f"{action.target}.a{action.ts}", ts=int(time.time() * 1000),
            transfer_id=action.target, sender=params["sender"], recipient=params["recipient"],
            amount_cents=int(params["amount_cents"]),
            action="approve" if action.action == "release" else "block",
            score=0.0, model_version=f"analyst:{action.actor}", reasons=[],
        )
        await self.control.transfer_action(action)
        await self.decisions.send(key=decision.sender.encode(), value=schemas.encode(decision))

    async def model_update(self, update: schemas.ModelUpdate, message) -> None:
        """Move the acting, previous and shadow models; refuse (dead letter with the reason, the
        models unchanged) a model the worker cannot feed or a rollback with nowhere to go."""
        control = self.control
        try:
            if update.action in ("promote", "shadow"):
                check_model(update.version)
            if update.action == "promote":
                acting = control.model("acting")
                if acting and acting != update.version:
                    await control.set_model("previous", acting)
                await control.set_model("acting", update.version)
            elif update.action == "rollback":
                previous = control.model("previous")
                if not previous:
                    raise ValueError("no previous model to roll back to")
                await control.set_model("previous", control.model("acting") or "")
                await control.set_model("acting", previous)
            elif update.action == "shadow":
                await control.set_model("shadow", update.version)
            elif update.action == "unshadow":
                await control.set_model("shadow", "")
        except ValueError as exc:
            await self.refuse(f"{update.action} {update.version} refused: {exc}", message)


def action_refusal(action: schemas.AnalystAction) -> Optional[str]:
    """Why the worker may not apply ``action`` (None: it may): it must carry the console's
    signature over all its fields (actor and role included), and its role must allow it."""
    unsigned = signatures.verify(action)
    if unsigned:
        return unsigned
    if action.role not in schemas.ACTION_ROLES.get(action.action, ()):
        return f"the role {action.role} may not {action.action.replace('_', ' ')}"
    return None


def check_model(version: str) -> None:
    """Raise ValueError for a model in the registry that this worker could not score with: one
    that does not load, or needs features the feature stage does not compute. A version not in
    the registry here passes, as before: its files may reach this machine after the update
    (``decide`` keeps the model that acted meanwhile). Loading takes tens of milliseconds, once
    per model update."""
    try:
        scorer = Scorer.load(version)
    except (FileNotFoundError, registry.NotAVersion):
        return
    except Exception as exc:  # a corrupt model file or meta: LightGBM's errors, KeyError...
        raise ValueError(f"model {version} cannot be loaded: {exc!r}"[:300]) from exc
    missing = registry.missing_features(scorer.meta, FEATURE_NAMES)
    if missing:
        raise ValueError(f"model {version} needs features the worker does not compute: "
                         f"{', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))

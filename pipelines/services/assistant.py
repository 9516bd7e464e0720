"""The payment assistant (port 8083): suggests a payment when friends talk about money.

Reads ``messages`` (group "vigie-assistant"): a money-talk message suggests a payment to its
recipient, towards its sender, if the recipient switched the assistant on (opt-in,
``PUT /v1/users/{user}/assistant``). At most one open suggestion per user and conversation,
for an hour: ``GET /v1/suggestions?user=&conversation=`` lists it and
``POST /v1/suggestions/{id}/response`` publishes what the user did with it. A suggestion's id
is derived from its message's id: a redelivered message suggests nothing new.

Every endpoint is the user's own (``pipelines.services.auth``): the switch, the suggestions
listed and the response, each only from that user's app.

Why: docs/services.md#assistant
"""
from __future__ import annotations

import asyncio
import uuid

from aiohttp import web

from pipelines.contracts import schemas as s
from pipelines.contracts.privacy import pseudonymize
from pipelines.services import idempotency as idem, requests as rq
from pipelines.services.auth import acting_for
from pipelines.services.common import (ApiError, GroupReader, LogReader, Recent, Service, now_ms,
                                       read_json, serve, validate)
from pipelines.services.requests import SuggestionsQuery, Switch

SUGGESTION_TTL_MS = 3_600_000
_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "vigie:assistant-suggestions")  # suggestion ids' namespace


class Assistant(Service):
    name = "assistant"

    def __init__(self, conf=None):
        super().__init__(conf)
        self.on: set[str] = set()  # users (hashes) who switched the assistant on
        # (user, conversation) -> its open suggestion; suggestion id -> its (user, conversation)
        self.pending = Recent(per_key=1, max_keys=200_000, max_age_ms=SUGGESTION_TTL_MS)
        self.keys = Recent(per_key=1, max_keys=200_000, max_age_ms=SUGGESTION_TTL_MS)

    def routes(self):
        return [web.get("/v1/suggestions", self.list_suggestions),
                web.post("/v1/suggestions/{id}/response", idem.keyed(self, self.respond)),
                web.put("/v1/users/{user}/assistant", self.switch)]

    # --- stream side ---------------------------------------------------------------------
    async def on_message(self, m: s.MessageSent) -> None:
        now = now_ms()
        if m.recipient not in self.on or now - m.ts > SUGGESTION_TTL_MS:
            return  # switched off, or too old to be worth suggesting
        suggestion_id = uuid.uuid5(_IDS, m.id).hex
        if self.keys.get(suggestion_id, now):
            return  # a redelivered message
        suggested = rq.suggestion_event(m, suggestion_id, now)
        if suggested is None:
            return
        await self.publish("assistant-events", suggested)
        key = (suggested.user, suggested.conversation)
        self.keys.add(suggestion_id, now, key)
        self.pending.add(key, now, suggested)  # replaces the one left unanswered

    async def on_account_event(self, ev: s.AccountEvent) -> None:
        if ev.kind == "assistant_enabled":
            self.on.add(ev.account)
        elif ev.kind == "assistant_disabled":
            self.on.discard(ev.account)

    # --- HTTP ----------------------------------------------------------------------------
    async def list_suggestions(self, request: web.Request) -> web.Response:
        q = validate(dict(request.query), SuggestionsQuery)
        acting_for(request, q.user)
        key = (pseudonymize("account", q.user), pseudonymize("conversation", q.conversation))
        return web.json_response({"suggestions": [
            {"suggestion_id": e.suggestion_id, "amount_cents": e.amount_cents, "ts": e.ts}
            for e in self.pending.get(key, now_ms())]})

    async def respond(self, request: web.Request) -> web.Response:
        req = await read_json(request, rq.SuggestionResponseRequest)
        acting_for(request, req.user)
        suggestion_id = request.match_info["id"]
        now = now_ms()
        key = next(iter(self.keys.get(suggestion_id, now)), None)
        suggested = next(iter(self.pending.get(key, now)), None) if key else None
        if suggested is None or suggested.suggestion_id != suggestion_id:
            raise ApiError(404, "unknown, expired, replaced or already answered suggestion")
        if pseudonymize("account", req.user) != suggested.user:
            raise ApiError(403, "this suggestion was shown to another user")
        event = rq.suggestion_response_event(suggested, req, f"{suggestion_id}.r", now)
        await self.publish("assistant-events", event)
        self.pending.discard(key, keep=lambda e: e.suggestion_id != suggestion_id)
        return web.json_response({"id": event.id}, status=202)

    async def switch(self, request: web.Request) -> web.Response:
        enabled = (await read_json(request, Switch)).enabled
        req = validate({"account": request.match_info["user"],
                        "kind": "assistant_enabled" if enabled else "assistant_disabled"},
                       rq.AccountEventRequest)
        acting_for(request, req.account)
        event = rq.account_event(req, uuid.uuid4().hex, now_ms())
        await self.publish("account-events", event)
        await self.on_account_event(event)  # honoured at once, not when the log comes back
        return web.json_response({"enabled": enabled, "id": event.id})

    async def start(self) -> None:
        switches, messages = await asyncio.gather(
            self.start_reader(LogReader(self.conf, "account-events")),
            self.start_reader(GroupReader(self.conf, "messages", "vigie-assistant")))
        await switches.catch_up(self.on_account_event)
        self.background(switches.follow(self.on_account_event), "switch reader")
        self.background(messages.follow(self.on_message), "messages consumer")


def build_app(conf=None) -> web.Application:
    return Assistant(conf).app()


def run(port: int | None = None) -> None:
    serve(build_app(), Assistant.name, port)

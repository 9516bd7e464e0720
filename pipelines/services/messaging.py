"""The messaging service (port 8081): chat metadata in, user notifications out.

``POST /v1/messages`` turns a message into its metadata and derived signals
(``requests.message_event``) and drops the text: it is never logged, stored or echoed back.
``POST /v1/account-events`` and ``POST /v1/reports`` publish account events and user scam
reports; ``POST /v1/takeover-reports`` a confirmed account takeover with its compromise window
(an ``ato_confirmed`` label: the simulator sends its ground truth there live, as it writes it
offline). ``GET /v1/notifications/{account}`` delivers what the stream told this user
(transfer and contact warnings, step-up challenges): the service follows the
``notifications`` topic and keeps the last day's, a bounded number per account, in memory.
The step-up challenge's code, sent to the owner's verified contact, and the owner's answer
with it (``POST /v1/recovery/{case_id}/answer``), published on ``owner-verification`` for the
stream to check: ``pipelines.services.owner_channel``.

Who may call what (``pipelines.services.auth``): a message, its sender's app; a scam report,
its reporter's (and one naming a transfer, only one of its parties' against the other:
``TransferParties``, the service follows ``transfer-requests``); notifications and a recovery
answer, the account owner's; a takeover report, internal services only. Account events: those
of the identity back end (``BACKEND_EVENTS``: sign-ups, logins, failed logins, password resets
happen before or without the user's session, so no user token can vouch for them) from
internal services only; the others (what a signed-in user changes) from the account owner's
app, or an internal service. Every POST answers an ``Idempotency-Key`` once, after a restart
and across instances too (``idempotency.keyed``).
"""
from __future__ import annotations

import asyncio
import inspect
import uuid

import msgspec
from aiohttp import web

from pipelines.contracts import schemas as s
from pipelines.contracts.limits import DAY_MS
from pipelines.contracts.privacy import pseudonymize
from pipelines.services import idempotency as idem, requests as rq
from pipelines.services.auth import CALLER, acting_for, internal
from pipelines.services.common import (ApiError, LogReader, Recent, Service, now_ms, read_json,
                                       serve, validate)
from pipelines.services.owner_channel import AccountPath, OwnerChannel

KEEP_NOTIFICATIONS_MS = 24 * 3600 * 1000
# How old a transfer a scam report may name (the features count a month of labels)
REPORTABLE_MS = 30 * DAY_MS
BACKEND_EVENTS = frozenset({"signup", "login", "login_failed", "password_reset"})


def _account_event_caller(request: web.Request, req: rq.AccountEventRequest) -> None:
    if req.kind in BACKEND_EVENTS or request[CALLER].scope == "internal":
        internal(request)
    else:
        acting_for(request, req.account)


class TransferParties:
    """Each transfer's sender and recipient (keyed hashes) for ``REPORTABLE_MS``, read from
    ``transfer-requests`` (rebuilt at start, then followed): what a scam report naming a
    transfer is checked against. At most ``max_keys`` transfers (~550 bytes each), the oldest
    forgotten first: a report naming one is refused (422) and can name the account alone."""

    def __init__(self, service: Service, max_keys: int = 300_000):
        self.service = service
        self.parties = Recent(per_key=1, max_keys=max_keys, max_age_ms=REPORTABLE_MS)
        self.reader: LogReader | None = None

    async def start(self) -> None:
        self.reader = await self.service.start_reader(LogReader(
            self.service.conf, "transfer-requests", since_ms=now_ms() - REPORTABLE_MS))
        await self.reader.catch_up(self.on_transfer)
        self.service.background(self.reader.follow(self.on_transfer), "transfers reader")

    async def on_transfer(self, t: s.TransferRequested) -> None:
        self.parties.add(t.transfer_id, t.ts, (t.sender, t.recipient))

    async def of(self, transfer_id: str) -> tuple[str, str] | None:
        """The transfer's (sender, recipient), looked for in the whole log if not read yet
        (a report right after its transfer); None if unknown or too old."""
        found = self.parties.get(transfer_id, now_ms())
        if not found:
            try:
                await self.reader.reach_end(idem.deadline_s())
            except asyncio.TimeoutError:
                raise idem.unavailable(idem.deadline_s()) from None
            found = self.parties.get(transfer_id, now_ms())
        return found[0] if found else None


class Messaging(Service):
    name = "messaging"

    def __init__(self, conf=None):
        super().__init__(conf)
        self.notifications = Recent(per_key=50, max_age_ms=KEEP_NOTIFICATIONS_MS)
        self.owner_channel = OwnerChannel(self, self.conf)
        self.transfers = TransferParties(self)

    def intake(self) -> dict:
        """What POST route publishes what: path -> (request struct, event builder (its result
        awaited if it is awaitable), topic, and the check of its caller, which raises a 403)."""
        return {
            "/v1/messages": (rq.MessageRequest, rq.message_event, "messages",
                             lambda request, req: acting_for(request, req.sender)),
            "/v1/account-events": (rq.AccountEventRequest, rq.account_event, "account-events",
                                   _account_event_caller),
            "/v1/reports": (rq.ScamReportRequest, self.scam_report, "labels",
                            lambda request, req: acting_for(request, req.reporter)),
            "/v1/takeover-reports": (rq.TakeoverReportRequest, rq.takeover_label, "labels",
                                     lambda request, req: internal(request)),
        }

    def routes(self):
        posts = [web.post(path, idem.keyed(self, self._intake(*spec)))
                 for path, spec in self.intake().items()]
        return posts + [web.get("/v1/notifications/{account}", self.get_notifications),
                        *self.owner_channel.routes()]

    def _intake(self, kind, build, topic, check_caller):
        async def handler(request: web.Request) -> web.Response:
            req = await read_json(request, kind)
            check_caller(request, req)
            event = build(req, uuid.uuid4().hex, now_ms())
            if inspect.isawaitable(event):
                event = await event
            await self.publish(topic, event)
            return web.json_response({"id": event.id}, status=202)
        return handler

    async def scam_report(self, req: rq.ScamReportRequest, event_id: str, now: int) -> s.Label:
        """A scam report's label; one naming a transfer only from one of its parties, against
        the other (403 / 422 with the reason otherwise), the label naming its true parties."""
        if req.transfer_id is None:
            return rq.scam_report_label(req, event_id, now)
        parties = await self.transfers.of(req.transfer_id)
        if parties is None:
            raise ApiError(422, f"unknown transfer_id, or older than {REPORTABLE_MS // DAY_MS} "
                                "days: report the account without it")
        reporter, reported = (pseudonymize("account", raw) for raw in (req.reporter, req.reported))
        if reporter not in parties:
            raise ApiError(403, "the reporter is neither the sender nor the recipient of this "
                                "transfer")
        if reported == reporter or reported not in parties:
            raise ApiError(422, "the reported account is not the other party of this transfer")
        return rq.scam_report_label(req, event_id, now, parties)

    async def get_notifications(self, request: web.Request) -> web.Response:
        raw = validate(dict(request.match_info), AccountPath).account
        acting_for(request, raw)
        found = self.notifications.get(pseudonymize("account", raw), now_ms())
        return web.json_response({"notifications": [msgspec.to_builtins(n) for n in found]})

    async def on_notification(self, n: s.Notification) -> None:
        self.notifications.add(n.account, n.ts, n)

    async def start(self) -> None:
        reader = await self.start_reader(LogReader(self.conf, "notifications",
                                           since_ms=now_ms() - KEEP_NOTIFICATIONS_MS))
        await reader.catch_up(self.on_notification)
        self.background(reader.follow(self.on_notification), "notifications reader")
        await self.transfers.start()
        await self.owner_channel.start()


def build_app(conf=None) -> web.Application:
    return Messaging(conf).app()


def run(port: int | None = None) -> None:
    serve(build_app(), Messaging.name, port)

"""The owner's verified channel (part of the messaging service): one-time codes for the
step-up challenges of account recovery.

An attacker who took an account over holds its app session, so whatever that session can read
(notifications included) proves nothing about who answers. The owner also holds a contact
verified before the compromise (a phone, a device), which the attacker does not: the challenge
goes there.

- Sending: when the stream challenges an owner (a ``step_up_challenge`` notification), the one
  messaging instance that consumer group ``vigie-owner-channel`` gives the account's
  ``notifications`` partition draws a code (``secrets``), publishes its keyed hash, bound to the
  case (``privacy.code_digest``), on ``owner-verification`` (``code_sent``), and only then hands
  the code to the delivery gateway: so the stream knows the code before anyone can answer with
  it (same topic, same key, same partition).
- Delivery is simulated: ``Outbox``, a spool directory under the data dir (0700) standing in for
  the SMS provider, one file per account, read by the gateway only, through
  ``GET /v1/owner-channel/{account}/outbox`` (an internal token; an end user's token gets 403).
  Any messaging instance on the host serves it, and a restart loses no code sent.
- Answering: ``POST /v1/recovery/{case_id}/answer`` from the owner's app (a user token for the
  account) with the answer and the code, published as an ``answer`` with the code's keyed hash.
  The recovery stage compares the hashes, counts wrong codes and writes the transition.

A code is never in a notification, a topic, the lake or a log: topics carry its keyed hash.

How and why: docs/recovery.md#the-owners-verified-channel
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import uuid
from pathlib import Path

import msgspec
from aiohttp import web

from pipelines.contracts import schemas as s, settings as settings_mod
from pipelines.contracts.privacy import code_digest, pseudonymize
from pipelines.services import auth, idempotency as idem, requests as rq
from pipelines.services.common import GroupReader, Service, now_ms, read_json, validate

log = logging.getLogger(__name__)
TOPIC = "owner-verification"
GROUP = "vigie-owner-channel"
CODE_DIGITS = 6
# a challenge older than this when read (a first start reads the log from its beginning) is
# over: its case has timed out (the owner-verification SLA is 30 min by default)
MAX_CHALLENGE_AGE_MS = 3600 * 1000
KEEP_MESSAGES, KEEP_MS = 5, 24 * 3600 * 1000  # what the simulated phone keeps per account


def new_code() -> str:
    return f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"


class AccountPath(msgspec.Struct, forbid_unknown_fields=True):
    account: rq.RawId


class CasePath(msgspec.Struct, forbid_unknown_fields=True):
    case_id: s.EventId


class Outbox:
    """The simulated delivery to each account's verified contact: a spool directory, one JSON
    file per account hash holding its last ``KEEP_MESSAGES`` codes (the newest last)."""

    def __init__(self, directory: Path):
        self.directory = directory

    def _path(self, account: str) -> Path:
        return self.directory / f"{account}.json"

    def read(self, account: str, now: int) -> list[dict]:
        try:
            messages = json.loads(self._path(account).read_text())
        except FileNotFoundError:
            return []
        return [m for m in messages if now - m["ts"] <= KEEP_MS]

    def deliver(self, account: str, message: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        messages = (self.read(account, message["ts"]) + [message])[-KEEP_MESSAGES:]
        path = self._path(account)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(messages, f)
        os.replace(tmp, path)


class OwnerChannel:
    """The messaging service's routes and consumer for owner verification."""

    def __init__(self, service: Service, conf: settings_mod.Settings):
        self.service, self.conf = service, conf
        self.outbox = Outbox(conf.data_dir / "owner-channel")

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v1/owner-channel/{account}/outbox", self.get_outbox),
                web.post("/v1/recovery/{case_id}/answer", idem.keyed(self.service, self.answer))]

    async def start(self) -> None:
        reader = await self.service.start_reader(GroupReader(self.conf, "notifications", GROUP))
        self.service.background(reader.follow(self.on_notification), "owner channel")

    # --- sending ---------------------------------------------------------------------------
    async def on_notification(self, n: s.Notification) -> None:
        now = now_ms()
        if n.kind != "step_up_challenge" or n.case_id is None or now - n.ts > MAX_CHALLENGE_AGE_MS:
            return
        code = new_code()
        await self.service.publish(TOPIC, s.OwnerVerification(
            id=f"code-{uuid.uuid4().hex}", ts=now, kind="code_sent", case_id=n.case_id,
            account=n.account, code_digest=code_digest(n.case_id, code), challenge_id=n.id))
        self.outbox.deliver(n.account, {"ts": now, "case_id": n.case_id, "code": code})

    async def get_outbox(self, request: web.Request) -> web.Response:
        """What the owner's verified contact received: for the delivery gateway only."""
        auth.internal(request)
        raw = validate(dict(request.match_info), AccountPath).account
        return web.json_response({"messages": self.outbox.read(pseudonymize("account", raw),
                                                                now_ms())})

    # --- answering -------------------------------------------------------------------------
    async def answer(self, request: web.Request) -> web.Response:
        """The owner's answer from the app, with the code: published for the recovery stage,
        which checks it against the case (a wrong code counts, a closed case changes
        nothing) and moves the case on."""
        case_id = validate(dict(request.match_info), CasePath).case_id
        body = await read_json(request, rq.RecoveryAnswerRequest)
        auth.acting_for(request, body.account)
        event = s.OwnerVerification(
            id=f"ans-{uuid.uuid4().hex}", ts=now_ms(), kind="answer", case_id=case_id,
            account=pseudonymize("account", body.account),
            code_digest=code_digest(case_id, body.code), answer=body.answer, actor=body.actor)
        await self.service.publish(TOPIC, event)
        return web.json_response({"id": event.id}, status=202)

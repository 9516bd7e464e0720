"""``Idempotency-Key``: a client's retry of a POST has the effect of one request, never two.

A client sends ``Idempotency-Key: <its own unique string>`` with a POST that creates or
changes something, and the same key when it retries. What this module gives a handler:

- ``key_id``: the key as a keyed hash (HMAC under ``VIGIE_HASH_KEY``) scoped to the caller,
  so two callers' keys never meet and the raw key is never stored or logged. The payment
  service uses it as the transfer id: a retry names the very transfer the first try made;
- ``Flights``: the work started for a key (a publish to Kafka) runs to its end even when the
  request that started it gives up waiting; a retry with the key joins it rather than
  starting it again. Waits are bounded by ``VIGIE_PUBLISH_DEADLINE_S``: past it, 503 with
  ``Retry-After``;
- ``Replies``: the answer given to each key, with its request's digest, for 24 h, for the
  endpoints whose own records are not keyed by it (messaging intakes, recovery answers,
  assistant responses, chargebacks): written to the service's compacted
  ``idempotency-<service>`` topic before the answer is given and read back at start, so a
  retry after a restart, or sent to another instance, gets the same answer (422 with another
  body). The payment service's transfers do not need it: the transfer log itself is the record
  (docs/services.md#payment).

Without a key nothing changes (the request is handled once, as sent): clients must send one.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
from collections import OrderedDict
from typing import Awaitable, Callable, Hashable, Optional, TypeVar

import msgspec
from aiohttp import web

from pipelines.contracts import privacy, schemas as s, settings
from pipelines.contracts.topics import KEEP_REPLIES_MS as KEEP_MS
from pipelines.services.auth import CALLER
from pipelines.services.common import LogReader, Service, now_ms
from pipelines.services.errors import ApiError

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"  # set on an answer given again for a key
MAX_KEY = 255
T = TypeVar("T")
log = logging.getLogger(__name__)


def deadline_s() -> float:
    """How long a request waits for the log before answering 503 (``VIGIE_PUBLISH_DEADLINE_S``)."""
    return settings.environment().services.publish_deadline_s


def header(request: web.Request) -> Optional[str]:
    """The request's key (None without one); 400 for an empty, too long or non-ASCII key."""
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not (0 < len(key) <= MAX_KEY and key.isascii() and key.isprintable()):
        raise ApiError(400, f"{HEADER} must be 1 to {MAX_KEY} printable ASCII characters")
    return key


def caller_scope(request: web.Request) -> str:
    """Whose keys these are: the authenticated caller (client, and user or scope), so one
    caller can never replay another's key to read its answer."""
    caller = request[CALLER]
    return f"{caller.client}/{caller.account or caller.scope}"


def key_id(scope: str, key: str, what: str) -> str:
    """The key, keyed-hashed with its scope and what it is for: 32 hex digits."""
    msg = f"idempotency:{what}:{scope}:{key}".encode()
    return hmac.new(privacy.hash_key(), msg, hashlib.sha256).hexdigest()[:32]


def digest(body: bytes) -> str:
    """A keyed digest of a request (its canonical encoding), to tell a retry from a new body."""
    return hmac.new(privacy.hash_key(), b"body:" + body, hashlib.sha256).hexdigest()


def unavailable(deadline: float) -> ApiError:
    return ApiError(503, "event log slow to answer: retry later with the same Idempotency-Key",
                    {"Retry-After": str(max(1, math.ceil(deadline)))})


class Flights:
    """Work in progress by key: started once, joined by retries, waited on with a deadline."""

    def __init__(self):
        self.running: dict[Hashable, asyncio.Task] = {}

    def start(self, key: Hashable, work: Awaitable[T]) -> asyncio.Task:
        task = self.running[key] = asyncio.ensure_future(work)

        def landed(done: asyncio.Task) -> None:
            if self.running.get(key) is done:
                del self.running[key]
            if not done.cancelled():
                done.exception()  # retrieved: a failure is the waiters' to report, not asyncio's
        task.add_done_callback(landed)
        return task

    async def wait(self, key: Hashable, deadline: Optional[float]) -> None:
        """Wait for ``key``'s work, if any is running: its failure is raised here; past
        ``deadline`` seconds (None: no deadline), 503 with Retry-After, the work going on."""
        task = self.running.get(key)
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), deadline)
        except asyncio.TimeoutError:
            raise unavailable(deadline) from None


class Replies:
    """A service's answers to keyed POSTs, for 24 h, on the log and in memory.

    The record is the service's own compacted topic ``idempotency-<service>``
    (``contracts.topics.REPLY_TOPICS``): one ``IdempotentReply`` a key (its keyed hash, the
    request's keyed digest, the status and the answer, which holds ids only), written before
    the answer is given. At start, before serving, the last 24 h of it are read back; then it
    is followed, so every instance of the service learns the others' answers. A key this
    instance does not know is first looked for in what the log holds now (``reach_end``):
    a retry sent to another instance, or after a restart, finds the first answer.

    In memory: the unexpired keys only (at most ``max_keys``, the oldest forgotten first)."""

    def __init__(self, service: Service, max_keys: int = 250_000, keep_ms: int = KEEP_MS):
        self.service, self.max_keys, self.keep_ms = service, max_keys, keep_ms
        self.topic = f"idempotency-{service.name}"
        self.answers: OrderedDict[str, s.IdempotentReply] = OrderedDict()  # oldest first
        self.unlogged: set[str] = set()  # answered here, not yet in the log (it refused)
        self.reader: Optional[LogReader] = None
        service.rebuilds.append(self.start)

    @classmethod
    def of(cls, service: Service) -> "Replies":
        """The service's one record of keyed answers (made on first use)."""
        replies = getattr(service, "keyed_replies", None)
        if replies is None:
            replies = service.keyed_replies = cls(service)
        return replies

    async def start(self) -> None:
        self.reader = await self.service.start_reader(
            LogReader(self.service.conf, self.topic, since_ms=now_ms() - self.keep_ms))
        await self.reader.catch_up(self.remember)
        self.service.background(self.reader.follow(self.remember), f"{self.topic} reader")
        log.info("%s: %d keyed answers of the last 24 h", self.topic, len(self.answers))

    async def remember(self, reply: s.IdempotentReply) -> None:
        """An answer, given here or read from the log (the latest for a key wins, as compaction
        keeps it); the expired ones go."""
        now = now_ms()
        self.answers.pop(reply.id, None)
        if now - reply.ts <= self.keep_ms:
            self.answers[reply.id] = reply
        while self.answers and (len(self.answers) > self.max_keys
                                or now - next(iter(self.answers.values())).ts > self.keep_ms):
            self.unlogged.discard(self.answers.popitem(last=False)[0])

    def known(self, key: str, body_digest: str) -> Optional[s.IdempotentReply]:
        """The answer this instance knows for the key, or None; 422 for the key with another
        body."""
        reply = self.answers.get(key)
        if reply is None or now_ms() - reply.ts > self.keep_ms:
            return None
        if reply.request != body_digest:
            raise ApiError(422, f"{HEADER} already used with another request body")
        return reply

    async def look_up(self) -> None:
        """Read the whole log as it is now (a key answered by another instance, or just before
        a restart, is known after it); 503 with Retry-After past the deadline."""
        if self.reader is not None:
            try:
                await self.reader.reach_end(deadline_s())
            except asyncio.TimeoutError:
                raise unavailable(deadline_s()) from None

    async def replay(self, reply: s.IdempotentReply) -> web.Response:
        """The answer given again; never before the log has it."""
        if reply.id in self.unlogged:
            await self._log(reply)
        return web.json_response(reply.answer, status=reply.status, headers={REPLAYED: "true"})

    async def put(self, key: str, body_digest: str, answer: web.Response) -> web.Response:
        """Record ``answer`` (ids only: anything else is refused here, a programming error)
        in memory, then in the log; it is given only once the log has it."""
        record = {"id": key, "ts": now_ms(), "request": body_digest, "status": answer.status,
                  "answer": msgspec.json.decode(answer.body)}
        reply = msgspec.convert(record, s.IdempotentReply)
        await self.remember(reply)
        self.unlogged.add(key)
        await self._log(reply)
        return answer

    async def _log(self, reply: s.IdempotentReply) -> None:
        await self.service.publish(self.topic, reply)
        self.unlogged.discard(reply.id)


async def once(replies: Replies, flights: Flights, request: web.Request, scope: str, what: str,
               body: bytes, handle: Callable[[], Awaitable[web.Response]]) -> web.Response:
    """Handle a POST once per key (without a key: as it comes): a retry with the same key and
    body gets the first answer (given here, by another instance, or before a restart), joins
    it while it runs here, and waits at most the deadline."""
    key = header(request)
    if key is None:
        return await handle()
    kid, body_digest = key_id(scope, key, what), digest(body)
    if kid not in flights.running and replies.known(kid, body_digest) is None:
        await replies.look_up()
    # No await from here until the work is started or joined: what is known now is final.
    joined = kid in flights.running
    if not joined:
        reply = replies.known(kid, body_digest)
        if reply is not None:
            return await replies.replay(reply)

        async def first() -> web.Response:
            return await replies.put(kid, body_digest, await handle())
        flights.start(kid, first())
    task = flights.running[kid]
    await flights.wait(kid, deadline_s())  # raises what the first try raised
    if not joined:
        return task.result()
    reply = replies.known(kid, body_digest)
    if reply is None:  # forgotten meanwhile (the bound): never handled twice
        raise ApiError(409, f"{HEADER} expired: use a new key")
    return await replies.replay(reply)


def keyed(service: Service, handler: Callable[[web.Request], Awaitable[web.Response]]):
    """``handler`` answering each ``Idempotency-Key`` once (``once``), with the service's
    record of answers (``Replies.of``): for a route, as ``web.post(path, keyed(self, handler))``."""
    replies, flights = Replies.of(service), Flights()

    async def wrapped(request: web.Request) -> web.Response:
        scope = caller_scope(request)
        return await once(replies, flights, request, scope, request.path, await request.read(),
                          lambda: handler(request))
    return wrapped

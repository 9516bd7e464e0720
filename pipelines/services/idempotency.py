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
- ``Replies``: a small in-memory record (24 h, bounded) of a key's request digest and answer,
  for endpoints whose effect is idempotent anyway (a chargeback is one label per transfer).
  The payment service's transfers do not need it: the transfer log itself is the record and
  survives restarts (docs/services.md#payment).

Without a key nothing changes (the request is handled once, as sent): clients must send one.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from collections import OrderedDict
from functools import lru_cache
from typing import Awaitable, Callable, Hashable, Optional, TypeVar

from aiohttp import web

from pipelines.contracts import settings
from pipelines.contracts.settings import env_seconds
from pipelines.services.auth import CALLER
from pipelines.services.errors import ApiError

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"  # set on an answer given again for a key
MAX_KEY = 255
KEEP_MS = 24 * 3_600_000
T = TypeVar("T")


def deadline_s() -> float:
    """How long a request waits for the log before answering 503 (``VIGIE_PUBLISH_DEADLINE_S``)."""
    return env_seconds("VIGIE_PUBLISH_DEADLINE_S", 5)


@lru_cache(maxsize=1)
def _hash_key() -> bytes:
    return settings.load().hash_key


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
    return hmac.new(_hash_key(), msg, hashlib.sha256).hexdigest()[:32]


def digest(body: bytes) -> str:
    """A keyed digest of a request (its canonical encoding), to tell a retry from a new body."""
    return hmac.new(_hash_key(), b"body:" + body, hashlib.sha256).hexdigest()


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
    """The answer given to each key (with its request digest), for 24 h, at most ``max_keys``."""

    def __init__(self, max_keys: int = 100_000, keep_ms: int = KEEP_MS):
        self.max_keys, self.keep_ms = max_keys, keep_ms
        self.answers: OrderedDict[str, tuple[int, str, web.Response]] = OrderedDict()

    def get(self, key: str, body_digest: str) -> Optional[web.Response]:
        """The answer given before for this key, or None; 422 for the key with another body."""
        now = int(time.time() * 1000)
        while self.answers and now - next(iter(self.answers.values()))[0] > self.keep_ms:
            self.answers.popitem(last=False)
        if key not in self.answers:
            return None
        _, seen, answer = self.answers[key]
        if seen != body_digest:
            raise ApiError(422, f"{HEADER} already used with another request body")
        return web.json_response(body=answer.body, status=answer.status,
                                 headers={REPLAYED: "true"})

    def put(self, key: str, body_digest: str, answer: web.Response) -> web.Response:
        self.answers[key] = (int(time.time() * 1000), body_digest, answer)
        while len(self.answers) > self.max_keys:
            self.answers.popitem(last=False)
        return answer


async def once(replies: Replies, flights: Flights, request: web.Request, scope: str, what: str,
               body: bytes, handle: Callable[[], Awaitable[web.Response]]) -> web.Response:
    """Handle a POST once per key (without a key: as it comes): a retry with the same key and
    body gets the first answer, joins it while it runs, and waits at most the deadline."""
    key = header(request)
    if key is None:
        return await handle()
    kid, body_digest = key_id(scope, key, what), digest(body)
    answer = replies.get(kid, body_digest)
    if answer is not None:
        return answer
    joined = kid in flights.running
    if not joined:
        async def first() -> web.Response:
            return replies.put(kid, body_digest, await handle())
        flights.start(kid, first())
    task = flights.running[kid]
    await flights.wait(kid, deadline_s())  # raises what the first try raised
    if not joined:
        return task.result()
    answer = replies.get(kid, body_digest)
    if answer is None:  # forgotten meanwhile (the bound): never handled twice
        raise ApiError(409, f"{HEADER} expired: use a new key")
    return answer


def keyed(handler: Callable[[web.Request], Awaitable[web.Response]]):
    """``handler`` answering each ``Idempotency-Key`` once (``once``), with its own memory of
    answers: for a route, as ``web.post(path, keyed(handler))``. In memory only (24 h, one
    instance): a retry after a restart is handled again."""
    replies, flights = Replies(), Flights()

    async def wrapped(request: web.Request) -> web.Response:
        scope = caller_scope(request)
        return await once(replies, flights, request, scope, request.path, await request.read(),
                          lambda: handler(request))
    return wrapped

"""Plumbing shared by the three thin HTTP services (messaging, payment, assistant).

A service is a ``Service`` subclass: it declares its routes and, in ``start``, rebuilds what
it keeps in memory from the log and starts its consumers. This module gives each one:

- strict request decoding: JSON into a ``pipelines.services.requests`` struct; bad JSON, wrong types,
  missing or unknown fields get a 400, a body over 64 KiB a 413, a non-JSON content type a
  415, always as ``{"error": "<reason>"}``. Never a 500 for bad input;
- authentication: every endpoint but ``/healthz`` wants a bearer token (``auth``: 401
  without a valid one); each handler then checks the token's subject (403);
- ``/healthz`` (503 once a background consumer has died);
- the ``Publisher`` (started before serving, flushed and stopped after the last request);
- log readers: ``LogReader`` reads whole topics without a consumer group (state rebuilt from
  the log, then followed), ``GroupReader`` reads a topic as a consumer group and commits
  after each batch (at-least-once: handlers are idempotent); both stopped at cleanup;
- ``Recent``: a bounded in-memory store of the recent items per key;
- privacy in logs: request bodies are never logged, and the access log names the route
  template (``/v1/notifications/{account}``), never the path, which may hold a raw id;
  ``pipelines.services.logs`` keeps raw request lines out and rate-limits repeated errors.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any, Awaitable, Callable, Hashable, Optional, TypeVar

import msgspec
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiokafka import ConsumerRebalanceListener
from aiokafka.errors import BrokerResponseError, CommitFailedError, KafkaError
from aiokafka.structs import TopicPartition

from pipelines.contracts import settings as settings_mod
from pipelines.contracts.topics import InvalidEvent, decode
from pipelines.kafka.clients import Publisher, consumer, ensure_topics
from pipelines.services import auth, logs, observe, openapi
from pipelines.services.errors import ApiError
from pipelines.services.observe import route_of as _route

log = logging.getLogger(__name__)
MAX_BODY = 64 * 1024
JSON_TYPES = {"application/json", "text/json"}
T = TypeVar("T")
R = TypeVar("R", bound="LogReader")
Handler = Callable[[Any], Awaitable[None]]


def now_ms() -> int:
    return int(time.time() * 1000)


# --- HTTP --------------------------------------------------------------------------------
@web.middleware
async def json_errors(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response({"error": exc.reason}, status=exc.status, headers=exc.headers)
    except web.HTTPException as exc:  # aiohttp's own: 404 no route, 405, 413 body too large
        if exc.status < 400:
            raise
        default = f"{exc.status}: {exc.reason}"
        reason = exc.text if exc.text and exc.text != default else exc.reason.lower()
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return web.json_response({"error": reason}, status=exc.status, headers=headers)
    except KafkaError as exc:
        log.error("%s %s: event log unavailable (%s)", request.method, _route(request),
                  type(exc).__name__)
        return web.json_response({"error": "event log unavailable, retry later"}, status=503,
                                 headers={"Retry-After": "1"})  # as every 503 of the services
    except Exception:
        log.exception("%s %s failed", request.method, _route(request))  # no body, no path
        return web.json_response({"error": "internal error"}, status=500)


async def read_json(request: web.Request, kind: type[T]) -> T:
    """The request body as a ``kind`` struct, or an ``ApiError`` saying what is wrong."""
    if "Content-Type" in request.headers and request.content_type not in JSON_TYPES:
        raise ApiError(415, f"expected application/json, got {request.content_type}")
    raw = await request.read()  # raises 413 past the app's client_max_size
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"bad JSON: {exc}") from None


def validate(obj: dict, kind: type[T]) -> T:
    """Path and query parameters through the same strict struct validation as bodies."""
    try:
        return msgspec.convert(obj, kind)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"invalid request: {exc}") from None


class RouteAccessLogger(AbstractAccessLogger):
    """One line a request with the route template, never the path or the query string."""

    def log(self, request, response, time: float) -> None:
        level = logging.INFO if response.status >= 400 else logging.DEBUG
        self.logger.log(level, "%s %s %s %.1fms", request.method, _route(request),
                        response.status, time * 1000)


# --- the service -------------------------------------------------------------------------
class Service:
    """One thin service: routes, a publisher, background consumers, graceful stop."""

    name = "service"

    def __init__(self, conf: Optional[settings_mod.Settings] = None):
        self.conf = conf or settings_mod.load()
        self.publisher: Optional[Publisher] = None
        self.tasks: list[asyncio.Task] = []
        self.readers: list[LogReader] = []
        # What else rebuilds its state from the log before serving (``idempotency.Replies``)
        self.rebuilds: list[Callable[[], Awaitable[None]]] = []
        self.verifier = auth.Verifier(auth.keys_dir(self.conf))

    def routes(self) -> list[web.RouteDef]:
        return []

    async def start(self) -> None:
        """Subclasses rebuild their state here, then start their consumers (before serving)."""

    async def publish(self, topic: str, event) -> None:
        publisher = self.publisher
        try:
            await publisher.publish(topic, event)  # waits for the broker's ack
        except BrokerResponseError as exc:
            if not exc.retriable and publisher is self.publisher:
                # aiokafka's idempotent producer does not reset a partition's sequence after
                # the broker refused a batch: every later record there would be refused as
                # out of order. A new producer (a new producer id) starts afresh.
                log.warning("%s: the broker refused a record (%s): new producer", self.name,
                            type(exc).__name__)
                self.publisher = await Publisher(self.conf).start()
                await publisher.stop()
            raise

    async def start_reader(self, reader: R) -> R:
        """Start a log or group reader; it is stopped at cleanup."""
        self.readers.append(reader)
        return await reader.start()

    def background(self, coro: Awaitable[None], what: str) -> None:
        """Run ``coro`` until cleanup; if it dies, say so in the log and in /healthz."""
        def died(task: asyncio.Task) -> None:
            if not task.cancelled() and task.exception() is not None:
                log.error("%s: %s stopped", self.name, what, exc_info=task.exception())
        task = asyncio.ensure_future(coro)
        task.add_done_callback(died)
        self.tasks.append(task)

    async def _startup(self, app) -> None:
        await ensure_topics(self.conf)
        self.publisher = await Publisher(self.conf).start()
        try:
            for rebuild in self.rebuilds:
                await rebuild()
            await self.start()
        except BaseException:
            await self._cleanup(app)  # aiohttp does not clean up after a failed startup
            raise

    async def _cleanup(self, app) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(reader.stop() for reader in self.readers), return_exceptions=True)
        if self.publisher is not None:
            await self.publisher.stop()  # flushes what in-flight requests sent

    async def healthz(self, request: web.Request) -> web.Response:
        dead = [t for t in self.tasks if t.done()]
        return web.json_response({"service": self.name, "ok": not dead},
                                 status=503 if dead else 200)

    def app(self) -> web.Application:
        logs.hide_request_lines()
        # counted outermost (it sees every answer), then json_errors: it answers the
        # authentication's 401 as {"error": reason}
        app = web.Application(client_max_size=MAX_BODY,
                              middlewares=[observe.count_requests(self.name), json_errors,
                                           auth.middleware(self.verifier)])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", observe.serve_metrics)  # Prometheus, internal token
        app.router.add_get("/openapi.json", openapi.handler(self.name))  # the API reference, public
        app.add_routes(self.routes())
        app.on_startup.append(self._startup)
        app.on_cleanup.append(self._cleanup)
        return app


def serve(app: web.Application, name: str, port: Optional[int] = None) -> None:
    """Run until SIGINT/SIGTERM, then finish in-flight requests and stop consumers cleanly."""
    host = settings_mod.environment().deployment.bind_host
    port = port or settings_mod.load().service_ports[name]
    logs.limit_repeats()  # a broker outage must not flood the log (aiokafka's loggers included)
    web.run_app(app, host=host, port=port, access_log_class=RouteAccessLogger, shutdown_timeout=10,
                print=lambda _: log.info("%s service ready on http://%s:%d", name, host, port))


# --- reading the log ---------------------------------------------------------------------
async def _dispatch(batches: dict, handler: Handler, read_to: Optional[dict] = None,
                    together: bool = False) -> None:
    """Decode each record with its topic's schema and hand it over; a record that does not
    decode, or that its handler fails on, is logged by position (never by content) and
    skipped, so one bad record cannot stop a service. ``read_to``: each partition's next
    offset once its record has been handled. ``together``: the batch's records are handled
    concurrently, each started in order (a handler keeps the order it needs with a lock taken
    before its first wait), and all have ended on return."""
    async def handle(rec) -> None:
        try:
            await handler(decode(rec.topic, rec.value))
        except InvalidEvent as exc:
            log.warning("skipped invalid record %s[%d]@%d: %s", rec.topic, rec.partition,
                        rec.offset, exc)
        except Exception:
            log.exception("failed on record %s[%d]@%d", rec.topic, rec.partition, rec.offset)

    if together:
        await asyncio.gather(*(handle(rec) for records in batches.values() for rec in records))
        return
    for tp, records in batches.items():
        for rec in records:
            await handle(rec)
            if read_to is not None:
                read_to[tp] = rec.offset + 1


class LogReader:
    """Every partition of some topics, without a consumer group: from the beginning, or from
    ``since_ms`` (event time). ``catch_up`` reads to the end offsets seen at ``start`` (state
    rebuilt before serving); ``follow`` then reads on for ever."""

    def __init__(self, conf: settings_mod.Settings, *topics: str, since_ms: Optional[int] = None):
        # Subscribed without a group: aiokafka assigns every partition once started.
        self.consumer = consumer(*topics, conf=conf, enable_auto_commit=False)
        self.since_ms = since_ms
        self.ends: dict[TopicPartition, int] = {}
        self.read_to: dict[TopicPartition, int] = {}  # each partition's next offset to handle

    async def start(self) -> "LogReader":
        c = self.consumer
        await c.start()
        parts = list(c.assignment())
        self.ends = await c.end_offsets(parts)
        if self.since_ms is None:
            await c.seek_to_beginning(*parts)
        else:
            found = await c.offsets_for_times({tp: self.since_ms for tp in parts})
            for tp in parts:
                c.seek(tp, found[tp].offset if found.get(tp) else self.ends[tp])
        self.read_to = {tp: await c.position(tp) for tp in parts}
        return self

    async def catch_up(self, handler: Handler) -> None:
        c = self.consumer
        while any([await c.position(tp) < end for tp, end in self.ends.items()]):
            await _dispatch(await c.getmany(timeout_ms=500), handler, self.read_to)

    async def follow(self, handler: Handler) -> None:
        while True:
            await _dispatch(await self.consumer.getmany(timeout_ms=1000), handler, self.read_to)

    async def reach_end(self, timeout_s: float) -> None:
        """Return once ``follow`` has handled every record in the log now (what any other
        writer had published before this call); ``asyncio.TimeoutError`` past ``timeout_s``."""
        async with asyncio.timeout(timeout_s):  # the broker away: end_offsets waits
            ends = await self.consumer.end_offsets(list(self.read_to))
            while any(self.read_to[tp] < end for tp, end in ends.items()):
                await asyncio.sleep(0.005)

    async def stop(self) -> None:
        await self.consumer.stop()  # idempotent


class GroupReader(LogReader):
    """One topic read as consumer group ``group`` from its committed offsets. ``start`` returns
    once the group has given it its partitions, so nothing is served before it can listen;
    offsets are committed after each handled batch, so a crash redelivers at most one batch,
    which the idempotent handlers ignore. A batch during which the group moved partitions is
    read again, not committed: a handler may have dropped a record of a partition given up
    meanwhile (the payment service drops a change it no longer owns), and its next owner, this
    instance again perhaps, must read it."""

    handles_together = False  # a batch's records handled concurrently (``_dispatch``)

    def __init__(self, conf: settings_mod.Settings, topic: str, group: str):
        self.consumer = consumer(group_id=group, conf=conf, enable_auto_commit=False)
        self.topic, self.assigned = topic, asyncio.Event()
        self.moves = 0  # partitions revoked or assigned so far (by the rebalance listener)

    async def start(self, timeout_s: float = 60.0) -> "GroupReader":
        await self.consumer.start()
        self.consumer.subscribe([self.topic], listener=_Assigned(self))
        await asyncio.wait_for(self.assigned.wait(), timeout_s)
        return self

    async def follow(self, handler: Handler) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=1000, max_records=500)
            if not batches:
                continue
            moves = self.moves
            await _dispatch(batches, handler, together=self.handles_together)
            if self.moves != moves:
                log.info("%s: partitions moved while a batch was handled: read again",
                         self.topic)
                owned = self.consumer.assignment()
                for tp, records in batches.items():
                    if tp in owned:
                        self.consumer.seek(tp, records[0].offset)
                continue
            try:
                await self.consumer.commit()
            except CommitFailedError:  # a rebalance took the partitions: redelivered
                log.warning("%s: commit failed after a rebalance", self.topic)


class _Assigned(ConsumerRebalanceListener):
    def __init__(self, reader: GroupReader):
        self.reader = reader

    async def on_partitions_revoked(self, revoked) -> None:
        self.reader.moves += 1

    async def on_partitions_assigned(self, assigned) -> None:
        self.reader.moves += 1
        self.reader.assigned.set()


# --- bounded memory ----------------------------------------------------------------------
class Recent:
    """The recent items of each key, bounded three ways: ``per_key`` items a key (oldest
    dropped), ``max_keys`` keys (the least recently written dropped) and ``max_age_ms``."""

    def __init__(self, per_key: int = 50, max_keys: int = 100_000, max_age_ms: int = 3_600_000):
        self.per_key, self.max_keys, self.max_age_ms = per_key, max_keys, max_age_ms
        self.items: OrderedDict[Hashable, list[tuple[int, Any]]] = OrderedDict()

    def add(self, key: Hashable, ts_ms: int, item) -> None:
        items = self.items.pop(key, [])
        items.append((ts_ms, item))
        del items[:-self.per_key]
        self.items[key] = items  # now the most recently written
        while len(self.items) > self.max_keys:
            self.items.popitem(last=False)

    def get(self, key: Hashable, now: int) -> list:
        return [item for ts, item in self.items.get(key, ()) if now - ts <= self.max_age_ms]

    def discard(self, key: Hashable, keep: Callable[[Any], bool]) -> None:
        if key in self.items:
            self.items[key] = [(ts, item) for ts, item in self.items[key] if keep(item)]

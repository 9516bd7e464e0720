"""Helpers for tests that talk to the thin services and the broker: run an async test, fresh
raw ids, bearer-token headers, a service served in-process, a publisher, a tap that reads
topics from now on."""
from __future__ import annotations

import asyncio
import functools
import inspect
import time
import uuid
from contextlib import asynccontextmanager

import pytest
from aiohttp.test_utils import TestClient, TestServer, unused_port

from pipelines.contracts.privacy import pseudonymize
from pipelines.contracts.topics import decode
from pipelines.kafka.clients import Publisher, consumer
from pipelines.services import auth
from pipelines.services.common import RouteAccessLogger


def aio(fn):
    """Run an async test body in its own event loop (no pytest-asyncio here)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


def rid(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def acc(raw: str) -> str:
    return pseudonymize("account", raw)


def as_user(raw_account: str, client: str = "test-app") -> dict:
    """Headers of an end user's app signed in as ``raw_account``."""
    return {"Authorization": f"Bearer {auth.Issuer().mint(client, user=raw_account)}"}


def as_internal(client: str = "test-backoffice") -> dict:
    """Headers of an internal service (chargebacks, labels, takeover reports)."""
    return {"Authorization": f"Bearer {auth.Issuer().mint(client, scope='internal')}"}


@asynccontextmanager
async def serving(module):
    auth.ensure_keys()  # as `vigie run` does: the service verifies tokens with these keys
    # On a port known before it starts: an instance that announces its URL (the payment
    # service's instances forward each other's senders) announces the right one.
    port = unused_port()
    announces = "url" in inspect.signature(module.build_app).parameters
    app = module.build_app(url=f"http://127.0.0.1:{port}") if announces else module.build_app()
    client = TestClient(TestServer(app, host="127.0.0.1", port=port,
                                   access_log_class=RouteAccessLogger))
    await client.start_server()  # runs on_startup: state rebuilt, consumers started
    try:
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def publisher():
    pub = await Publisher().start()
    try:
        yield pub
    finally:
        await pub.stop()


class Tap:
    """The records published to some topics from the moment the tap opens."""

    def __init__(self, *topics: str):
        self.topics, self.records = topics, []
        self.consumer = consumer(*topics, enable_auto_commit=False)  # no group: every partition

    async def __aenter__(self) -> "Tap":
        c = self.consumer
        await c.start()
        for tp, end in (await c.end_offsets(list(c.assignment()))).items():
            c.seek(tp, end)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.consumer.stop()

    async def _read(self) -> None:
        for records in (await self.consumer.getmany(timeout_ms=200)).values():
            self.records.extend(records)

    async def drain(self) -> list:
        """Everything published so far."""
        ends = await self.consumer.end_offsets(list(self.consumer.assignment()))
        while any([await self.consumer.position(tp) < end for tp, end in ends.items()]):
            await self._read()
        return self.records

    def events(self, topic: str) -> list:
        return [decode(topic, r.value) for r in self.records if r.topic == topic]

    async def until(self, found, timeout: float = 15.0):
        """Read on until ``found(self)`` is truthy, and return it."""
        deadline = time.monotonic() + timeout
        while not (result := found(self)):
            if time.monotonic() > deadline:
                pytest.fail(f"nothing matching on {self.topics} after {timeout}s")
            await self._read()
        return result

    async def first(self, topic: str, **fields):
        """The first event on ``topic`` with these field values, once it comes."""
        def match(tap):
            return next((e for e in tap.events(topic)
                         if all(getattr(e, k) == v for k, v in fields.items())), None)
        return await self.until(match)


async def eventually(check, timeout: float = 15.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s")
        await asyncio.sleep(interval)
    return result

"""Fuzzing the three services (issue 11, "what it must show"): malformed requests to the
three ``vigie serve`` processes on 127.0.0.1 (the session's broker) get no 5xx and no hang,
and the services are healthy, alive, and answer a valid call after.

Each request is one of: raw bytes that are not quite HTTP (request lines, headers, chunked
bodies, lengths, on a connection of its own, half-closed once sent), or well-formed HTTP with a
mutated method, path, query, content type or JSON body, carrying no token, a forged one or a
valid one (the body's own user's, another user's, an internal service's), so that the
handlers' validation and subject checks are reached too.

``VIGIE_FUZZ_REQUESTS`` sets how many (default 10,000, CI's size; the issue's 100,000 run:
docs/services.md#fuzzing gives the command and the time it took). Seeded: a failure is
reproduced by its seed and index, both in the failure message."""
from __future__ import annotations

import asyncio
import functools
import gzip
import json
import os
import random
import time
from collections import Counter

import aiohttp
import pytest
from process_support import answers, wait_for
from service_support import as_internal, as_user
from yarl import URL

from pipelines.kafka.broker import free_port
from pipelines.services import auth

pytestmark = pytest.mark.kafka
SEED = 11
REQUESTS = int(os.environ.get("VIGIE_FUZZ_REQUESTS", "10000"))
CONCURRENCY = 64
HANG_S = 10.0  # an answer slower than this is a hang
RAW_SHARE = 0.15  # of the requests: raw bytes on a connection of their own

# endpoint -> (method, path template, body template or None, whose user the body names)
ENDPOINTS = {
    "messaging": [
        ("POST", "/v1/messages", {"sender": "$u", "recipient": "bob", "conversation": "c1",
                                  "text": "tu me dois 20€"}),
        ("POST", "/v1/account-events", {"account": "$u", "kind": "device_added",
                                        "device": "d1", "ip": "10.0.0.1", "country": "FR"}),
        ("POST", "/v1/reports", {"reporter": "$u", "reported": "mallory", "category": "romance"}),
        ("POST", "/v1/takeover-reports", {"account": "$u", "occurred_ts": 1_700_000_000_000,
                                          "compromise_from_ts": 1_700_000_000_000,
                                          "compromise_to_ts": 1_700_000_100_000}),
        ("GET", "/v1/notifications/$u", None),
        ("POST", "/v1/recovery/case-1/answer", {"account": "$u", "answer": "it_was_me"}),
    ],
    "payment": [
        ("POST", "/v1/transfers", {"sender": "$u", "recipient": "bob", "amount_cents": 1200,
                                   "currency": "EUR", "card_number": "4111 1111 1111 1111"}),
        ("GET", "/v1/transfers/t-unknown", None),
        ("POST", "/v1/chargebacks", {"transfer_id": "t-unknown", "category": "stolen_card"}),
    ],
    "assistant": [
        ("GET", "/v1/suggestions?user=$u&conversation=c1", None),
        ("POST", "/v1/suggestions/s-1/response", {"user": "$u", "response": "accepted"}),
        ("PUT", "/v1/users/$u/assistant", {"enabled": True}),
    ],
}
JUNK_VALUES = [None, 0, -1, 2**63, 1e308, -0.0, "", "x" * 5000, "\u0000", "\ud800", "é" * 200,
               [], {}, [1, [2, [3]]], {"a": {"b": None}}, True, "1700000000000", "NaN",
               "../../etc/passwd", "%00", "<script>", "4111111111111111"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "FOO"]


def _fill(template, user: str):
    if isinstance(template, str):
        return template.replace("$u", user)
    if isinstance(template, dict):
        return {k: _fill(v, user) for k, v in template.items()}
    return template


def _mutate_body(rnd: random.Random, body: dict) -> bytes:
    body = dict(body)
    how = rnd.randrange(12)
    if how == 0 and body:
        body.pop(rnd.choice(list(body)))
    elif how == 1:
        body[rnd.choice(["extra", "text", "admin", "__proto__"])] = rnd.choice(JUNK_VALUES)
    elif how in (2, 3, 4) and body:
        body[rnd.choice(list(body))] = rnd.choice(JUNK_VALUES)
    elif how == 5:
        return json.dumps(body).encode()[:rnd.randrange(1, 40)]  # truncated
    elif how == 6:
        raw = bytearray(json.dumps(body).encode())
        for _ in range(rnd.randrange(1, 4)):
            raw[rnd.randrange(len(raw))] = rnd.randrange(256)
        return bytes(raw)
    elif how == 7:
        depth = rnd.choice([50, 500, 20_000])
        return b"[" * depth + b"]" * depth
    elif how == 8:
        return rnd.choice([b"", b"null", b"[]", b'"x"', b"1e99999", b"{}" * 100, b"\xff\xfe{}"])
    elif how == 9:
        return json.dumps([body] * rnd.randrange(1, 50)).encode()
    elif how == 10:
        return b'{"' + os.urandom(8).hex().encode() + b'": ' + b"9" * 5000 + b"}"
    # 11: unchanged: a valid body (reached with some token)
    return json.dumps(body).encode()


def _mutate_path(rnd: random.Random, path: str) -> str:
    how = rnd.randrange(8)
    if how == 0:
        return path + rnd.choice(["/", "/x", "//", "/..", "%2F..", "?", "?a=%ZZ", "#f"])
    if how == 1:
        return path.replace("/v1/", rnd.choice(["/v2/", "/V1/", "/v1//", "/./v1/"]))
    if how == 2:
        head, _, tail = path.rpartition("/")
        return f"{head}/{rnd.choice(['', 'x' * 300, '%00', '%ff%fe', '%E9t%C3', '..', '%2e%2e', '~'])}"
    if how == 3:
        return path + ("&" if "?" in path else "?") + rnd.choice(
            ["user=", "user=a&user=b", "conversation=", "zzz=1", "user=" + "y" * 200, "%=%"])
    return path


@functools.cache
def _signed(user: str | None) -> dict:
    return as_internal() if user is None else as_user(user)


def _token(rnd: random.Random, user: str) -> dict:
    how = rnd.randrange(10)
    if how == 0:
        return {}
    if how == 1:
        return {"Authorization": rnd.choice(["Bearer", "Bearer ", "Basic YTpi", "Bearer a.b.c",
                                             "bearer " + "x" * 3000, "Bearer \u00e9"])}
    if how == 2:
        return _signed(None)
    if how == 3:
        return _signed("someone-else")
    return _signed(user)  # the body's own user: the handler's checks are reached


RAW_CASES = [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1 extra\r\n\r\n",
    b"GET /v1/notifications/u HTTP/9.9\r\nHost: x\r\n\r\n",
    b"G\x00T / HTTP/1.1\r\n\r\n",
    b"GET " + b"/a" * 5000 + b" HTTP/1.1\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 10_000 + b"\r\n\r\n",
    b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n",
    b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
    b"POST /v1/messages HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"\r\n\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello's start
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
]
TRUNCATED = [  # a body shorter than announced
    b"POST /v1/messages HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"sender\"",
    b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\na\r\n" * 3,
]
RAW_CASES += TRUNCATED
GZIP_BOMB = gzip.compress(b"\0" * (8 << 20), compresslevel=9)  # 8 MiB inflated, ~8 KiB sent


class Fuzzer:
    def __init__(self, urls: dict[str, URL]):
        self.urls = urls
        self.statuses: Counter = Counter()
        self.failures: list[str] = []
        self.session: aiohttp.ClientSession | None = None

    def _fail(self, what: str) -> None:
        if len(self.failures) < 20:
            self.failures.append(what)

    async def raw(self, i: int, rnd: random.Random) -> None:
        url = self.urls[rnd.choice(list(self.urls))]
        data = rnd.choice(RAW_CASES)
        if rnd.random() < 0.3:
            data = bytes(b ^ (rnd.random() < 0.02) * rnd.randrange(256) for b in data)
        reader, writer = await asyncio.open_connection(url.host, url.port)
        try:
            writer.write(data)
            if data in TRUNCATED:
                writer.write_eof()  # the client gives up mid-body: the server lets go
            await writer.drain()
            try:
                head = await asyncio.wait_for(reader.read(64), 2.0)
            except asyncio.TimeoutError:  # waiting for more (a flipped byte ate the CRLF)
                writer.write_eof()
                head = await asyncio.wait_for(reader.read(64), HANG_S)  # answered or closed
        except (ConnectionError, OSError):
            head = b""  # the server closed on us: a refusal too
        except asyncio.TimeoutError:
            head = None
        finally:
            writer.close()
        if head is None:
            return self.count(i, -1, f"raw {data[:60]!r}")
        status = int(head[9:12]) if head.startswith(b"HTTP/1.") and head[9:12].isdigit() else 0
        self.count(i, status, f"raw {data[:60]!r}")

    async def http(self, i: int, rnd: random.Random) -> None:
        service = rnd.choice(list(ENDPOINTS))
        method, path, body = rnd.choice(ENDPOINTS[service])
        user = f"fz-{rnd.randrange(1000)}"
        path = _fill(path, user)
        headers = {**_token(rnd, user)}
        data = None
        if body is not None or rnd.random() < 0.1:
            data = _mutate_body(rnd, _fill(body or {}, user))
            headers["Content-Type"] = rnd.choice(
                ["application/json"] * 6 + ["text/plain", "application/x-www-form-urlencoded",
                                            "application/json; charset=latin-1", "multipart/x"])
        if rnd.random() < 0.1:
            method = rnd.choice(METHODS)
        if rnd.random() < 0.4:
            path = _mutate_path(rnd, path)
        if rnd.random() < 0.01:
            data, headers["Content-Encoding"] = GZIP_BOMB, "gzip"
        url = URL(str(self.urls[service]) + path, encoded=True)
        try:
            async with self.session.request(method, url, data=data, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=HANG_S)) as resp:
                await resp.read()
                status = resp.status
        except asyncio.TimeoutError:
            status = -1
        except (aiohttp.ClientError, ValueError) as exc:  # the client refused to send it
            status = f"client:{type(exc).__name__}"
        self.count(i, status, f"{method} {path[:80]} {(data or b'')[:60]!r}")

    def count(self, i: int, status, what: str) -> None:
        self.statuses[status] += 1
        if status == -1:
            self._fail(f"#{i} hung: {what}")
        elif isinstance(status, int) and status >= 500:
            self._fail(f"#{i} {status}: {what}")

    async def run(self, n: int) -> None:
        queue = iter(range(n))

        async def worker():
            for i in queue:
                rnd = random.Random(f"{SEED}:{i}")
                if rnd.random() < RAW_SHARE:
                    await self.raw(i, rnd)
                else:
                    await self.http(i, rnd)
        conn = aiohttp.TCPConnector(limit=CONCURRENCY, force_close=False)
        async with aiohttp.ClientSession(connector=conn) as self.session:
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def test_malformed_requests_get_no_5xx_and_no_hang_and_the_services_stay_healthy(
        kafka, processes):
    auth.ensure_keys()  # as `vigie run` does, before the services start
    ports = {name: free_port() for name in ENDPOINTS}
    env = {f"VIGIE_{name.upper()}_PORT": str(port) for name, port in ports.items()}
    procs = [processes.start(name, "serve", name, env=env) for name in ENDPOINTS]
    urls = {name: URL(f"http://127.0.0.1:{port}") for name, port in ports.items()}
    for name, url in urls.items():
        wait_for(lambda: answers(f"{url}/healthz"), timeout=60, what=f"the {name} service")

    async def scenario():
        fuzzer = Fuzzer(urls)
        started = time.monotonic()
        await fuzzer.run(REQUESTS)
        took = time.monotonic() - started
        user, after = "fz-after", []
        async with aiohttp.ClientSession(headers=as_user("fz-after")) as session:
            for method, url, body in [
                    ("POST", urls["messaging"] / "v1/messages", {
                        "sender": user, "recipient": "bob", "conversation": "c", "text": "ok"}),
                    ("POST", urls["payment"] / "v1/transfers", {
                        "sender": user, "recipient": "bob", "amount_cents": 100}),
                    ("PUT", urls["assistant"] / f"v1/users/{user}/assistant", {"enabled": False})]:
                async with session.request(method, url, json=body) as resp:
                    after.append(resp.status)
        return fuzzer, took, after

    fuzzer, took, after = asyncio.run(scenario())
    print(f"{REQUESTS} requests in {took:.1f} s ({REQUESTS / took:.0f}/s): "
          f"{dict(fuzzer.statuses.most_common())}")
    assert not fuzzer.failures, fuzzer.failures
    assert sum(fuzzer.statuses.values()) == REQUESTS
    reached = {s for s in fuzzer.statuses if isinstance(s, int)}
    assert {400, 401, 403, 404, 405, 413, 415} <= reached  # every layer of refusal was reached
    assert all(answers(f"{url}/healthz") for url in urls.values())
    assert all(p.poll() is None for p in procs), "a service died"
    assert after == [202, 201, 200]
    assert took < 180 * max(1.0, REQUESTS / 100_000), "bounded in time: 3 min for 100,000"

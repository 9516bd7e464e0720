"""What a running service writes to its log (issue 11, item 7): a malformed request leaves no
raw identifier there, only the error's kind; a broker outage does not flood it (the probe saw
~1 MB/s a service). A real ``vigie serve messaging`` process, on a broker of its own that the
test stops."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import socket
import time
import urllib.request
import uuid

import pytest
from process_support import answers, wait_for

from pipelines.contracts import settings
from pipelines.kafka.broker import EmbeddedKafka, free_port
from pipelines.kafka.clients import ensure_topics
from pipelines.services import auth
from pipelines.services.logs import RepeatLimiter

pytestmark = pytest.mark.kafka


@pytest.fixture
def messaging_process(tmp_path, processes):
    """(its broker, its base URL, its log path, a user's token headers, that user)."""
    broker = EmbeddedKafka(free_port(), tmp_path / "broker", settings.secrets_dir()).start()
    # the admin makes the topics (a service may create none)
    asyncio.run(ensure_topics(dataclasses.replace(settings.load(), kafka=broker.login("admin"))))
    port, data_dir = free_port(), tmp_path / "data"
    proc = processes.start("messaging", "serve", "messaging", env={
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "VIGIE_DATA_DIR": str(data_dir),
        "VIGIE_MESSAGING_PORT": str(port)})
    url = f"http://127.0.0.1:{port}"
    user = f"secret-user-{uuid.uuid4().hex}"
    token = auth.Issuer(data_dir / "secrets" / "jwt").mint("log-test", user=user)
    wait_for(lambda: answers(f"{url}/healthz"), timeout=60, what="the messaging service")
    try:
        yield broker, url, tmp_path / "messaging.log", {"Authorization": f"Bearer {token}"}, user
    finally:
        processes.stop(proc, signal.SIGKILL)  # no graceful stop needed
        broker.stop()


def _raw(port: int, *requests: bytes) -> None:
    """Send raw bytes on one connection and read whatever comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        for data in requests:
            sock.sendall(data)
            try:
                sock.recv(65536)
            except OSError:
                pass


def _post_message(url: str, headers: dict, user: str, timeout: float) -> None:
    req = urllib.request.Request(f"{url}/v1/messages", method="POST", headers={
        **headers, "Content-Type": "application/json"},
        data=json.dumps({"sender": user, "recipient": "r", "conversation": "c",
                         "text": "hi"}).encode())
    try:
        urllib.request.urlopen(req, timeout=timeout).close()
    except OSError:
        pass  # 503 or a timeout: the broker is away


def test_malformed_requests_and_a_broker_outage_leave_a_small_log_without_ids(messaging_process):
    broker, url, log_path, headers, user = messaging_process
    port = int(url.rsplit(":", 1)[1])
    ok = f"GET /v1/notifications/{user} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    _raw(port, f"GET /v1/notifications/{user} HTTP/1.1 and more\r\n\r\n".encode())
    _raw(port, f"GET /v1/notifications/{user} HTTP/7.1\r\n\r\n".encode())
    _raw(port, ok, f"G\x01T /v1/notifications/{user} HTTP/1.1\r\n\r\n".encode())  # 2nd request
    _raw(port, ok, f"GET /v1/x HTTP/1.1\r\nX-User: {user}\x00\r\n\r\n".encode())
    _raw(port, ok, f"GET /v1/notifications/{user}{'x' * 9000} HTTP/1.1\r\n\r\n".encode())
    _raw(port, ok, b"POST /v1/messages HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: "
                   + user.encode() + b"\r\n\r\nhello")
    assert answers(f"{url}/healthz")
    time.sleep(1.0)
    text = log_path.read_text(errors="replace")
    assert "malformed HTTP request refused (" in text  # the kind, e.g. (BadStatusLine)
    assert user not in text
    assert "Traceback" not in text

    # the broker goes away for a while, as requests keep coming
    before = log_path.stat().st_size
    broker.stop()
    until = time.monotonic() + 12
    while time.monotonic() < until:
        _post_message(url, headers, user, timeout=0.5)
    grown = log_path.stat().st_size - before
    text = log_path.read_text(errors="replace")
    print(f"log grew {grown} bytes in 12 s of broker outage")
    assert grown < 40_000, text[before:][-3000:]
    assert "aiokafka" in text[before:] or "event log unavailable" in text[before:], \
        "the outage should show in the log (once)"
    assert user not in text


def test_repeats_are_counted_and_reported_once_a_window():
    limiter = RepeatLimiter(every_s=0.3)

    def record(msg, *args, name="aiokafka.conn", level=logging.ERROR):
        return logging.LogRecord(name, level, __file__, 1, msg, args, None)

    first = record("Unable connect to node with id %s: %s", 1, "refused")
    assert limiter.filter(first)
    assert not any(limiter.filter(record("Unable connect to node with id %s: %s", 1, "x"))
                   for _ in range(500))
    assert limiter.filter(record("another message"))  # another kind goes through
    assert limiter.filter(record("Unable connect to node with id %s: %s", 1, "refused",
                                 level=logging.INFO))  # below the level: never limited
    time.sleep(0.35)
    later = record("Unable connect to node with id %s: %s", 1, "refused")
    assert limiter.filter(later)
    assert "[and 500 more like it in the last 0." in later.getMessage()
    assert limiter.filter(later)  # the same record at a second handler: the same verdict

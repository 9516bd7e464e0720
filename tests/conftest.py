"""Shared fixtures. Tests marked ``kafka`` get a real single-node Apache Kafka broker,
started once per test session by the project's own code, on its own port and log dir.

The session is a demo (``VIGIE_DEMO=1``) with its own secrets dir, set before any test module
is imported: every process of the session, whatever data dir it is given, hashes with one key
generated there, and reads its Kafka password there. The tests' own clients are the admin;
each process they start is its own principal (``process_support.Processes``)."""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from process_support import Processes

SECRETS_DIR = Path(tempfile.mkdtemp(prefix="vigie-test-secrets-"))
os.environ.update(VIGIE_DEMO="1", VIGIE_SECRETS_DIR=str(SECRETS_DIR), VIGIE_KAFKA_PRINCIPAL="admin")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SECRETS_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vigie")


@pytest.fixture(scope="session")
def kafka(session_dir):
    """The embedded broker; the environment points every component at it."""
    from pipelines.kafka.broker import EmbeddedKafka, free_port

    broker = EmbeddedKafka(free_port(), session_dir / "broker", SECRETS_DIR).start()
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    os.environ["VIGIE_DATA_DIR"] = str(session_dir / "data")
    # The suite's simulated logs are moved days ahead of the present (stream_support's
    # simulated_log, so each test's events come after the shared broker's earlier ones): far
    # past the worker's far-future bound, which is off for the session; the bound has its own
    # test, whose worker sets it back (tests/stream/test_clocks.py).
    os.environ["VIGIE_MAX_CLOCK_AHEAD_S"] = "0"
    from pipelines.kafka.clients import ensure_topics

    asyncio.run(ensure_topics())
    yield broker
    broker.stop()


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


@pytest.fixture(scope="module")
def own_broker():
    """A broker of the test module's own, for tests that change a topic's settings, stop the
    broker, or must not meet what the session's other tests left on the shared one."""
    from pipelines.bench.harness import fresh_environment

    with fresh_environment() as (broker, _):
        yield broker

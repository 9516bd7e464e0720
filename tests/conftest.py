"""Shared fixtures. Tests marked ``kafka`` get a real single-node Apache Kafka broker,
started once per test session by the project's own code, on its own port and log dir."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from process_support import Processes


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("vigie")


@pytest.fixture(scope="session")
def kafka(session_dir):
    """The embedded broker; the environment points every component at it."""
    from pipelines.kafka.broker import EmbeddedKafka, free_port

    broker = EmbeddedKafka(free_port(), session_dir / "broker").start()
    os.environ["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
    os.environ["VIGIE_DATA_DIR"] = str(session_dir / "data")
    from pipelines.kafka.clients import ensure_topics

    asyncio.run(ensure_topics())
    yield broker
    broker.stop()


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()

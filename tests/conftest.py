"""Shared fixtures. Tests marked ``kafka`` get a real single-node Apache Kafka broker,
started once per test session by the project's own code, on its own port and log dir."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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


class Processes:
    """Child processes started by a test, each in its own process group, all stopped after."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT,
                                env={**os.environ, **(env or {})}, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc.name = name
        self.procs.append(proc)
        return proc

    def log_of(self, proc) -> str:
        return (self.log_dir / f"{proc.name}.log").read_text(errors="replace")

    @staticmethod
    def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 20.0) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


@pytest.fixture
def processes(tmp_path):
    procs = Processes(tmp_path)
    yield procs
    procs.stop_all()


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")

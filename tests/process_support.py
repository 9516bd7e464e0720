"""Helpers for tests that start Vigie's processes: the repository's root, child processes in
their own process groups (``Processes``), and polling until a condition holds (``wait_for``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines.kafka.principals import command_principal

ROOT = Path(__file__).resolve().parent.parent


class Processes:
    """Child processes started by a test, each in its own process group, all stopped after;
    each runs as its command's Kafka principal (``env`` may name another)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(self, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=ROOT,
                                env={**os.environ, "VIGIE_KAFKA_PRINCIPAL": command_principal(args),
                                     **(env or {})}, stdout=log,
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


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def answers(url: str) -> bool:
    """Whether ``url`` answers 200 now (a process's health or home page)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False

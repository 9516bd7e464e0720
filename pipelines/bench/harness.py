"""What every benchmark needs: a fresh broker and data dir, child processes, timers."""
from __future__ import annotations

import asyncio
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from pipelines.contracts import privacy
from pipelines.contracts.settings import REPO_ROOT
from pipelines.kafka.broker import EmbeddedKafka, free_port
from pipelines.kafka.clients import ensure_topics
from pipelines.kafka.principals import command_principal


@contextmanager
def fresh_environment(partitions: int = 4):
    """A new broker on a free port and a new data dir, exported to child processes. A demo: its
    keys and Kafka passwords are generated in the data dir; the benchmark's own clients are the
    admin, each process it spawns its own principal."""
    root = Path(tempfile.mkdtemp(prefix="vigie-bench-"))
    secrets = root / "data" / "secrets"
    started = time.monotonic()
    broker = EmbeddedKafka(free_port(), root / "broker", secrets).start()
    broker.cold_start_s = time.monotonic() - started
    env = dict(KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, VIGIE_DATA_DIR=str(root / "data"),
               VIGIE_PARTITIONS=str(partitions), VIGIE_SECRETS_DIR=str(secrets), VIGIE_DEMO="1",
               VIGIE_KAFKA_PRINCIPAL="admin")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    privacy.forget_key()  # this process hashes as its children do: with the new secrets dir's key
    asyncio.run(ensure_topics())
    try:
        yield broker, root
    finally:
        broker.stop()
        # the broker's log runs to gigabytes a run, the data (states, lake, models, the demo's
        # secrets) to tens or hundreds of MB: 179 runs had left ~5 GB in /tmp. The processes'
        # logs stay, to look at (``spawn``'s, and the data dir's ``logs``).
        shutil.rmtree(root / "broker", ignore_errors=True)
        _drop_data(root / "data")
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        privacy.forget_key()  # and with the key it had before, once back


def _drop_data(data: Path) -> None:
    """Everything in a run's data dir but its ``logs``."""
    for part in data.iterdir() if data.is_dir() else ():
        if part.name == "logs":
            continue
        if part.is_dir():
            shutil.rmtree(part, ignore_errors=True)
        else:
            part.unlink(missing_ok=True)


def spawn(root: Path, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    """``vigie <args>`` in its own session, its output in ``root/<name>.log``; ``env``: more
    variables (e.g. its metrics port)."""
    log = open(root / f"{name}.log", "ab")
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", "--log-level", "warning", *args],
                            cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True,
                            env={**os.environ, **(env or {}),
                                 "VIGIE_KAFKA_PRINCIPAL": command_principal(args)})


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def median(values) -> float:
    return float(statistics.median(values))


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used: a per-event cost that, unlike wall time,
    barely moves when other work shares the machine."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

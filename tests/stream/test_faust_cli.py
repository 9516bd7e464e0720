"""Faust's own command line on Vigie's apps by module path (``faust -A pipelines.stream.faust_apps``):
it finds the apps and their tables, and its ``worker`` command runs the real decision worker on
the broker, with the credentials from the environment."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from process_support import ROOT
from recovery_support import worker_started
from service_support import Tap, aio, serving

from pipelines.services import payment

FAUST = str(Path(sys.executable).with_name("faust"))


def faust(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([FAUST, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_faust_finds_the_worker_and_the_sink_by_module_path(tmp_path):
    # a plaintext broker address that nothing listens on: listing needs no connection
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIGIE_KAFKA", "KAFKA_"))}
    env.update(VIGIE_DATA_DIR=str(tmp_path), KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    worker = faust("-A", "pipelines.stream.faust_apps", "tables", env=env)
    assert worker.returncode == 0, worker.stderr[-2000:]
    for table in ("control", "entity-states", "recovery-cases"):
        assert table in worker.stdout
    sink = faust("-A", "pipelines.stream.faust_apps:sink", "--json", "tables", env=env)
    assert sink.returncode == 0, sink.stderr[-2000:]
    assert "entity-states" not in sink.stdout  # the sink's own app, not the worker's
    missing = faust("-A", "pipelines.stream.faust_apps:nothing", "tables", env=env)
    assert missing.returncode != 0 and "nothing" in missing.stderr


class FaustCli:
    """``Processes`` with Faust's command line instead of ``vigie``'s."""

    def __init__(self, log_dir: Path, processes):
        self.log_dir, self.processes = log_dir, processes

    def start(self, name: str, *args: str):
        env = {**os.environ, "VIGIE_KAFKA_PRINCIPAL": "worker"}  # the worker's credentials
        proc = subprocess.Popen([FAUST, "-A", "pipelines.stream.faust_apps", "worker",
                                 "--loglevel", "info"], cwd=ROOT, env=env,
                                stdout=open(self.log_dir / f"{name}.log", "ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        proc.name = name
        self.processes.procs.append(proc)  # stopped with the others
        return proc


@pytest.mark.kafka
@aio
async def test_faust_worker_command_runs_the_decision_worker(kafka, processes, tmp_path):
    async with Tap("decisions") as tap, serving(payment) as pay:
        await worker_started(tap, pay, FaustCli(tmp_path, processes))  # a transfer decided

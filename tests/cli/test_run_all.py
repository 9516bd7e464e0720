"""`vigie run` (what `make run` starts) brings the whole system up on its own embedded broker,
trains the demo's first model and promotes it on the record, then fills the lake from all three
services within a minute of that (README: "Set up"), every decision made by the promoted model;
it prints the lake's row counts every 10 s, and Ctrl-C leaves no process behind."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from process_support import ROOT, answers, wait_for
from prometheus_client.parser import text_string_to_metric_families

from pipelines.kafka.broker import free_port
from pipelines.lake import parquet as lake

pytestmark = pytest.mark.kafka
PROMISE_S = 60  # README, "Set up": from the demo model's promotion to the lake's first events
TRAIN_S = 180  # the demo model: ~30 s on an idle machine, ~50 s beside the other test runs


def _processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment contains ``marker``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def _promoted(run_log: Path):
    """The version `vigie run` promoted, once it says so."""
    found = re.search(r"^promoted (m-\S+) \(actor vigie-run: demo bootstrap model\)$",
                      run_log.read_text(), re.MULTILINE)
    return found and found.group(1)


def _deciding_models(lake_dir: Path) -> set:
    con = lake.connect(lake_dir, ["decisions"])
    return {r[0] for r in con.execute("SELECT DISTINCT model_version FROM decisions").fetchall()}


def _lake_counts(lake_dir: Path) -> dict:
    topics = ["messages", "account-events", "transfer-requests", "assistant-events"]
    con = lake.connect(lake_dir, topics)
    return {t: con.execute(f"SELECT count(*) FROM {lake.view_name(t)}").fetchone()[0] for t in topics}


def _note_reports(run_log: Path, seen: list) -> None:
    """Append the time of each new lake row-count report in ``run_log`` to ``seen``."""
    reports = len(re.findall(r"^lake: (messages=|not readable)", run_log.read_text(), re.MULTILINE))
    seen += [time.monotonic()] * (reports - len(seen))


def _metric(port: int, name: str) -> float:
    """The sum of a metric's samples on a process's metrics endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name)


def _free_pair() -> int:
    """A free port whose next port is free too: the lake sink serves its metrics on the worker's
    port + 1 (a CI run once found that one taken, and the sink's endpoint refused)."""
    while True:
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_run_brings_everything_up_and_ctrl_c_stops_it(tmp_path):
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["PYTHONUNBUFFERED"] = "1"  # each line in the log when printed, as on a terminal
    env.update(VIGIE_DATA_DIR=str(data_dir), VIGIE_BROKER_PORT=str(free_port()),
               VIGIE_MESSAGING_PORT=str(free_port()), VIGIE_PAYMENT_PORT=str(free_port()),
               VIGIE_ASSISTANT_PORT=str(free_port()), VIGIE_CONSOLE_PORT=str(free_port()),
               VIGIE_METRICS_PORT=str(_free_pair()))  # the worker's; the sink's is the next
    log = open(tmp_path / "run.log", "wb")
    started = time.monotonic()
    run = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", "--rate", "100"], cwd=ROOT,
                           env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    run_log, seen = tmp_path / "run.log", []  # seen: when each lake report appeared in the log

    def noting(predicate):  # every wait also notes the lake reports printed meanwhile
        def check():
            _note_reports(run_log, seen)
            return predicate()
        return check

    try:
        # A fresh data dir: the demo model trains, and is promoted on the record before any
        # traffic (so no transfer is decided by rules alone, held for want of a model).
        version = wait_for(noting(lambda: _promoted(run_log)), timeout=TRAIN_S, interval=0.5,
                           what="the demo model's promotion")
        promoted = time.monotonic()
        print(f"demo model {version} promoted {promoted - started:.1f}s after `vigie run` started")
        # The README's promise, as the wait's own bound: a minute from then to events of all
        # three services in the lake.
        counts = wait_for(noting(lambda: (c := _lake_counts(data_dir / "lake")) and all(c.values()) and c),
                          timeout=PROMISE_S, interval=0.5,
                          what=f"every service's events in the lake within {PROMISE_S}s")
        print(f"lake filled from all services {time.monotonic() - promoted:.1f}s after the "
              f"promotion: {counts}")
        assert run.poll() is None
        wait_for(noting(lambda: _deciding_models(data_dir / "lake")), timeout=30, interval=0.5,
                 what="decisions in the lake")
        assert _deciding_models(data_dir / "lake") == {version}
        # the operators' metrics: the worker's decisions, the sink's rows (docs/operations.md)
        worker_port = int(env["VIGIE_METRICS_PORT"])
        assert _metric(worker_port, "vigie_decisions_total") > 0
        assert _metric(worker_port + 1, "vigie_lake_rows_written_total") > 0
        console = f"http://127.0.0.1:{env['VIGIE_CONSOLE_PORT']}/_stcore/health"
        wait_for(noting(lambda: answers(console)), timeout=30, interval=0.5, what="the console")
        # "Every 10 s it prints the row counts of the lake": two reports, about 10 s apart
        wait_for(noting(lambda: len(seen) >= 2), timeout=40, interval=0.5,
                 what="two lake row-count reports")
        assert 8 <= seen[1] - seen[0] <= 15, seen
    finally:
        run.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            run.wait(60)
        finally:
            if run.poll() is None:
                os.killpg(run.pid, signal.SIGKILL)
    output = run_log.read_text()
    assert "stopped" in output, output[-2000:]
    wait_for(lambda: not _processes_with(f"VIGIE_DATA_DIR={data_dir}"), timeout=10,
             what="every child process to exit")

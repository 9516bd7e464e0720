"""``vigie run``: start every process of the demo, watch them, stop them all on Ctrl-C."""
from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from dashboards import users as console_users
from pipelines.cli.processes import SERVICES
from pipelines.contracts import settings as settings_mod
from pipelines.contracts.settings import REPO_ROOT
from pipelines.kafka.broker import EmbeddedKafka
from pipelines.kafka.clients import ensure_topics
from pipelines.lake import parquet as lake

# The lake row counts printed every 10 s.
REPORTED_TOPICS = ["messages", "account-events", "transfer-requests", "decisions", "dead-letters"]


class Child:
    def __init__(self, name: str, args: list[str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        # Own process group: Ctrl-C reaches the supervisor only, which stops children in order.
        self.proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO_ROOT,
                                     stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if not self.alive():
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _lake_counts(counts: lake.RowCounts) -> str:
    return " ".join(f"{topic}={n}" for topic, n in counts(REPORTED_TOPICS).items())


def run_all(rate: float = 50.0, simulator: bool = True) -> None:
    conf = settings_mod.load()
    log_dir = conf.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    kafka = None
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        started = time.monotonic()
        port = int(conf.kafka.bootstrap_servers.rsplit(":", 1)[1])
        kafka = EmbeddedKafka(port, conf.broker_dir).start()
        click.echo(f"broker: Apache Kafka ready at {kafka.bootstrap} in "
                   f"{time.monotonic() - started:.1f}s (log {kafka.log_dir})")
    asyncio.run(ensure_topics(conf))
    from models import registry  # why local: it loads lightgbm (~1 s, ~130 MB) for one look

    one_shots = []
    if registry.latest() is None:
        # Trained beside the running system: until the model lands in the registry the worker
        # holds every transfer for review (never approves blind), then picks the model up.
        click.echo("no model yet: training a first one on a simulated history (the worker holds "
                   "every transfer until it is ready)…")
        one_shots.append(Child("bootstrap-model", ["--log-level", "warning", "train", "--bootstrap"],
                               log_dir))
    children = [Child("worker", ["worker"], log_dir), Child("sink", ["sink"], log_dir)]
    children += [Child(s, ["serve", s], log_dir) for s in SERVICES]
    click.echo(console_users.describe(console_users.users_path(),
                                      console_users.ensure_demo_users(console_users.users_path())))
    children.append(Child("console", ["console"], log_dir))
    if simulator:
        time.sleep(3)  # let the services bind their ports first
        children.append(Child("simulator", ["simulate", "--live", "--rate", str(rate)], log_dir))
    ports = conf.service_ports
    click.echo(f"services: messaging http://127.0.0.1:{ports['messaging']}  payment "
               f"http://127.0.0.1:{ports['payment']}  assistant http://127.0.0.1:{ports['assistant']}")
    click.echo(f"console: http://127.0.0.1:{console_users.console_port()}  (sign in as above)")
    click.echo(f"logs: {log_dir}   lake: {conf.lake_dir}   Ctrl-C stops everything")

    stopping = False

    def _stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        last_report, lake_rows = time.monotonic(), lake.RowCounts(conf.lake_dir)
        while not stopping:
            time.sleep(0.5)
            for job in list(one_shots):
                if not job.alive():
                    one_shots.remove(job)
                    click.echo(f"{job.name}: " + ("done" if job.proc.returncode == 0 else
                               f"failed with code {job.proc.returncode}; see {job.log_path}"))
            for child in children:
                if not child.alive() and not stopping:
                    click.echo(f"{child.name} exited with code {child.proc.returncode}; "
                               f"see {child.log_path}")
                    stopping = True
            if time.monotonic() - last_report > 10 and not stopping:
                last_report, lake_rows = time.monotonic(), lake.RowCounts(conf.lake_dir)
                try:
                    click.echo(f"lake: {_lake_counts(lake_rows)}")
                except Exception as exc:  # a young lake is not an error
                    click.echo(f"lake: not readable yet ({exc.__class__.__name__})")
    finally:
        click.echo("stopping…")
        for child in reversed(children + one_shots):
            child.stop()
        if kafka is not None:
            kafka.stop()
        click.echo("stopped")


@click.command()
@click.option("--rate", type=float, default=50.0, show_default=True, help="Simulated events/s.")
@click.option("--no-simulator", is_flag=True, help="Start everything but the simulator.")
def run(rate: float, no_simulator: bool) -> None:
    """Run the whole system: broker (unless KAFKA_BOOTSTRAP_SERVERS is set), worker, sink,
    services and the live simulator. Ctrl-C stops everything it started."""
    run_all(rate=rate, simulator=not no_simulator)

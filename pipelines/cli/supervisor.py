"""``vigie run``: start every process of the demo, watch them, stop them all on Ctrl-C.

On a data dir without a model it trains the demo's first one beside the running system and
promotes it on the record (actor ``vigie-run``): no model acts unpromoted. The simulated traffic
starts only once that promotion is sent, so the first minute is not all rules-only holds."""
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
from pipelines.contracts import metrics, settings as settings_mod
from pipelines.contracts.settings import REPO_ROOT
from pipelines.kafka.broker import EmbeddedKafka
from pipelines.kafka.clients import ensure_topics
from pipelines.kafka.principals import command_principal
from pipelines.lake import parquet as lake
from pipelines.services import auth

# The lake row counts printed every 10 s.
REPORTED_TOPICS = ["messages", "account-events", "transfer-requests", "decisions", "dead-letters"]
DEMO_ACTOR, DEMO_REASON = "vigie-run", "demo bootstrap model"


class Child:
    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict | None = None):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        # Own process group: Ctrl-C reaches the supervisor only, which stops children in order.
        # Each child is its own Kafka principal, not the supervisor's admin.
        env = {**os.environ, "VIGIE_KAFKA_PRINCIPAL": command_principal(args), **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], cwd=REPO_ROOT,
                                     stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True, env=env)

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


def _promotion_on_record(lake_dir: Path) -> bool:
    """Whether the lake records a promotion (a data dir trained before promotions were needed
    may have none: its worker then decides with rules and lists alone)."""
    con = lake.connect(lake_dir, ["model-updates"])
    promotions = con.execute("SELECT count(*) FROM model_updates WHERE action = 'promote'")
    return promotions.fetchone()[0] > 0


def run_all(rate: float = 50.0, simulator: bool = True) -> None:
    # A demo: keys and passwords generated once in the data dir's secrets (docs/security.md).
    os.environ.setdefault("VIGIE_DEMO", "1")
    conf = settings_mod.load()
    log_dir = conf.data_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    kafka = None
    if conf.env.kafka.bootstrap_servers is None:
        started = time.monotonic()
        port = int(conf.kafka.bootstrap_servers.rsplit(":", 1)[1])
        kafka = EmbeddedKafka(port, conf.broker_dir, conf.secrets_dir).start()
        click.echo(f"broker: Apache Kafka ready at {kafka.bootstrap} in "
                   f"{time.monotonic() - started:.1f}s (log {kafka.log_dir})")
    asyncio.run(ensure_topics(conf))
    click.echo(f"service tokens: signing key {auth.ensure_keys(auth.keys_dir(conf))} in "
               f"{auth.keys_dir(conf)} (vigie tokens mint --client C --user U)")
    from models import registry  # why local: it loads lightgbm (~1 s, ~130 MB) for one look

    one_shots = []
    if registry.latest() is None:
        # Trained beside the running system; until it is promoted the worker decides with rules
        # and lists alone (holding what they do not decide), so the traffic waits for it.
        click.echo("no model yet: training a first one on a simulated history, to be promoted "
                   "as the demo's model; the simulator starts after that (~30 s)…")
        one_shots.append(Child("bootstrap-model", ["--log-level", "warning", "train", "--bootstrap"],
                               log_dir))
    elif not _promotion_on_record(conf.lake_dir):
        click.echo(f"no promotion in the lake: decisions may be rules-only until one, e.g. "
                   f"`vigie promote {registry.latest()} --reason …`")
    ports = metrics_ports()
    children = [Child(name, [name], log_dir, {"VIGIE_METRICS_PORT": str(ports[name])})
                for name in ("worker", "sink")]
    children += [Child(s, ["serve", s], log_dir) for s in SERVICES]
    click.echo(console_users.describe(console_users.users_path(),
                                      console_users.ensure_demo_users(console_users.users_path())))
    children.append(Child("console", ["console"], log_dir))

    def start_simulator() -> None:
        if simulator:
            time.sleep(3)  # let the services bind their ports first
            children.append(Child("simulator", ["simulate", "--live", "--rate", str(rate)], log_dir))

    if not one_shots:
        start_simulator()
    ports = conf.service_ports
    click.echo(f"services: messaging http://127.0.0.1:{ports['messaging']}  payment "
               f"http://127.0.0.1:{ports['payment']}  assistant http://127.0.0.1:{ports['assistant']}")
    click.echo("metrics: " + "  ".join(f"{name} http://127.0.0.1:{port}/metrics"
                                       for name, port in metrics_ports().items())
               + "  services: /metrics (internal token)  (docs/operations.md)")
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
                    if job.proc.returncode == 0:
                        promote_demo_model(conf)
                    start_simulator()
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


def metrics_ports() -> dict[str, int]:
    """The Faust processes' metrics ports: the worker on ``VIGIE_METRICS_PORT`` (default 9400),
    the sink on the next one (the services serve /metrics on their own port)."""
    port = settings_mod.environment().stream.metrics_port
    base = metrics.DEFAULT_PORT if port is None else port
    return {"worker": base, "sink": base + 1}


def promote_demo_model(conf) -> None:
    """Promote the model the bootstrap just trained (the registry's only one), on the record."""
    from models import registry
    from pipelines.cli.models import model_update, send_model_update

    version = registry.latest()
    try:
        send_model_update(model_update("promote", version, DEMO_ACTOR, DEMO_REASON), conf)
    except Exception as exc:  # the broker away: the demo runs on, rules-only, and says so
        click.echo(f"could not promote {version} ({exc.__class__.__name__}: {exc}); decisions "
                   f"stay rules-only until `vigie promote {version} --reason …`")
        return
    click.echo(f"promoted {version} (actor {DEMO_ACTOR}: {DEMO_REASON})")


@click.command()
@click.option("--rate", type=float, default=50.0, show_default=True, help="Simulated events/s.")
@click.option("--no-simulator", is_flag=True, help="Start everything but the simulator.")
def run(rate: float, no_simulator: bool) -> None:
    """Run the whole system: broker (unless KAFKA_BOOTSTRAP_SERVERS is set), worker, sink,
    services and the live simulator. Ctrl-C stops everything it started."""
    run_all(rate=rate, simulator=not no_simulator)

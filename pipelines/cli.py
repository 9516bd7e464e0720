"""The ``vigie`` command line: one command per process Vigie runs, plus the tools around it."""
from __future__ import annotations

import asyncio
import importlib
import json
import logging
import signal
import sys
import time
from pathlib import Path

import click

from pipelines import settings as settings_mod

SERVICES = ("messaging", "payment", "assistant")


def _logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


@click.group()
@click.option("--log-level", default="info", show_default=True)
def main(log_level: str) -> None:
    """Vigie: real-time fraud decisions for money sent in a chat messenger."""
    _logging(log_level)


@main.command()
@click.option("--port", type=int, default=settings_mod.DEFAULT_BROKER_PORT, show_default=True)
@click.option("--log-dir", type=click.Path(path_type=Path), default=None,
              help="KRaft log directory (default: <data dir>/broker).")
def broker(port: int, log_dir: Path | None) -> None:
    """Run the embedded single-node Apache Kafka broker until Ctrl-C."""
    from pipelines.kafka.broker import EmbeddedKafka

    conf = settings_mod.load()
    started = time.monotonic()
    kafka = EmbeddedKafka(port, log_dir or conf.broker_dir).start()
    click.echo(f"broker ready at {kafka.bootstrap} in {time.monotonic() - started:.1f}s "
               f"(log: {kafka.log_dir})")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while kafka.proc.poll() is None:
            time.sleep(0.5)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        kafka.stop()


@main.command()
def topics() -> None:
    """Create Vigie's topics on the configured cluster (idempotent)."""
    from pipelines.kafka.clients import ensure_topics

    asyncio.run(ensure_topics())
    click.echo("topics ready")


def _run_faust(app) -> None:
    from faust.worker import Worker

    Worker(app, loglevel=logging.getLevelName(logging.getLogger().level).lower(),
           quiet=True).execute_from_commandline()


@main.command()
@click.option("--name", default=None, help="Worker name (its state directory); default w1.")
def worker(name: str | None) -> None:
    """Run a decision worker (validation, features, decisions). Start more to scale out."""
    import os

    from pipelines.worker import build_worker_app

    if name:
        os.environ["VIGIE_WORKER_NAME"] = name
    _run_faust(build_worker_app())


@main.command()
@click.option("--name", default=None, help="Sink worker name; default w1.")
def sink(name: str | None) -> None:
    """Run the lake sink: every topic to Parquet under <data dir>/lake."""
    import os

    from pipelines.worker import build_sink_app

    if name:
        os.environ["VIGIE_WORKER_NAME"] = name
    _run_faust(build_sink_app())


@main.command()
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--port", type=int, default=None)
def serve(service: str, port: int | None) -> None:
    """Run one of the thin HTTP services."""
    importlib.import_module(f"pipelines.services.{service}").run(port=port)


@main.command()
@click.option("--offline", "mode", flag_value="offline", help="Write Parquet as fast as possible.")
@click.option("--live", "mode", flag_value="live", default=True, help="Drive the services over HTTP.")
@click.option("--out", type=click.Path(path_type=Path), help="Output lake directory (offline).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--users", type=int, default=None, help="Population size.")
@click.option("--days", type=float, default=None, help="Simulated days (offline).")
@click.option("--rate", type=float, default=50.0, show_default=True, help="Events/s (live).")
@click.option("--duration", type=float, default=None, help="Seconds to run (live; default: until Ctrl-C).")
def simulate(mode, out, seed, users, days, rate, duration) -> None:
    """Simulate a messenger population, with fraud scenarios and delayed labels."""
    extra = {k: v for k, v in (("users", users), ("days", days)) if v is not None}
    if mode == "offline":
        if out is None:
            raise click.UsageError("--offline needs --out DIR")
        from pipelines.simulator.offline import run_offline

        stats = run_offline(out, seed=seed, **extra)
    else:
        from pipelines.simulator.live import run_live

        live_extra = {k: v for k, v in extra.items() if k == "users"}
        try:
            stats = asyncio.run(run_live(seed=seed, rate=rate, duration_s=duration, **live_extra))
        except KeyboardInterrupt:
            return
    click.echo(json.dumps(stats, indent=2, default=str))


@main.command()
@click.option("--lake", type=click.Path(path_type=Path), default=None,
              help="Lake to replay (default: the live lake).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Feature table (Parquet).")
def replay(lake: Path | None, out: Path) -> None:
    """Replay the event log through the stream's feature code: the feature table."""
    from pipelines.training import feature_table

    table, stats = feature_table(lake or settings_mod.load().lake_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    click.echo(json.dumps(stats, indent=2))


@main.command()
@click.option("--lake", type=click.Path(path_type=Path), default=None,
              help="Lake to train on (default: the live lake).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--bootstrap", is_flag=True,
              help="Only if no model exists: simulate a history offline and train on it.")
def train(lake: Path | None, seed: int, bootstrap: bool) -> None:
    """Replay, label (labels as known), train LightGBM, register the model."""
    from models import registry
    from pipelines.training import train_from_lake

    if bootstrap:
        if registry.latest() is not None:
            click.echo(f"model {registry.latest()} exists; nothing to bootstrap")
            return
        from pipelines.simulator.offline import run_offline

        lake = settings_mod.load().data_dir / "bootstrap-history"
        if not lake.exists():
            run_offline(lake, seed=seed)
    stats = train_from_lake(lake or settings_mod.load().lake_dir, seed=seed)
    click.echo(json.dumps(stats, indent=2, default=str))


@main.command()
@click.argument("version")
def promote(version: str) -> None:
    """Make VERSION the acting model in every running worker (no restart)."""
    _model_update("promote", version)


@main.command()
@click.argument("version")
def shadow(version: str) -> None:
    """Score every transfer with VERSION too, recording its would-be decisions only."""
    _model_update("shadow", version)


@main.command()
def rollback() -> None:
    """Go back to the model that acted before the last promotion."""
    _model_update("rollback", "previous")


def _model_update(action: str, version: str) -> None:
    import uuid

    from models import registry
    from pipelines.kafka.clients import Publisher
    from pipelines.schemas import ModelUpdate

    if action in ("promote", "shadow") and version not in registry.list_versions():
        raise click.BadParameter(f"no model {version} in the registry")

    async def send():
        pub = await Publisher().start()
        try:
            await pub.publish("model-updates", ModelUpdate(
                id=uuid.uuid4().hex, ts=int(time.time() * 1000), action=action, version=version,
                actor="cli"))
        finally:
            await pub.stop()

    asyncio.run(send())
    click.echo(f"{action} {version}: sent")


@main.command()
@click.argument("sql", required=False)
@click.option("--lake", type=click.Path(path_type=Path), default=None)
def lake(sql: str | None, lake: Path | None) -> None:
    """Query the lake with DuckDB (default: row counts per topic)."""
    from pipelines import lake as lake_mod
    from pipelines.topics import TOPICS

    con = lake_mod.connect(lake or settings_mod.load().lake_dir)
    if sql is None:
        sql = " UNION ALL ".join(f"SELECT '{t}' AS topic, count(*) AS rows FROM "
                                 f"{lake_mod.view_name(t)}" for t in TOPICS)
    click.echo(con.execute(sql).df().to_string(index=False))


@main.command()
@click.option("--only", type=click.Choice(["foundation", "stream"]), default=None,
              help="Run one group of benchmarks.")
def bench(only: str | None) -> None:
    """Measure throughput, latency and start times; write bench/results.json and
    append to docs/benchmarks.md."""
    from pipelines.bench import foundation, report

    results = {}
    if only in (None, "foundation"):
        results.update(foundation.run())
    merged = report.write(results)
    click.echo(json.dumps(merged, indent=2, default=str))


@main.command()
@click.option("--rate", type=float, default=50.0, show_default=True, help="Simulated events/s.")
@click.option("--no-simulator", is_flag=True, help="Start everything but the simulator.")
def run(rate: float, no_simulator: bool) -> None:
    """Run the whole system: broker (unless KAFKA_BOOTSTRAP_SERVERS is set), worker, sink,
    services and the live simulator. Ctrl-C stops everything it started."""
    from pipelines.supervisor import run_all

    run_all(rate=rate, simulator=not no_simulator)


if __name__ == "__main__":
    main()

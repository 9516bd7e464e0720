"""The ``vigie`` command line: one command per process Vigie runs, plus the tools around it."""
from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import click

from pipelines.contracts import settings as settings_mod

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
    """Run a Faust app until SIGTERM/Ctrl-C. With VIGIE_PROFILE=FILE, under cProfile: the
    benchmarks use it to show where a worker's CPU goes."""
    import faust.worker

    class Worker(faust.worker.Worker):  # same name: its log lines ("[^Worker]: Ready") stay
        # the same (the tests and the supervisor wait for them)
        def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
            super().on_setup_root_logger(logger, level)
            # At WARNING and above, Faust's progress spinner lowers the root logger to DEBUG:
            # every debug call on the hot path (one per message sent) then builds a LogRecord.
            logger.setLevel(level)

    worker = Worker(app, loglevel=logging.getLevelName(logging.getLogger().level).lower(),
                    quiet=True)
    profile_to = os.environ.get("VIGIE_PROFILE")
    if not profile_to:
        worker.execute_from_commandline()
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        worker.execute_from_commandline()
    finally:
        profiler.disable()
        profiler.dump_stats(profile_to)


def _run_named(builder_name: str, name: str | None) -> None:
    """Run one of ``pipelines.stream.worker``'s apps as the named worker (its state directory)."""
    from pipelines.stream import worker as apps

    if name:
        os.environ["VIGIE_WORKER_NAME"] = name
    _run_faust(getattr(apps, builder_name)())


@main.command()
@click.option("--name", default=None, help="Worker name (its state directory); default w1.")
def worker(name: str | None) -> None:
    """Run a decision worker (validation, features, decisions). Start more to scale out."""
    _run_named("build_worker_app", name)


@main.command()
@click.option("--name", default=None, help="Sink worker name; default w1.")
def sink(name: str | None) -> None:
    """Run the lake sink: every topic to Parquet under <data dir>/lake."""
    _run_named("build_sink_app", name)


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
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1,
              show_default="the machine's cores", help="Processes the entities are sharded over.")
def replay(lake: Path | None, out: Path, workers: int) -> None:
    """Replay the event log through the stream's feature code: the feature table."""
    from models.tables import feature_table

    table, stats = feature_table(lake or settings_mod.load().lake_dir, workers=workers)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    click.echo(json.dumps(stats, indent=2))


@main.command()
@click.option("--lake", type=click.Path(path_type=Path), default=None,
              help="Lake to train on (default: the live lake).")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--bootstrap", is_flag=True,
              help="Only if no model exists: simulate a history offline and train on it.")
@click.option("--cutoff", default=None,
              help="Point in time (ISO date/time UTC or epoch ms): features and labels as known "
                   "then (default: the lake's latest event or label).")
@click.option("--maturity-days", type=float, default=None,
              help="Leave out transfers younger than this at the cut-off (default 14).")
@click.option("--no-card", is_flag=True, help="Skip the model card and its plots.")
@click.option("--features", type=click.Path(path_type=Path, exists=True), default=None,
              help="The lake's feature table from `vigie replay --out` (default: replay now).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--search-budget-s", type=click.FloatRange(min=0), default=None,
              help="Seconds for the LightGBM parameter search on validation (default 60; 0: none).")
@click.option("--search-trials", type=click.IntRange(min=1), default=None,
              help="At most this many trials, the defaults included (default 16). A search that "
                   "ends on its trials gives the same model for the same seed anywhere.")
def train(lake: Path | None, seed: int, bootstrap: bool, cutoff: str | None,
          maturity_days: float | None, no_card: bool, features: Path | None,
          progress: bool, search_budget_s: float | None, search_trials: int | None) -> None:
    """Point-in-time training set on the lake's source families, Great Expectations suite
    (refuses to train on a failure), LightGBM (time split, stopping on validation log loss,
    a budgeted parameter search), a logistic-regression baseline, registry, model card."""
    import models

    models.passive_openmp()  # before lightgbm is imported
    from models import registry
    from models.datasets import DEFAULT_MATURITY_DAYS
    from models.lifecycle import DataValidationError, train_lake
    from models.train import SEARCH_BUDGET_S

    if bootstrap:
        if registry.latest() is not None:
            click.echo(f"model {registry.latest()} exists; nothing to bootstrap")
            return
        from pipelines.simulator.offline import run_offline

        lake = settings_mod.load().data_dir / "bootstrap-history"
        if not lake.exists():  # the demo's first model: a fortnight, no search (~30 s, not ~2 min)
            run_offline(lake, seed=seed, days=BOOTSTRAP_DAYS)
        search_budget_s = 0.0 if search_budget_s is None else search_budget_s
    try:
        stats = train_lake(lake or settings_mod.load().lake_dir, seed=seed,
                           cutoff_ms=_parse_ms(cutoff),
                           maturity_days=DEFAULT_MATURITY_DAYS if maturity_days is None else maturity_days,
                           progress=progress, card=not no_card, features=features,
                           search_budget_s=SEARCH_BUDGET_S if search_budget_s is None
                           else search_budget_s, search_trials=search_trials)
    except DataValidationError as err:
        click.echo(str(err), err=True)
        raise SystemExit(2)
    click.echo(json.dumps(stats, indent=2, default=str))


BOOTSTRAP_DAYS = 14.0


def _parse_ms(value: str | None) -> int | None:
    """A time option: ISO 8601 (no offset: UTC) or epoch ms, read as ``vigie import`` reads it."""
    if value is None:
        return None
    from pipelines.lake.importer import Reject, parse_ms

    try:
        return parse_ms(value, "time")
    except Reject as err:
        raise click.BadParameter(str(err)) from None


@main.command("import")
@click.option("--transfers", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              required=True, help="transfer_id, ts, sender, recipient, amount [, currency] (.csv/.parquet).")
@click.option("--labels", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="transfer_id, kind, known_at [, party].")
@click.option("--accounts", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              default=None, help="account, signup_ts (default: sign-up at first appearance).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New lake directory.")
@click.option("--map", "mappings", multiple=True, metavar="SOURCE=TARGET",
              help="Rename a source column, e.g. --map tx_time=ts (repeatable).")
@click.option("--progress/--no-progress", default=True, show_default=True)
def import_(transfers: Path, labels: Path | None, accounts: Path | None, out: Path,
            mappings: tuple[str, ...], progress: bool) -> None:
    """Import your own history (transfers, delayed labels, sign-ups) as a lake: bad rows go to
    OUT/rejects.csv, the families it holds to OUT/sources.json (pipelines/lake/importer.py)."""
    from pipelines.lake.importer import ImportFailed, import_history, parse_map, summary

    try:
        manifest = import_history(transfers, out, labels, accounts, parse_map(mappings), progress)
    except ImportFailed as err:
        raise click.ClickException(str(err))
    click.echo(summary(manifest))
    if not manifest["families"]["transfers"]:
        raise SystemExit(1)


@main.command()
@click.option("--lake", type=click.Path(path_type=Path), default=None,
              help="Lake to validate (default: the live lake).")
@click.option("--training/--no-training", default=False, show_default=True,
              help="Also build the point-in-time training table and validate it.")
def validate(lake: Path | None, training: bool) -> None:
    """Run the Great Expectations suites (data/expectations/) on the lake; print failures."""
    from models.expectations import format_failures, validate_lake, validate_training_table

    lake = lake or settings_mod.load().lake_dir
    results = validate_lake(lake)
    if training:
        from models.datasets import training_set
        from pipelines.lake.sources import lake_families

        table, stats = training_set(lake)
        results.append(validate_training_table(table, stats["cutoff_ms"],
                                               families=lake_families(lake)))
    click.echo(format_failures(results))
    if not all(r["success"] for r in results):
        raise SystemExit(1)


@main.command()
@click.option("--events", type=click.Path(path_type=Path, exists=True), required=True,
              help="Any lake in Vigie's schema: replayed, labelled, scored.")
@click.option("--from", "from_ts", default=None,
              help="Score the transfers from this time on (ISO 8601 UTC or epoch ms).")
@click.option("--to", "to_ts", default=None,
              help="...until before this time; features use every event before it.")
@click.option("--model", "version", default=None, help="Model version (default: the latest).")
@click.option("--k", type=click.IntRange(min=1), default=100, show_default=True,
              help="Senders the team reviews a day (top-k daily precision).")
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON.")
def evaluate(events: Path, from_ts: str | None, to_ts: str | None, version: str | None, k: int,
             as_json: bool) -> None:
    """Evaluate a model and its baseline the fraud-team way on a lake, in a time window
    (AP, ROC-AUC, top-k daily precision, budgets, scenarios, calibration)."""
    from models.evaluate import evaluate_lake, summary

    try:
        report = evaluate_lake(events, version, from_ms=_parse_ms(from_ts),
                               to_ms=_parse_ms(to_ts), review_per_day=k)
    except ValueError as err:  # no model, an empty window
        raise click.ClickException(str(err))
    click.echo(json.dumps(report, indent=2, default=str) if as_json else summary(report))


@main.command()
@click.argument("versions", nargs=-1)
@click.option("--events", type=click.Path(path_type=Path, exists=True), default=None,
              help="Offline: score this lake with both models A and B.")
@click.option("--lake", type=click.Path(path_type=Path), default=None,
              help="Online: the lake whose decisions to compare (default: the live lake).")
@click.option("--json", "as_json", is_flag=True)
def compare(versions: tuple[str, ...], events: Path | None, lake: Path | None, as_json: bool) -> None:
    """Champion vs challenger: the acting and shadow decisions on the same transfers, or
    `--events DIR A B` offline."""
    from models.compare import compare_decisions, compare_models, format_comparison

    if events is not None:
        if len(versions) != 2:
            raise click.UsageError("--events DIR needs two model versions: A B")
        result = compare_models(events, *versions)
    else:
        if len(versions) > 1:
            raise click.UsageError("online comparison takes at most the challenger's version")
        result = compare_decisions(lake or settings_mod.load().lake_dir,
                                   versions[0] if versions else None)
    if as_json:
        result.pop("reports", None)
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        click.echo(format_comparison(result))


@main.command()
@click.option("--lake", type=click.Path(path_type=Path), default=None,
              help="Lake whose decisions to read (default: the live lake).")
@click.option("--model", "version", default=None,
              help="Model whose training distribution is the reference (default: the latest).")
@click.option("--window", type=click.Choice(["hour", "day"]), default="day", show_default=True)
@click.option("--threshold", type=float, default=None, help="PSI alert level (default 0.25).")
def drift(lake: Path | None, version: str | None, window: str, threshold: float | None) -> None:
    """PSI of every feature: the decisions' features over the last hour/day vs training."""
    from models import registry
    from models.drift import ALERT_PSI, decision_features, drift_report

    version = version or registry.latest()
    if version is None:
        raise click.ClickException("no model in the registry")
    meta = registry.load_meta(version)
    if "feature_bins" not in meta:
        raise click.ClickException(f"model {version} predates drift bins; retrain it")
    live = decision_features(lake or settings_mod.load().lake_dir,
                             3_600_000 if window == "hour" else 86_400_000)
    if live.empty:
        raise click.ClickException("no decisions in that window")
    report = drift_report(meta["feature_bins"], live, threshold or ALERT_PSI)
    click.echo(f"{len(live)} decisions over the last {window} vs {version}'s training window")
    click.echo(report.head(20).to_string(index=False))
    alerts = report[report["alert"]]
    if len(alerts):
        click.echo(f"ALERT: {len(alerts)} feature(s) drifted (PSI > {threshold or ALERT_PSI}): "
                   + ", ".join(alerts["feature"]), err=True)
        raise SystemExit(3)


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
    from pipelines.contracts.schemas import ModelUpdate

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
    from pipelines.lake import parquet as lake_mod
    from pipelines.contracts.topics import TOPICS

    con = lake_mod.connect(lake or settings_mod.load().lake_dir)
    if sql is None:
        sql = " UNION ALL ".join(f"SELECT '{t}' AS topic, count(*) AS rows FROM "
                                 f"{lake_mod.view_name(t)}" for t in TOPICS)
    click.echo(con.execute(sql).df().to_string(index=False))


@main.command()
@click.option("--lake", type=click.Path(path_type=Path), default=None)
@click.option("--closed-for", "closed_for_h", type=float, default=2.0, show_default=True,
              help="Merge only the hours that ended at least this many hours ago.")
def compact(lake: Path | None, closed_for_h: float) -> None:
    """Merge the lake sink's small files: one file per partition per closed hour (the sink
    does it every 10 min by itself)."""
    import time

    from pipelines.lake import parquet as lake_mod

    closed_before = int((time.time() - closed_for_h * 3600) * 1000)
    done = lake_mod.compact(lake or settings_mod.load().lake_dir, closed_before)
    click.echo(f"merged {done['files_merged']} files into {done['files_written']}")


@main.command()
@click.option("--only", type=click.Choice(["foundation", "stream", "train", "detection"]),
              default=None,
              help="Run one group of benchmarks.")
def bench(only: str | None) -> None:
    """Measure throughput, latency and start times; write bench/results.json and
    append to docs/benchmarks.md."""
    from pipelines.bench import foundation, report, stream

    results = {}
    if only in (None, "foundation"):
        results.update(foundation.run())
    if only in (None, "stream"):
        results.update(stream.run())
    if only == "train":  # minutes, not seconds: only on request
        from pipelines.bench import training as training_bench

        results.update(training_bench.run())
    if only in (None, "detection"):  # Vigie against the baseline on three histories (~15 min)
        from pipelines.bench import detection

        results.update(detection.run())
    merged = report.write(results)
    click.echo(json.dumps(merged, indent=2, default=str))


@main.command("console-users")
@click.option("--add", "username", default=None, help="Add or replace this user (asks a password).")
@click.option("--role", type=click.Choice(["analyst", "lead", "data_scientist", "admin"]),
              default="analyst", show_default=True)
def console_users(username: str | None, role: str) -> None:
    """Set the console's demo users (one per role) to a fresh password, printed, in
    <data dir>/console/users.yaml (bcrypt hashes); with --add, add one user."""
    from dashboards import users

    path = users.users_path()
    if username:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        users.write_users(path, {username: (role, password)})
        click.echo(f"{username} ({role}) written to {path}")
        return
    click.echo(users.describe(path, users.ensure_demo_users(path)))


@main.command()
@click.option("--port", type=int, default=None, help="Default: VIGIE_CONSOLE_PORT or 8501.")
def console(port: int | None) -> None:
    """Run the analyst console (Streamlit) on 127.0.0.1 until Ctrl-C."""
    import subprocess

    from dashboards import users

    args = users.streamlit_args(port)
    click.echo(f"console: http://127.0.0.1:{args[-1]}")
    sys.exit(subprocess.call([sys.executable, *args]))


@main.command()
@click.option("--rate", type=float, default=50.0, show_default=True, help="Simulated events/s.")
@click.option("--no-simulator", is_flag=True, help="Start everything but the simulator.")
def run(rate: float, no_simulator: bool) -> None:
    """Run the whole system: broker (unless KAFKA_BOOTSTRAP_SERVERS is set), worker, sink,
    services and the live simulator. Ctrl-C stops everything it started."""
    from pipelines.cli.supervisor import run_all

    run_all(rate=rate, simulator=not no_simulator)


if __name__ == "__main__":
    main()

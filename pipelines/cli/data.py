"""``vigie simulate``, ``replay``, ``import``, ``validate``, ``lake`` and ``compact``: making,
bringing in, checking and querying the lake."""
from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import click

from models.datasets import training_set
from models.expectations import format_failures, validate_lake, validate_training_table
from models.tables import write_features
from pipelines.contracts import settings as settings_mod
from pipelines.contracts.topics import TOPICS
from pipelines.lake import parquet as lake_mod
from pipelines.lake.importer import ImportFailed, import_history, parse_map, summary
from pipelines.lake.sources import lake_families
from pipelines.simulator.live import run_live
from pipelines.simulator.offline import run_offline


@click.command()
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
        stats = run_offline(out, seed=seed, **extra)
    else:
        live_extra = {k: v for k, v in extra.items() if k == "users"}
        try:
            stats = asyncio.run(run_live(seed=seed, rate=rate, duration_s=duration, **live_extra))
        except KeyboardInterrupt:
            return
    click.echo(json.dumps(stats, indent=2, default=str))


@click.command()
@click.option("--lake", type=click.Path(path_type=Path), default=None,
              help="Lake to replay (default: the live lake).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Feature table (Parquet).")
@click.option("--workers", type=click.IntRange(min=1), default=os.cpu_count() or 1,
              show_default="the machine's cores", help="Processes the entities are sharded over.")
@click.option("--progress/--no-progress", default=None,
              help="A progress bar on stderr (default: only on a terminal).")
def replay(lake: Path | None, out: Path, workers: int, progress: bool | None) -> None:
    """Replay the event log through the stream's feature code: the feature table. The lake is
    streamed by event time and the table written chunk by chunk: memory stays bounded."""
    stats = write_features(lake or settings_mod.load().lake_dir, out, workers, progress)
    click.echo(json.dumps(stats, indent=2))


@click.command("import")
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
    try:
        manifest = import_history(transfers, out, labels, accounts, parse_map(mappings), progress)
    except ImportFailed as err:
        raise click.ClickException(str(err))
    click.echo(summary(manifest))
    if not manifest["families"]["transfers"]:
        raise SystemExit(1)


@click.command()
@click.option("--lake", type=click.Path(path_type=Path), default=None,
              help="Lake to validate (default: the live lake).")
@click.option("--training/--no-training", default=False, show_default=True,
              help="Also build the point-in-time training table and validate it.")
def validate(lake: Path | None, training: bool) -> None:
    """Run the Great Expectations suites (data/expectations/) on the lake; print failures."""
    lake = lake or settings_mod.load().lake_dir
    results = validate_lake(lake)
    if training:
        table, stats = training_set(lake)
        results.append(validate_training_table(table, stats["cutoff_ms"],
                                               families=lake_families(lake)))
    click.echo(format_failures(results))
    if not all(r["success"] for r in results):
        raise SystemExit(1)


@click.command()
@click.argument("sql", required=False)
@click.option("--lake", type=click.Path(path_type=Path), default=None)
def lake(sql: str | None, lake: Path | None) -> None:
    """Query the lake with DuckDB (default: row counts per topic)."""
    con = lake_mod.connect(lake or settings_mod.load().lake_dir)
    if sql is None:
        sql = " UNION ALL ".join(f"SELECT '{t}' AS topic, count(*) AS rows FROM "
                                 f"{lake_mod.view_name(t)}" for t in TOPICS)
    click.echo(con.execute(sql).df().to_string(index=False))


@click.command()
@click.option("--lake", type=click.Path(path_type=Path), default=None)
@click.option("--closed-for", "closed_for_h", type=float, default=2.0, show_default=True,
              help="Merge only the hours that ended at least this many hours ago.")
def compact(lake: Path | None, closed_for_h: float) -> None:
    """Merge the lake sink's small files: one file per partition per closed hour (the sink
    does it every 10 min by itself)."""
    closed_before = int((time.time() - closed_for_h * 3600) * 1000)
    done = lake_mod.compact(lake or settings_mod.load().lake_dir, closed_before)
    click.echo(f"merged {done['files_merged']} files into {done['files_written']}")

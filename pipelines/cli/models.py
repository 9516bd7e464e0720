"""``vigie evaluate``, ``compare``, ``drift``, ``promote``, ``shadow``, ``unshadow`` and
``rollback``: judging the registered models and switching the live one, on the record (each
switch names its actor and reason). ``vigie train`` (``training.py``) only registers a model:
none acts before someone promotes it."""
from __future__ import annotations

import asyncio
import getpass
import json
import os
import time
import uuid
from pathlib import Path

import click
import msgspec

from models import registry
from models.compare import compare_decisions, compare_models, format_comparison
from models.drift import ALERT_PSI, decision_features, drift_report
from models.evaluate import evaluate_lake, summary
from pipelines.cli.options import parse_time
from pipelines.contracts import settings as settings_mod
from pipelines.contracts.schemas import ModelUpdate
from pipelines.kafka.clients import Publisher


@click.command()
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
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes the replay shards the entities over (as `vigie replay`).")
def evaluate(events: Path, from_ts: str | None, to_ts: str | None, version: str | None, k: int,
             as_json: bool, workers: int) -> None:
    """Evaluate a model and its baseline the fraud-team way on a lake, in a time window
    (AP, ROC-AUC, top-k daily precision, budgets, scenarios, calibration)."""
    try:
        report = evaluate_lake(events, version, from_ms=parse_time(from_ts),
                               to_ms=parse_time(to_ts), workers=workers, review_per_day=k)
    except ValueError as err:  # no model, an empty window
        raise click.ClickException(str(err))
    click.echo(json.dumps(report, indent=2, default=str) if as_json else summary(report))


@click.command()
@click.argument("versions", nargs=-1)
@click.option("--events", type=click.Path(path_type=Path, exists=True), default=None,
              help="Offline: score this lake with both models A and B.")
@click.option("--lake", type=click.Path(path_type=Path), default=None,
              help="Online: the lake whose decisions to compare (default: the live lake).")
@click.option("--json", "as_json", is_flag=True)
def compare(versions: tuple[str, ...], events: Path | None, lake: Path | None, as_json: bool) -> None:
    """Champion vs challenger: the acting and shadow decisions on the same transfers, or
    `--events DIR A B` offline."""
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


@click.command()
@click.option("--lake", type=click.Path(path_type=Path), default=None,
              help="Lake whose decisions to read (default: the live lake).")
@click.option("--model", "version", default=None,
              help="Model whose training distribution is the reference (default: the latest).")
@click.option("--window", type=click.Choice(["hour", "day"]), default="day", show_default=True)
@click.option("--threshold", type=float, default=None, help="PSI alert level (default 0.25).")
def drift(lake: Path | None, version: str | None, window: str, threshold: float | None) -> None:
    """PSI of every feature: the decisions' features over the last hour/day vs training."""
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


def os_user() -> str:
    """Who runs this command, by default: the OS user (``--actor`` overrides it)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return f"uid-{os.getuid()}"


def audited(command):
    """``--reason`` (required) and ``--actor``: a model change is on the record, like the
    console's (docs/models.md#promotion)."""
    command = click.option("--actor", default=None, show_default="the OS user",
                           help="Who is making this change, for the audit.")(command)
    return click.option("--reason", default=None, metavar="TEXT",
                        help="Why (required; shown on the console's audit page).")(command)


@click.command()
@click.argument("version")
@audited
def promote(version: str, reason: str | None, actor: str | None) -> None:
    """Make VERSION the acting model in every running worker (no restart)."""
    _model_update("promote", version, reason, actor)


@click.command()
@click.argument("version")
@audited
def shadow(version: str, reason: str | None, actor: str | None) -> None:
    """Score every transfer with VERSION too, recording its would-be decisions only."""
    _model_update("shadow", version, reason, actor)


@click.command()
@audited
def unshadow(reason: str | None, actor: str | None) -> None:
    """Stop scoring with the shadow model."""
    _model_update("unshadow", "shadow", reason, actor)


@click.command()
@audited
def rollback(reason: str | None, actor: str | None) -> None:
    """Go back to the model that acted before the last promotion."""
    _model_update("rollback", "previous", reason, actor)


def model_update(action: str, version: str, actor: str, reason: str) -> ModelUpdate:
    """The audited update, or ValueError saying what is missing or malformed."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError(f"a reason is required to {action}: --reason TEXT")
    try:
        return msgspec.convert({"id": uuid.uuid4().hex, "ts": int(time.time() * 1000),
                                "action": action, "version": version, "actor": actor,
                                "reason": reason}, ModelUpdate)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from exc


def send_model_update(update: ModelUpdate, conf=None) -> None:
    """Publish a model update (acks=all: once this returns, the broker has it)."""
    async def send():
        pub = await Publisher(conf).start()
        try:
            await pub.publish("model-updates", update)
        finally:
            await pub.stop()

    asyncio.run(send())


def _model_update(action: str, version: str, reason: str | None, actor: str | None) -> None:
    try:
        update = model_update(action, version, actor or os_user(), reason)
    except ValueError as exc:
        raise click.UsageError(str(exc))
    if action in ("promote", "shadow") and version not in registry.list_versions():
        raise click.BadParameter(f"no model {version} in the registry")
    send_model_update(update)
    click.echo(f"{action} {version}: sent (by {update.actor}: {update.reason})")

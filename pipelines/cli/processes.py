"""``vigie broker``, ``topics``, ``serve``, ``console`` and ``console-users``: the light
processes (the Faust workers are in ``workers.py``) and the console's sign-ins."""
from __future__ import annotations

import asyncio
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from dashboards import users
from pipelines.contracts import settings as settings_mod
from pipelines.kafka.broker import EmbeddedKafka
from pipelines.kafka.clients import ensure_topics

SERVICES = ("messaging", "payment", "assistant")


@click.command()
@click.option("--port", type=int, default=settings_mod.DEFAULT_BROKER_PORT, show_default=True)
@click.option("--log-dir", type=click.Path(path_type=Path), default=None,
              help="KRaft log directory (default: <data dir>/broker).")
def broker(port: int, log_dir: Path | None) -> None:
    """Run the embedded single-node Apache Kafka broker until Ctrl-C: SASL/SCRAM and ACLs,
    one principal per component, passwords in <secrets dir>/kafka (docs/security.md)."""
    started = time.monotonic()
    kafka = EmbeddedKafka(port, log_dir or settings_mod.data_dir() / "broker",
                          settings_mod.secrets_dir()).start()
    click.echo(f"broker ready at {kafka.bootstrap} in {time.monotonic() - started:.1f}s "
               f"(log: {kafka.log_dir}, credentials: {kafka.secrets_dir / 'kafka'})")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while kafka.proc.poll() is None:
            time.sleep(0.5)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        kafka.stop()


@click.command()
def topics() -> None:
    """Create Vigie's topics on the configured cluster (idempotent)."""
    asyncio.run(ensure_topics())
    click.echo("topics ready")


@click.command()
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--port", type=int, default=None)
def serve(service: str, port: int | None) -> None:
    """Run one of the thin HTTP services."""
    os.environ.setdefault("VIGIE_KAFKA_PRINCIPAL", service)
    importlib.import_module(f"pipelines.services.{service}").run(port=port)


@click.command("console-users")
@click.option("--add", "username", default=None, help="Add or replace this user (asks a password).")
@click.option("--role", type=click.Choice(["analyst", "lead", "data_scientist", "admin"]),
              default="analyst", show_default=True)
def console_users(username: str | None, role: str) -> None:
    """Set the console's demo users (one per role) to a fresh password, printed, in
    <data dir>/console/users.yaml (bcrypt hashes); with --add, add one user."""
    path = users.users_path()
    if username:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        users.write_users(path, {username: (role, password)})
        click.echo(f"{username} ({role}) written to {path}")
        return
    click.echo(users.describe(path, users.ensure_demo_users(path)))


@click.command()
@click.option("--port", type=int, default=None, help="Default: VIGIE_CONSOLE_PORT or 8501.")
def console(port: int | None) -> None:
    """Run the analyst console (Streamlit) on 127.0.0.1 until Ctrl-C."""
    args = users.streamlit_args(port)
    click.echo(f"console: http://127.0.0.1:{args[-1]}")
    sys.exit(subprocess.call([sys.executable, *args]))

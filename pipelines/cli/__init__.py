"""The ``vigie`` command line: the ``main`` group and where each command lives.

A command's module is imported only when that command runs (or for ``--help``), so that
``vigie worker`` loads neither the console, the simulator nor Great Expectations.
"""
from __future__ import annotations

import importlib
import logging
import os

import click

from pipelines.contracts.settings import SettingError
from pipelines.kafka.principals import COMMAND_PRINCIPALS

COMMANDS = {  # name -> "module:attribute" of its click command
    "broker": "pipelines.cli.processes:broker",
    "topics": "pipelines.cli.processes:topics",
    "serve": "pipelines.cli.processes:serve",
    "console": "pipelines.cli.processes:console",
    "console-users": "pipelines.cli.processes:console_users",
    "worker": "pipelines.cli.workers:worker",
    "sink": "pipelines.cli.workers:sink",
    "run": "pipelines.cli.supervisor:run",
    "simulate": "pipelines.cli.data:simulate",
    "replay": "pipelines.cli.data:replay",
    "import": "pipelines.cli.data:import_",
    "validate": "pipelines.cli.data:validate",
    "lake": "pipelines.cli.data:lake",
    "compact": "pipelines.cli.data:compact",
    "suites": "pipelines.cli.suites:suites",
    "train": "pipelines.cli.training:train",
    "evaluate": "pipelines.cli.models:evaluate",
    "compare": "pipelines.cli.models:compare",
    "drift": "pipelines.cli.models:drift",
    "promote": "pipelines.cli.models:promote",
    "shadow": "pipelines.cli.models:shadow",
    "unshadow": "pipelines.cli.models:unshadow",
    "rollback": "pipelines.cli.models:rollback",
    "bench": "pipelines.cli.bench:bench",
    "tokens": "pipelines.cli.tokens:tokens",
}



class LazyGroup(click.Group):
    """A group whose commands are imported by name on first use (click's documented pattern
    for lazily loading subcommands)."""

    def __init__(self, *args, lazy_subcommands: dict[str, str], **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_subcommands:
            return super().get_command(ctx, cmd_name)
        module, attr = self.lazy_subcommands[cmd_name].split(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}:{attr} is not a click command")
        return command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SettingError as exc:  # a missing key or a bad value: say which, no traceback
            raise click.ClickException(str(exc)) from None


def _logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)


@click.group(cls=LazyGroup, lazy_subcommands=COMMANDS)
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def main(ctx: click.Context, log_level: str) -> None:
    """Vigie: real-time fraud decisions for money sent in a chat messenger."""
    _logging(log_level)
    if ctx.invoked_subcommand in COMMAND_PRINCIPALS:  # `serve` sets its own
        os.environ.setdefault("VIGIE_KAFKA_PRINCIPAL",
                              COMMAND_PRINCIPALS[ctx.invoked_subcommand])


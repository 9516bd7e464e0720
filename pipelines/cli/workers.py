"""``vigie worker`` and ``vigie sink``: the Faust workers (``pipelines.stream.worker``'s apps)."""
from __future__ import annotations

import logging
import os

import click
import faust.worker

from pipelines.contracts import settings as settings_mod
from pipelines.stream import worker as apps
from pipelines.stream.app import tune_gc


class Worker(faust.worker.Worker):  # same name: its log lines ("[^Worker]: Ready") stay
    # the same (the tests and the supervisor wait for them)
    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        super().on_setup_root_logger(logger, level)
        # At WARNING and above, Faust's progress spinner lowers the root logger to DEBUG:
        # every debug call on the hot path (one per message sent) then builds a LogRecord.
        logger.setLevel(level)


def _run_faust(app) -> None:
    """Run a Faust app until SIGTERM/Ctrl-C. With VIGIE_PROFILE=FILE, under cProfile: the
    benchmarks use it to show where a worker's CPU goes."""
    tune_gc()
    worker = Worker(app, loglevel=logging.getLevelName(logging.getLogger().level).lower(),
                    quiet=True)
    profile_to = settings_mod.environment().stream.profile
    if not profile_to:
        worker.execute_from_commandline()
        return
    import cProfile  # only when profiling

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        worker.execute_from_commandline()
    finally:
        profiler.disable()
        profiler.dump_stats(profile_to)


def _run_named(builder_name: str, name: str | None) -> None:
    """Run one of ``pipelines.stream.worker``'s apps as the named worker (its state directory)."""
    if name:
        os.environ["VIGIE_WORKER_NAME"] = name
    _run_faust(getattr(apps, builder_name)())


@click.command()
@click.option("--name", default=None, help="Worker name (its state directory); default w1.")
def worker(name: str | None) -> None:
    """Run a decision worker (validation, features, decisions). Start more to scale out."""
    _run_named("build_worker_app", name)


@click.command()
@click.option("--name", default=None, help="Sink worker name; default w1.")
def sink(name: str | None) -> None:
    """Run the lake sink: every topic to Parquet under <data dir>/lake."""
    _run_named("build_sink_app", name)

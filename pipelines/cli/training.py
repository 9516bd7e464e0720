"""``vigie train``: the lake's point-in-time training set, validated, trained, registered (not
promoted: no live decision changes until someone runs ``vigie promote``).

Its own module because OpenMP reads its wait policy when lightgbm loads: ``passive_openmp``
runs before the imports below, and only for training.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

import models

models.passive_openmp()  # before lightgbm is imported (by models.registry, models.lifecycle)

from models import registry  # noqa: E402
from models.datasets import DEFAULT_MATURITY_DAYS  # noqa: E402
from models.lifecycle import DataValidationError, train_lake  # noqa: E402
from models.train import SEARCH_BUDGET_S  # noqa: E402
from pipelines.cli.options import parse_time  # noqa: E402
from pipelines.contracts import settings as settings_mod  # noqa: E402
from pipelines.simulator.offline import run_offline  # noqa: E402

BOOTSTRAP_DAYS = 14.0


@click.command()
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
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes the replay shards the entities over (as `vigie replay`).")
@click.option("--search-budget-s", type=click.FloatRange(min=0), default=None,
              help="Seconds for the LightGBM parameter search on validation (default 60; 0: none).")
@click.option("--search-trials", type=click.IntRange(min=1), default=None,
              help="At most this many trials, the defaults included (default 16). A search that "
                   "ends on its trials gives the same model for the same seed anywhere.")
def train(lake: Path | None, seed: int, bootstrap: bool, cutoff: str | None,
          maturity_days: float | None, no_card: bool, features: Path | None,
          progress: bool, workers: int, search_budget_s: float | None,
          search_trials: int | None) -> None:
    """Point-in-time training set on the lake's source families, Great Expectations suite
    (refuses to train on a failure), LightGBM (time split, stopping on validation log loss,
    a budgeted parameter search), a logistic-regression baseline, registry, model card."""
    if bootstrap:
        if registry.latest() is not None:
            click.echo(f"model {registry.latest()} exists; nothing to bootstrap")
            return
        lake = settings_mod.load().data_dir / "bootstrap-history"
        if not lake.exists():  # the demo's first model: a fortnight, no search (~30 s, not ~2 min)
            run_offline(lake, seed=seed, days=BOOTSTRAP_DAYS)
        search_budget_s = 0.0 if search_budget_s is None else search_budget_s
    try:
        stats = train_lake(lake or settings_mod.load().lake_dir, seed=seed,
                           cutoff_ms=parse_time(cutoff),
                           maturity_days=DEFAULT_MATURITY_DAYS if maturity_days is None else maturity_days,
                           progress=progress, card=not no_card, features=features,
                           search_budget_s=SEARCH_BUDGET_S if search_budget_s is None
                           else search_budget_s, search_trials=search_trials,
                           replay_workers=workers)
    except DataValidationError as err:
        click.echo(str(err), err=True)
        raise SystemExit(2)
    click.echo(json.dumps(stats, indent=2, default=str))
    # stderr: stdout is the JSON above, which scripts read
    click.echo(f"registered {stats['version']}; it acts only once promoted: "
               f"vigie promote {stats['version']} --reason TEXT", err=True)

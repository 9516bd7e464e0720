"""``vigie suites``: rebuild the expectation suites under ``data/expectations/``.

The topic suites come from the event contracts; the training-table suite from a profile of a
seeded simulated lake (``run_offline(seed=11, users=1500, days=14)``). Same code, same files:
run it after a feature or contract change and review the diff like code.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import click

from models.datasets import training_set
from models.expectations import EVENT_TOPICS, SUITES_DIR, topic_suite, training_suite
from pipelines.simulator.offline import run_offline


def build(out_dir: Path = SUITES_DIR) -> list[Path]:
    """Write every suite as ``<out_dir>/<name>.json``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    suites = [topic_suite(t) for t in EVENT_TOPICS]
    with tempfile.TemporaryDirectory() as tmp:
        run_offline(Path(tmp), seed=11, users=1500, days=14)
        profile, _ = training_set(Path(tmp))
    suites.append(training_suite(profile))
    paths = []
    for suite in suites:
        path = out_dir / f"{suite['name']}.json"
        path.write_text(json.dumps(suite, indent=2, sort_keys=True) + "\n")
        paths.append(path)
    return paths


@click.command("suites")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=SUITES_DIR,
              show_default=True, help="Where to write the suites.")
def suites(out_dir: Path) -> None:
    """Rebuild the expectation suites (topics from the contracts, training table from a profile
    of a seeded simulated lake)."""
    for path in build(out_dir):
        click.echo(path)

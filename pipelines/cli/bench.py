"""``vigie bench``: run the benchmark groups of ``pipelines.bench`` and record their figures."""
from __future__ import annotations

import json
import os

import click

from pipelines.bench import (detection, foundation, latency, peer_quix, recovery, replay, report,
                            soak, stream)


@click.command()
@click.option("--only", type=click.Choice(["foundation", "stream", "peer", "latency", "train",
                                           "recovery", "detection", "soak", "warnings",
                                           "replay"]),
              default=None,
              help="Run one group of benchmarks (train, soak and replay only on request).")
def bench(only: str | None) -> None:
    """Measure throughput, latency and start times; write bench/results.json and
    append to docs/benchmarks.md."""
    os.environ.setdefault("VIGIE_DEMO", "1")  # simulated data: keyed with generated demo keys
    results = {}
    if only in (None, "foundation"):
        results.update(foundation.run())
    if only in (None, "stream"):
        results.update(stream.run())
    if only in (None, "peer"):  # Quix Streams' two shapes beside Faust's (skips without it)
        results.update(peer_quix.run(pipeline=results))
    if only in (None, "latency"):  # p50/p95/p99 at 100 to 1,000 transfers/s (~20 min)
        results.update(latency.run())
        results.update(latency.run(**latency.SCALE_OUT))  # 500 on two workers (~5 min)
    if only == "train":  # minutes, not seconds: only on request
        # why local: importing it sets OMP_WAIT_POLICY=PASSIVE, which child workers inherit
        from pipelines.bench import training as training_bench

        results.update(training_bench.run())
    if only in (None, "recovery"):  # account takeovers over a simulated month (~1 min)
        results.update(recovery.bench())
    if only in (None, "detection"):  # Vigie against the baseline on three histories (~15 min)
        results.update(detection.run())
    if only in (None, "warnings"):  # what warnings stop and cost, five simulated weeks
        # why local: it trains a model, as the train group does (OMP_WAIT_POLICY=PASSIVE)
        from pipelines.bench import warning_effects

        results.update(warning_effects.results(warning_effects.run()))
    if only == "soak":  # 70 min by default (VIGIE_BENCH_SOAK_MINUTES, ..._BURST_MINUTES)
        results.update(soak.run())
    if only == "replay":  # a 1M-transfer lake simulated, then replayed 2 x 2 times (~1 h)
        results.update(replay.run())
    merged = report.write(results)
    if only == "soak":
        soak.append_section(results)  # the soak's own table and chart, after the figures
    click.echo(json.dumps(merged, indent=2, default=str))

"""How long each console page takes to render on a big lake, cold and warm (medians).

    python -m pipelines.bench.console LAKE_DIR [--runs 3] [--write]

LAKE_DIR is an offline simulator lake (``vigie simulate --offline``); the decisions and payment
statuses it lacks are derived with DuckDB (``DECISIONS_SQL``, ``STATUS_SQL``), into the lake: give
it a lake of your own. How the pages are rendered: docs/bench.md.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboards import common, entity_index, users
from pipelines.bench import report

DECISIONS_SQL = """
COPY (
  SELECT id || '.d' AS id, ts + 40 AS ts, 1 AS v, transfer_id, sender, recipient, amount_cents,
         CASE WHEN hash(id) % 200 = 0 THEN 'hold' WHEN hash(id) % 500 = 1 THEN 'block'
              WHEN hash(id) % 50 = 2 THEN 'warn' ELSE 'approve' END AS action,
         (hash(id) % 1000) / 1000.0 AS score, 'm-bench' AS model_version, false AS shadow,
         '[]' AS rule_hits, '[]' AS list_hits, '[]' AS reasons, '{{}}' AS features,
         40.0 AS latency_ms, 0::INTEGER AS _partition, row_number() OVER () AS _offset,
         strftime(to_timestamp(ts / 1000), '%Y-%m-%dT%H') AS hour
  FROM read_parquet('{lake}/transfer-requests/*/*.parquet')
) TO '{lake}/decisions' (FORMAT parquet, PARTITION_BY (hour), OVERWRITE_OR_IGNORE)
"""

# The payment service's statuses (pipelines/services/payment.py) for those decisions: pending, then
# approved / warned / held / blocked; approved and warned ones paid out, blocked ones returned.
# An analyst released or blocked 90 % of the holds an hour later, except in the lake's last day:
# the queue keeps the rest, old ones included. One transfer in 1,000 was held by the no-decision
# fallback and kept held when its (late) decision came.
STATUS_SQL = """
COPY (
  WITH t AS (
    SELECT transfer_id, ts, sender, recipient, amount_cents, payout_due_ts,
           CASE WHEN hash(id) % 1000 = 3 THEN 'fallback' WHEN hash(id) % 200 = 0 THEN 'hold'
                WHEN hash(id) % 500 = 1 THEN 'block' WHEN hash(id) % 50 = 2 THEN 'warn'
                ELSE 'approve' END AS action,
           hash(transfer_id) % 10 <> 0 AND ts < max(ts) OVER () - 86400000 AS answered,
           hash(transfer_id) % 20 < 10 AS ok
    FROM read_parquet('{lake}/transfer-requests/*/*.parquet')),
  steps AS (
    SELECT *, 1 AS n, ts AS at_ms, 'pending' AS status, '' AS reason FROM t
    UNION ALL
    SELECT *, 2, ts + 40, CASE action WHEN 'approve' THEN 'approved' WHEN 'warn' THEN 'warned'
                                      WHEN 'block' THEN 'blocked' ELSE 'held' END,
           CASE action WHEN 'fallback' THEN 'fallback: no decision by deadline'
                       WHEN 'approve' THEN '' ELSE 'decision:' || action || ' model=m-bench' END FROM t
    UNION ALL
    SELECT *, 3, CASE WHEN action = 'block' THEN ts + 41 ELSE greatest(payout_due_ts, ts + 41) END,
           CASE WHEN action = 'block' THEN 'returned' ELSE 'paid_out' END, ''
    FROM t WHERE action IN ('approve', 'warn', 'block')
    UNION ALL
    SELECT *, 3, ts + 50, 'held', 'late decision:approve model=m-bench; kept held for an analyst'
    FROM t WHERE action = 'fallback'
    UNION ALL
    SELECT *, 4, ts + 3600000, CASE WHEN ok THEN 'released' ELSE 'blocked' END, 'analyst'
    FROM t WHERE action IN ('hold', 'fallback') AND answered)
  SELECT transfer_id || '.' || n AS id, at_ms AS ts, 1 AS v, transfer_id, sender, recipient,
         amount_cents, status, reason, (hash(sender) % 4)::INTEGER AS _partition,
         row_number() OVER (PARTITION BY hash(sender) % 4 ORDER BY at_ms, n) AS _offset,
         strftime(to_timestamp(at_ms / 1000), '%Y-%m-%dT%H') AS hour
  FROM steps
) TO '{lake}/transfer-status' (FORMAT parquet, PARTITION_BY (hour), OVERWRITE_OR_IGNORE)
"""


def add_derived(lake: Path) -> dict:
    """The derived topics' row counts, written first if the lake has none."""
    counts = {}
    for topic, sql in (("decisions", DECISIONS_SQL), ("transfer-status", STATUS_SQL)):
        if not (lake / topic).exists():
            duckdb.connect().execute(sql.format(lake=lake))
        counts[topic] = duckdb.connect().execute(
            f"SELECT count(*) FROM read_parquet('{lake}/{topic}/*/*.parquet')").fetchone()[0]
    return counts


def render_times(lake: Path, runs: int = 3) -> dict:
    """Median render seconds per page, cold (every cached query emptied first) and warm (the
    same page again at once). The console's process-wide resources, its DuckDB views, the
    entity index, the queue index and the overview's totals, are built first and timed apart
    (``startup_s``): the console builds them once per process, in the background from its start
    (dashboards/app.py)."""
    data_dir = Path(tempfile.mkdtemp(prefix="vigie-console-bench-"))
    (data_dir / "lake").symlink_to(lake)  # the console reads <VIGIE_DATA_DIR>/lake
    os.environ["VIGIE_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("VIGIE_DEMO", "1")  # a bench data dir: its hash key is made in it
    # the session's user must be in the users file (else every page ends the session at once)
    users.write_users(users.users_path(), {"root": ("admin", secrets.token_urlsafe(9))})
    started = time.perf_counter()
    entity_index.get().refresh()
    common.queue_index().refresh()
    common.lake_totals()
    common.q("SELECT 1")
    out = {"startup_s": round(time.perf_counter() - started, 2), "pages": {}}
    pages = sorted((Path(__file__).resolve().parents[2] / "dashboards" / "pages").glob("*.py"))
    for page in pages:
        cold, warm, errors = [], [], []
        for _ in range(runs):
            st.cache_data.clear()
            at = AppTest.from_file(str(page), default_timeout=300)
            at.session_state["auth"] = {"username": "root", "role": "admin"}
            for times in (cold, warm):
                started = time.perf_counter()
                at.run()
                times.append(time.perf_counter() - started)
            errors += [str(e.value)[:200] for e in [*at.exception, *at.error]]
        out["pages"][page.stem] = {"cold_s": round(statistics.median(cold), 2),
                                   "warm_s": round(statistics.median(warm), 2),
                                   "errors": sorted(set(errors))}
    return out


SIMULATED_WITH = "vigie simulate --offline --seed 21 --users 100000 --days 15"


def figures(lake: Path, result: dict, simulated_with: str = SIMULATED_WITH) -> dict:
    """The flat figures bench/results.json and docs/benchmarks.md keep."""
    count = lambda topic: duckdb.connect().execute(  # noqa: E731
        f"SELECT count(*) FROM read_parquet('{lake}/{topic}/*/*.parquet')").fetchone()[0]
    flat = {"console_bench_lake": f"{count('transfer-requests'):,} transfers, "
                                  f"{count('messages'):,} messages ({simulated_with}); "
                                  "python -m pipelines.bench.console LAKE "
                                  f"--runs {result['runs']} --write (medians)",
            "console_startup_s": result["startup_s"],
            "console_note": "cold: every cached query emptied before the render; the DuckDB views, "
                            "the entity index (dashboards/entity_index.py), the queue index "
                            "(dashboards/queue_index.py) and the overview's per-file totals "
                            "(dashboards/lake_totals.py) are built once per console process "
                            "(console_startup_s, in the background from its start) and then read "
                            "only new files; decisions and payment statuses derived "
                            f"(pipelines/bench/console.py): {count('transfer-status'):,} statuses"}
    for page, t in result["pages"].items():
        flat[f"console_{page}_cold_s"], flat[f"console_{page}_warm_s"] = t["cold_s"], t["warm_s"]
    return flat


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lake", type=Path)
    parser.add_argument("--runs", type=int, default=3, help="renders per page; medians reported")
    parser.add_argument("--write", action="store_true",
                        help="record the figures in bench/results.json and docs/benchmarks.md")
    parser.add_argument("--simulated-with", default=SIMULATED_WITH,
                        help="the command that made LAKE_DIR, as the figures should name it")
    args = parser.parse_args()
    lake = args.lake.resolve()
    result = {**add_derived(lake), "runs": args.runs, **render_times(lake, args.runs)}
    print(json.dumps(result, indent=2))
    if args.write:
        report.write(figures(lake, result, args.simulated_with))

"""How long each console page takes to render on a big lake, cold and warm (medians).

    python -m pipelines.bench.console LAKE_DIR [--runs 3] [--write]

LAKE_DIR is an offline simulator lake (``vigie simulate --offline``); the decisions it lacks are
derived with DuckDB (``DECISIONS_SQL``). How the pages are rendered: docs/bench.md.
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


def add_decisions(lake: Path) -> int:
    if not (lake / "decisions").exists():
        duckdb.connect().execute(DECISIONS_SQL.format(lake=lake))
    return duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{lake}/decisions/*/*.parquet')").fetchone()[0]


def render_times(lake: Path, runs: int = 3) -> dict:
    """Median render seconds per page, cold (every cached query emptied first) and warm (the
    same page again at once). The console's process-wide resources, its DuckDB views and the
    entity index, are built first and timed apart (``startup_s``): the console builds them
    once per process, in the background from sign-in (dashboards/app.py)."""
    data_dir = Path(tempfile.mkdtemp(prefix="vigie-console-bench-"))
    (data_dir / "lake").symlink_to(lake)  # the console reads <VIGIE_DATA_DIR>/lake
    os.environ["VIGIE_DATA_DIR"] = str(data_dir)
    # the session's user must be in the users file (else every page ends the session at once)
    users.write_users(users.users_path(), {"root": ("admin", secrets.token_urlsafe(9))})
    started = time.perf_counter()
    entity_index.get().refresh()
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


def figures(lake: Path, result: dict) -> dict:
    """The flat figures bench/results.json and docs/benchmarks.md keep."""
    count = lambda topic: duckdb.connect().execute(  # noqa: E731
        f"SELECT count(*) FROM read_parquet('{lake}/{topic}/*/*.parquet')").fetchone()[0]
    flat = {"console_bench_lake": f"{count('transfer-requests'):,} transfers, "
                                  f"{count('messages'):,} messages (vigie simulate --offline --seed 21 "
                                  "--users 100000 --days 15); python -m pipelines.bench.console LAKE "
                                  f"--runs {result['runs']} --write (medians)",
            "console_startup_s": result["startup_s"],
            "console_note": "cold: every cached query emptied before the render; the DuckDB views "
                            "and the entity index (dashboards/entity_index.py) are built once per "
                            "console process (console_startup_s, in the background from sign-in) "
                            "and then read only new files"}
    for page, t in result["pages"].items():
        flat[f"console_{page}_cold_s"], flat[f"console_{page}_warm_s"] = t["cold_s"], t["warm_s"]
    return flat


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lake", type=Path)
    parser.add_argument("--runs", type=int, default=3, help="renders per page; medians reported")
    parser.add_argument("--write", action="store_true",
                        help="record the figures in bench/results.json and docs/benchmarks.md")
    args = parser.parse_args()
    lake = args.lake.resolve()
    result = {"decisions": add_decisions(lake), "runs": args.runs, **render_times(lake, args.runs)}
    print(json.dumps(result, indent=2))
    if args.write:
        report.write(figures(lake, result))

"""How long each console page takes to render on a big lake (issue: analyst console).

    python -m pipelines.bench.console LAKE_DIR

LAKE_DIR is an offline simulator lake (``vigie simulate --offline``); the stream's decisions
are not in it, so a decision per transfer is derived with DuckDB (about 0.5 % held, 0.2 %
blocked, 2 % warned; no feature values) to give the queue and the overview their real volume.
Each page is rendered once cold (its cached queries empty) and once warm, signed in as admin.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

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
    import duckdb

    if not (lake / "decisions").exists():
        duckdb.connect().execute(DECISIONS_SQL.format(lake=lake))
    return duckdb.connect().execute(
        f"SELECT count(*) FROM read_parquet('{lake}/decisions/*/*.parquet')").fetchone()[0]


def render_times(lake: Path) -> dict:
    from streamlit.testing.v1 import AppTest

    import tempfile

    data_dir = Path(tempfile.mkdtemp(prefix="vigie-console-bench-"))
    (data_dir / "lake").symlink_to(lake)  # the console reads <VIGIE_DATA_DIR>/lake
    os.environ["VIGIE_DATA_DIR"] = str(data_dir)
    pages = sorted((Path(__file__).resolve().parents[2] / "dashboards" / "pages").glob("*.py"))
    out = {}
    for page in pages:
        at = AppTest.from_file(str(page), default_timeout=300)
        at.session_state["auth"] = {"username": "root", "role": "admin"}
        times = []
        for _ in range(2):  # cold, then warm
            started = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - started)
        errors = [e.value for e in at.exception] + [e.value for e in at.error]
        out[page.stem] = {"cold_s": round(times[0], 2), "warm_s": round(times[1], 2),
                          "errors": [str(e)[:200] for e in errors]}
    return out


if __name__ == "__main__":
    lake = Path(sys.argv[1]).resolve()
    print(json.dumps({"decisions": add_decisions(lake), "pages": render_times(lake)}, indent=2))

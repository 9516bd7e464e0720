"""SQL: a read-only DuckDB box over the lake's views, with a row limit, a time limit and a
memory limit. Every query is audited (``console-audit``: who, the query, rows, time, outcome);
a query whose audit cannot be written shows no result."""
import re
import threading
import time

import duckdb
import streamlit as st

from dashboards import common
from pipelines.contracts import settings
from pipelines.contracts.topics import TOPICS
from pipelines.lake import parquet as lake

MAX_ROWS = 1000
TIMEOUT_S = 10.0
# What one query may hold in memory, and on how many threads: the console shares its host.
# Nothing spills to disk (no temp directory): past the limit the query fails, and says so.
MEMORY_LIMIT = settings.environment().console.sql_memory_limit
THREADS = 1
if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", MEMORY_LIMIT):
    raise ValueError(f"VIGIE_SQL_MEMORY_LIMIT={MEMORY_LIMIT!r}: expected a size like 256MB or 1GiB")

user = common.require("lead", "data_scientist", "admin")
st.title("SQL")
st.caption("Views: " + ", ".join(lake.view_name(t) for t in TOPICS) + ". Read-only: one "
           "SELECT/WITH statement; no file, network or extension access; at most "
           f"{MEMORY_LIMIT} of memory and {TIMEOUT_S:g} s per query. Queries are audited.")

sql = st.text_area("Query", "SELECT action, count(*) AS n FROM decisions GROUP BY 1", key="sql")
limit = st.number_input("Row limit", 1, MAX_ROWS, 200, key="limit")


def run(sql: str, limit: int):
    con = lake.connect(common.lake_dir())
    try:
        statements = con.extract_statements(sql)
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            raise ValueError("one read-only query (SELECT / WITH / FROM / DESCRIBE / SUMMARIZE)")
        # Lock the connection down once the views exist: the views may read the lake's files,
        # nothing may read or write anything else, and no setting can be changed back.
        con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
        con.execute(f"SET threads = {THREADS}")
        con.execute("SET temp_directory = ''")
        con.execute(f"SET allowed_directories = ['{common.lake_dir()}/']")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        timer = threading.Timer(TIMEOUT_S, con.interrupt)
        timer.start()
        try:
            return con.sql(sql.strip().rstrip(";")).limit(int(limit)).df()
        except duckdb.OutOfMemoryException as exc:
            raise MemoryError(f"over the SQL page's memory limit ({MEMORY_LIMIT}): narrow the "
                              f"query (filter, fewer columns, aggregate first). DuckDB: "
                              f"{str(exc).splitlines()[0]}") from None
        except duckdb.InterruptException:
            raise TimeoutError(f"stopped after the SQL page's time limit ({TIMEOUT_S:g} s)") from None
        finally:
            timer.cancel()
    finally:
        con.close()


if st.button("Run", key="run"):
    started = time.monotonic()
    try:
        result, failure = run(sql, limit), None
    except Exception as exc:
        result, failure = None, exc
    outcome = "ok" if failure is None else f"{failure.__class__.__name__}: {failure}"
    try:
        common.audit("sql_query", actor=user["username"], role=user["role"], sql=sql[:10_000],
                     rows=None if result is None else len(result), outcome=outcome[:500],
                     duration_ms=round((time.monotonic() - started) * 1000, 1))
    except Exception as exc:  # no unaudited query: its result is not shown
        st.error(f"The query could not be audited ({exc.__class__.__name__}); its result is "
                 "not shown. Try again when the broker is back.")
    else:
        if failure is not None:
            st.error(f"Query refused or failed ({failure.__class__.__name__}):")
            st.text(str(failure))
        else:
            st.dataframe(result, hide_index=True, width="stretch")
            st.caption(f"{len(result)} rows (limit {limit}).")

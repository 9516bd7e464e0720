"""SQL: a read-only DuckDB box over the lake's views, with a row limit and a timeout."""
import threading

import duckdb
import streamlit as st

from dashboards import common
from pipelines.contracts.topics import TOPICS
from pipelines.lake import parquet as lake

user = common.require("lead", "data_scientist", "admin")
st.title("SQL")
st.caption("Views: " + ", ".join(lake.view_name(t) for t in TOPICS) + ". Read-only: one "
           "SELECT/WITH statement; no file, network or extension access.")

MAX_ROWS = 1000
TIMEOUT_S = 10.0
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
        con.execute(f"SET allowed_directories = ['{common.lake_dir()}/']")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        timer = threading.Timer(TIMEOUT_S, con.interrupt)
        timer.start()
        try:
            return con.sql(sql.strip().rstrip(";")).limit(int(limit)).df()
        finally:
            timer.cancel()
    finally:
        con.close()


if st.button("Run", key="run"):
    try:
        result = run(sql, limit)
    except Exception as exc:
        st.error(f"Query refused or failed ({exc.__class__.__name__}):")
        st.text(str(exc))
    else:
        st.dataframe(result, hide_index=True, width="stretch")
        st.caption(f"{0 if result is None else len(result)} rows (limit {limit}).")

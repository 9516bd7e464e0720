"""The links around accounts, devices and cards, and the signals of each conversation pair, kept
in memory so the console never scans the whole lake to show one transfer's surroundings.

Tables ``edges`` (device, card and paid links; per file batch: sum ``n`` / ``cents``, take
``min(first_ts)`` when reading), ``signups`` and ``pairs``; each refresh reads only the lake
files it has not read yet. Schema and costs: docs/console.md, "The entity index".
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import streamlit as st

from dashboards import common
from pipelines.lake import parquet as lake_mod

# One source query per topic; {files} is the list of new files. The only definition of an edge.
SOURCES = {
    "account-events": """
        INSERT INTO edges
        SELECT account, b, kind, count(*), NULL, min(ts) FROM (
            SELECT account, device AS b, 'device' AS kind, ts FROM {files} WHERE device IS NOT NULL
            UNION ALL SELECT account, card, 'card', ts FROM {files} WHERE card IS NOT NULL)
        GROUP BY ALL;
        INSERT INTO signups SELECT account, min(ts) FROM {files} WHERE kind = 'signup' GROUP BY 1""",
    "transfer-requests": """
        INSERT INTO edges
        SELECT a, b, kind, count(*), sum(cents), min(ts) FROM (
            SELECT sender AS a, device AS b, 'device' AS kind, NULL AS cents, ts FROM {files}
              WHERE device IS NOT NULL
            UNION ALL SELECT sender, card, 'card', NULL, ts FROM {files} WHERE card IS NOT NULL
            UNION ALL SELECT sender, recipient, 'paid', amount_cents, ts FROM {files})
        GROUP BY ALL""",
    # Pairs are few (1.1M for 9.8M messages): merged in place rather than kept per batch.
    "messages": """
        INSERT INTO pairs
        SELECT sender, recipient, count(*), count(*) FILTER (WHERE money_talk),
               count(*) FILTER (WHERE money_request), count(*) FILTER (WHERE urgency),
               count(*) FILTER (WHERE has_link), count(*) FILTER (WHERE has_phone), min(ts)
        FROM {files} GROUP BY ALL
        ON CONFLICT DO UPDATE SET messages = messages + excluded.messages,
            money_talk = money_talk + excluded.money_talk,
            money_requests = money_requests + excluded.money_requests,
            urgent = urgent + excluded.urgent, with_link = with_link + excluded.with_link,
            with_phone = with_phone + excluded.with_phone,
            first_ts = least(first_ts, excluded.first_ts)""",
}


class EntityIndex:
    def __init__(self, lake: str):
        self.lake = Path(lake)
        self.db = duckdb.connect(":memory:")
        self.db.execute("CREATE TABLE edges (a VARCHAR, b VARCHAR, kind VARCHAR, n BIGINT, "
                        "cents BIGINT, first_ts BIGINT); "
                        "CREATE TABLE signups (account VARCHAR, ts BIGINT); "
                        "CREATE TABLE pairs (sender VARCHAR, recipient VARCHAR, messages BIGINT, "
                        "money_talk BIGINT, money_requests BIGINT, urgent BIGINT, with_link BIGINT, "
                        "with_phone BIGINT, first_ts BIGINT, PRIMARY KEY (sender, recipient))")
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.refreshed = 0.0

    def refresh(self) -> None:
        """Read the files that appeared since the last refresh (at most every REFRESH_S)."""
        with self.lock:  # one builder; readers wait for the first build here
            if time.monotonic() - self.refreshed < common.REFRESH_S:
                return
            for topic, sql in SOURCES.items():
                files = sorted(set(map(str, (self.lake / topic).glob("hour=*/*.parquet"))) - self.seen)
                if files:
                    listing = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
                    with lake_mod.transaction(self.db) as cursor:
                        cursor.execute(sql.format(files=f"read_parquet([{listing}], union_by_name=true)"))
                    self.seen.update(files)
            self.refreshed = time.monotonic()

    def query(self, sql: str, *params) -> pd.DataFrame:
        self.refresh()
        cursor = self.db.cursor()  # sessions run in threads: a cursor each
        try:
            return cursor.execute(sql, list(params)).df()
        finally:
            cursor.close()


@st.cache_resource(show_spinner=False)
def get(lake: str | None = None) -> EntityIndex:
    """The console's index of a lake; its first build starts now, in the background."""
    index = EntityIndex(lake or str(common.lake_dir()))
    threading.Thread(target=index.refresh, name="entity-index", daemon=True).start()
    return index


def around(nodes) -> pd.DataFrame:
    """Distinct edges (a, b, kind) with an end in ``nodes``."""
    return get().query("SELECT DISTINCT a, b, kind FROM edges WHERE a IN (SELECT unnest($1)) "
                       "OR b IN (SELECT unnest($1))", sorted(nodes))  # hash semi-joins: 2x faster


def profiles(sender: str, recipient: str) -> pd.DataFrame:
    """The two accounts of a transfer: signup, devices, cards, transfers sent and received."""
    return get().query("""
        WITH r(role, account) AS (VALUES ('sender', $1), ('recipient', $2)),
        e AS (SELECT * FROM edges WHERE a IN ($1, $2) OR b IN ($1, $2))
        SELECT r.role, r.account,
               (SELECT min(ts) FROM signups s WHERE s.account = r.account) AS signup_ts,
               count(DISTINCT e.b) FILTER (WHERE e.kind = 'device' AND e.a = r.account) AS devices,
               count(DISTINCT e.b) FILTER (WHERE e.kind = 'card' AND e.a = r.account) AS cards,
               coalesce(sum(e.n) FILTER (WHERE e.kind = 'paid' AND e.a = r.account), 0)::BIGINT AS sent,
               coalesce(sum(e.cents) FILTER (WHERE e.kind = 'paid' AND e.a = r.account), 0) / 100.0
                 AS sent_eur,
               coalesce(sum(e.n) FILTER (WHERE e.kind = 'paid' AND e.b = r.account), 0)::BIGINT AS received
        FROM r LEFT JOIN e ON e.a = r.account OR e.b = r.account
        GROUP BY r.role, r.account ORDER BY r.role DESC  -- sender first""", sender, recipient)


def linked(account: str) -> pd.DataFrame:
    """Accounts sharing a device or a card with ``account``, or paid by it, or paying it."""
    return get().query("""
        WITH e AS (SELECT DISTINCT a, b, kind FROM edges),
        mine AS (SELECT b AS thing, kind FROM e WHERE a = $1 AND kind <> 'paid')
        SELECT DISTINCT e.a AS account, mine.kind AS shared, mine.thing AS via FROM e JOIN mine
          ON e.b = mine.thing WHERE e.a <> $1
        UNION SELECT DISTINCT b, 'paid by it', NULL FROM e WHERE a = $1 AND kind = 'paid'
        UNION SELECT DISTINCT a, 'paid it', NULL FROM e WHERE b = $1 AND kind = 'paid'
        ORDER BY 1""", account)


def conversation(a: str, b: str) -> pd.DataFrame:
    """The signals of the messages between two accounts, both ways (never any text)."""
    return get().query("""
        SELECT coalesce(sum(messages), 0)::BIGINT AS messages,
               coalesce(sum(money_talk), 0)::BIGINT AS money_talk,
               coalesce(sum(money_requests), 0)::BIGINT AS money_requests,
               coalesce(sum(urgent), 0)::BIGINT AS urgent,
               coalesce(sum(with_link), 0)::BIGINT AS with_link,
               coalesce(sum(with_phone), 0)::BIGINT AS with_phone,
               min(first_ts) AS first_message_ts
        FROM pairs WHERE (sender = $1 AND recipient = $2) OR (sender = $2 AND recipient = $1)""", a, b)

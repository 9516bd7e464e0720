"""Accounts: find an account by raw id (hashed here with the service key) or by hash; its
timeline, velocity and linked accounts."""
import pandas as pd
import streamlit as st

from dashboards import common, entity_index, graph
from pipelines.contracts.privacy import is_pseudonym, pseudonymize

user = common.require(*common.ALL)
st.title("Accounts")

query = st.text_input("Account: raw id (e.g. user-42) or keyed hash (a_…)", key="account_query")
if not query.strip():
    st.info("Type an account id or hash.")
    st.stop()
query = query.strip()
account = query if is_pseudonym(query) and query.startswith("a_") else pseudonymize("account", query)
st.text(f"Account hash: {account}")

timeline = common.q("""
    SELECT ts, 'account' AS source, kind AS what, NULL AS amount_eur, NULL AS counterparty
      FROM account_events WHERE account = ?
    UNION ALL SELECT ts, 'transfer sent', transfer_id, amount_cents / 100.0, recipient
      FROM transfer_requests WHERE sender = ?
    UNION ALL SELECT ts, 'transfer received', transfer_id, amount_cents / 100.0, sender
      FROM transfer_requests WHERE recipient = ?
    UNION ALL SELECT ts, 'decision', action || ' ' || transfer_id, amount_cents / 100.0, recipient
      FROM decisions WHERE sender = ? AND NOT coalesce(shadow, false)
    UNION ALL SELECT ts, 'label', kind || CASE WHEN is_fraud THEN ' (fraud)' ELSE '' END, NULL, NULL
      FROM labels WHERE account = ?
    UNION ALL SELECT ts, 'recovery', state, NULL, NULL FROM recovery WHERE account = ?
    UNION ALL SELECT ts, 'analyst', action || ' by ' || actor, NULL, NULL
      FROM analyst_actions WHERE target = ?
    ORDER BY ts DESC LIMIT 500""", *([account] * 7))
if timeline.empty:
    st.warning("Nothing in the lake about this account.")
    st.stop()
timeline.insert(0, "time", pd.to_datetime(timeline["ts"], unit="ms", utc=True))
st.subheader("Timeline")
st.dataframe(timeline.drop(columns="ts"), hide_index=True, width="stretch")

st.subheader("Velocity (transfers sent per hour)")
velocity = common.q("""
    SELECT to_timestamp((ts // 3600000) * 3600) AS hour, count(*) AS transfers,
           sum(amount_cents) / 100.0 AS eur
    FROM transfer_requests WHERE sender = ? GROUP BY 1 ORDER BY 1""", account)
if velocity.empty:
    st.text("No transfer sent.")
else:
    st.bar_chart(velocity, x="hour", y="transfers")

st.subheader("Linked accounts (sharing a device or a card, or paid)")
linked = entity_index.linked(account)
st.dataframe(linked, hide_index=True, width="stretch")
flagged = set(common.q("SELECT DISTINCT account FROM labels WHERE is_fraud")["account"])
dot, n = graph.dot([account], flagged)
st.graphviz_chart(dot)

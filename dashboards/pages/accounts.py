"""Accounts: find an account by raw id (hashed here with the service key) or by hash (or open
``?account=<hash>``, a deep link); its timeline, velocity and linked accounts; and the actions on
it, each with a reason, signed and audited: lock it (a recovery case: the payment service locks
an account whose case is contained), or put it on the block or allow list."""
import pandas as pd
import streamlit as st

from dashboards import common, entity_index, graph
from pipelines.contracts.privacy import is_pseudonym, pseudonymize
from pipelines.contracts.schemas import ACTION_ROLES

user = common.require(*common.ALL)
st.title("Accounts")

if "account_query" not in st.session_state and st.query_params.get("account"):
    st.session_state["account_query"] = st.query_params["account"]  # a deep link
query = st.text_input("Account: raw id (e.g. user-42) or keyed hash (a_…)", key="account_query")
if not query.strip():
    st.info("Type an account id or hash.")
    st.stop()
query = query.strip()
account = query if is_pseudonym(query) and query.startswith("a_") else pseudonymize("account", query)
st.text(f"Account hash: {account}")
st.query_params["account"] = account  # the address bar is this account's deep link (never a raw id)
st.caption(f"Deep link: {common.link('accounts', account=account)}")

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

# --- actions ------------------------------------------------------------------------------------
st.subheader("Actions")
if user["role"] not in ACTION_ROLES["open_case"]:
    st.info(f"Account actions are for {', '.join(ACTION_ROLES['open_case'])}.")
    st.stop()
reason = st.text_input("Reason (required)", key="account_reason")
lock, listing = st.columns(2)
with lock:
    st.caption("Lock: opens (or joins) the account's recovery case; the stream contains it at "
               "once (the payment service locks the account and holds its unpaid transfers) and "
               "the owner is asked to verify.")
    if st.button("Lock and open a recovery case", key="account_lock"):
        common.act("lock (recovery case)", common.publish_action, "open_case", "account", account,
                   reason)
with listing:
    which_list = st.selectbox("List", ["block", "allow"], key="account_list")
    days = st.number_input("Expires in days (0: never)", min_value=0, value=30, key="account_days")
    if st.button("Add to list", key="account_add_to_list"):
        common.act("add to list", common.add_to_list, "account", account, which_list, days, reason)

"""Audit: every analyst action, who did what, when and why, and the worker's refusal if it
refused it (a second decision on a transfer, a conflicting claim)."""
import pandas as pd
import streamlit as st

from dashboards import common

user = common.require("lead", "admin")
st.title("Audit")
c1, c2 = st.columns(2)
actor = c1.text_input("Actor", key="actor").strip()
action = c2.text_input("Action", key="action").strip()
log = common.q("""
    WITH refused AS (""" + common.REFUSED_ACTIONS_SQL + """)
    SELECT a.ts, a.actor, a.role, a.action, a.target_kind, a.target, a.reason, a.params,
           r.refused
    FROM analyst_actions a LEFT JOIN refused r USING (id)
    WHERE (? = '' OR a.actor = ?) AND (? = '' OR a.action = ?)
    ORDER BY a.ts DESC LIMIT 2000""", actor, actor, action, action)
log.insert(0, "time", pd.to_datetime(log["ts"], unit="ms", utc=True))
st.dataframe(log.drop(columns="ts"), hide_index=True, width="stretch")
st.caption(f"{len(log)} actions (latest 2000), {log['refused'].notna().sum()} refused by the "
           "worker. Written by the console to `analyst-actions`; the lake sink records them.")

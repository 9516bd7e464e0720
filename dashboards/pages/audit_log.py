"""Audit: every analyst action, who did what, when and why."""
import pandas as pd
import streamlit as st

from dashboards import common

user = common.require("lead", "admin")
st.title("Audit")
c1, c2 = st.columns(2)
actor = c1.text_input("Actor", key="actor").strip()
action = c2.text_input("Action", key="action").strip()
log = common.q("""
    SELECT ts, actor, role, action, target_kind, target, reason, params
    FROM analyst_actions
    WHERE (? = '' OR actor = ?) AND (? = '' OR action = ?)
    ORDER BY ts DESC LIMIT 2000""", actor, actor, action, action)
log.insert(0, "time", pd.to_datetime(log["ts"], unit="ms", utc=True))
st.dataframe(log.drop(columns="ts"), hide_index=True, width="stretch")
st.caption(f"{len(log)} actions (latest 2000). Written by the console to `analyst-actions`; "
           "the lake sink records them.")

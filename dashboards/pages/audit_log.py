"""Audit: every analyst action and every model change (console or command line), who did what,
when and why, and the worker's refusal if it refused it (a second decision on a transfer, a
conflicting claim, a model it cannot score with)."""
import pandas as pd
import streamlit as st

from dashboards import common

user = common.require("lead", "admin")
st.title("Audit")
c1, c2 = st.columns(2)
actor = c1.text_input("Actor", key="actor").strip()
action = c2.text_input("Action", key="action").strip()
log = common.audit_log(actor, action)
log.insert(0, "time", pd.to_datetime(log["ts"], unit="ms", utc=True))
st.dataframe(log.drop(columns="ts"), hide_index=True, width="stretch")
st.caption(f"{len(log)} actions (latest 2000), {log['refused'].notna().sum()} refused by the "
           "worker. Analyst actions are written by the console to `analyst-actions`, model changes "
           "by the console or `vigie promote`/`rollback`/`shadow`/`unshadow` to `model-updates` "
           "(role \"command line\"); the lake sink records them.")

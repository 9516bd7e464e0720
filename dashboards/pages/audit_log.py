"""Audit: every analyst action and every model change (console or command line), who did what,
when and why, and the worker's refusal if it refused it (a second decision on a transfer, a
conflicting claim, a model it cannot score with); then the console's own record: sign-ins,
failed ones, lockouts, ended sessions and every query of the SQL page."""
import pandas as pd
import streamlit as st

from dashboards import common

user = common.require("lead", "admin")
st.title("Audit")
actions, console = st.tabs(["Actions and model changes", "Sign-ins and SQL queries"])
with actions:
    c1, c2 = st.columns(2)
    actor = c1.text_input("Actor", key="actor").strip()
    action = c2.text_input("Action", key="action").strip()
    log = common.audit_log(actor, action)
    log.insert(0, "time", pd.to_datetime(log["ts"], unit="ms", utc=True))
    st.dataframe(log.drop(columns="ts"), hide_index=True, width="stretch")
    st.caption(f"{len(log)} actions (latest 2000), {log['refused'].notna().sum()} refused by the "
               "worker. Analyst actions are written by the console to `analyst-actions`, model "
               "changes by the console or `vigie promote`/`rollback`/`shadow`/`unshadow` to "
               "`model-updates` (role \"command line\"); the lake sink records them.")
with console:
    events = common.console_audit()
    kinds = sorted(events["kind"].dropna().unique()) if len(events) else []
    chosen = st.multiselect("Kinds", kinds, default=kinds, key="audit_kinds")
    shown = events[events["kind"].isin(chosen)]
    st.dataframe(shown.drop(columns="ts"), hide_index=True, width="stretch")
    st.caption(f"{len(shown)} of the latest {len(events)} console events (`console-audit`): "
               "who signed in or failed to, lockouts, sessions ended by a removed or re-roled "
               "user, and the SQL page's queries with their rows and time. Never a password.")

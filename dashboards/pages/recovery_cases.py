"""Recovery cases: the account-recovery workflow's cases, from the ``recovery`` topic.

A case's transitions are the RecoveryEvents the stream wrote (id ``<case_id>.<n>``). Escalated
cases (a failed step-up challenge: too many wrong codes, or no answer in time) wait for an
analyst at the top; a case's owner verification (codes sent to the verified contact, answers
and whether their code was right, from ``owner-verification``; never a code) shows with it. An
analyst's move is the audited AnalystAction ``case_transition`` (target the case, params
``state`` and ``account``): the worker turns it into a request that the recovery agent checks
against the case's state before writing the real transition."""
import pandas as pd
import streamlit as st

from dashboards import common
from pipelines.recovery.cases import ANALYST_MOVES  # the moves an analyst may ask for, by state

user = common.require("analyst", "lead", "admin")
st.title("Recovery cases")

TRANSITIONS = "starts_with(id, case_id || '.') AND regexp_full_match(id, '.*\\.[0-9]+')"
SEQ = "TRY_CAST(regexp_extract(id, '\\.([0-9]+)$', 1) AS INTEGER)"  # order within one ms
cases = common.q(f"""
    SELECT case_id, account, arg_max(state, (ts, {SEQ})) AS state, min(ts) AS opened_ts,
           max(ts) AS updated_ts, count(*) AS transitions
    FROM recovery WHERE {TRANSITIONS} GROUP BY 1, 2 ORDER BY updated_ts DESC""")
if cases.empty:
    st.info("No recovery case in the lake.")
    st.stop()
waiting = cases[cases["state"] == "escalated"]
if not waiting.empty:
    why = common.q(f"""SELECT case_id, arg_max(reason, ts) AS why FROM recovery
                       WHERE {TRANSITIONS} AND state = 'escalated' GROUP BY 1""")
    st.subheader(f"Waiting for an analyst: {len(waiting)} escalated")
    st.caption("The owner could not be verified (wrong codes, or no answer in time): the "
               "account stays locked until an analyst moves the case.")
    st.dataframe(waiting.merge(why, on="case_id", how="left")[["case_id", "account", "why"]],
                 hide_index=True, width="stretch")
states = st.multiselect("State", sorted(cases["state"].unique()), key="states")
view = cases[cases["state"].isin(states)] if states else cases
for col in ("opened_ts", "updated_ts"):
    view = view.assign(**{col.replace("_ts", ""): pd.to_datetime(view[col], unit="ms", utc=True)})
st.dataframe(view.drop(columns=["opened_ts", "updated_ts"]), hide_index=True, width="stretch")

case_id = st.selectbox("Case", list(view["case_id"]), key="case")
case = view.set_index("case_id").loc[case_id]
history = common.q(f"""SELECT ts, state, actor, reason, compromise_from_ts,
                         CASE WHEN {TRANSITIONS} THEN 'transition' ELSE 'request' END AS kind
                       FROM recovery WHERE case_id = ? ORDER BY ts, {SEQ}""", case_id)
history.insert(0, "time", pd.to_datetime(history["ts"], unit="ms", utc=True))
st.subheader(f"Case {case_id} ({case['state']})")
st.dataframe(history.drop(columns="ts"), hide_index=True, width="stretch")
# the step-up challenge: what reached the owner's verified contact and what came back (an
# answer's code compared with the last code sent before it, by their keyed hashes)
verification = common.q("""
    SELECT a.ts, a.kind, a.answer, a.actor,
           CASE WHEN a.kind = 'answer' THEN coalesce(a.code_digest = (
               SELECT arg_max(c.code_digest, c.ts) FROM owner_verification c
               WHERE c.case_id = a.case_id AND c.kind = 'code_sent' AND c.ts <= a.ts), false)
           END AS right_code
    FROM owner_verification a WHERE a.case_id = ? ORDER BY a.ts""", case_id)
if not verification.empty:
    verification.insert(0, "time", pd.to_datetime(verification["ts"], unit="ms", utc=True))
    st.caption("Owner verification: codes sent to the verified contact, answers from the app")
    st.dataframe(verification.drop(columns="ts"), hide_index=True, width="stretch")

moves = list(ANALYST_MOVES.get(case["state"], ()))
if not moves:
    st.info(f"No analyst move from {case['state']}: the workflow drives this state.")
    st.stop()
target_state = st.selectbox("Request transition to", moves, key="target_state")
reason = st.text_input("Reason", key="case_reason")
if st.button("Request transition", key="case_transition"):
    common.act("case transition", common.publish_action, "case_transition", "case", case_id,
               reason, {"state": target_state, "account": case["account"]})

"""Recovery cases: the account-recovery workflow's cases, from the ``recovery`` topic.

A case's transitions are the RecoveryEvents the stream wrote (id ``<case_id>.<n>``). Escalated
cases (a failed step-up challenge: too many wrong codes, or no answer in time) wait for an
analyst at the top; a case's owner verification (codes sent to the verified contact, answers
and whether their code was right, from ``owner-verification``; never a code) shows with it. An
analyst's move is the audited AnalystAction ``case_transition`` (target the case, params
``state`` and ``account``): the worker turns it into a request that the recovery agent checks
against the case's state before writing the real transition.

Each open case shows its SLA countdown (the state's SLA, ``cases.sla_s``, from its last
transition: past it the stream escalates the case), its timeline, and the account's transfers
since the compromise, each a link to the review queue. ``?case=<id>`` opens a case (a deep
link)."""
import altair as alt
import pandas as pd
import streamlit as st

from dashboards import common
# the moves an analyst may ask for, by state; the states that have an SLA and its length
from pipelines.recovery.cases import ANALYST_MOVES, OPEN, sla_s

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
now = common.now_ms()
sla_ms = cases["state"].map(lambda state: sla_s(state) * 1000 if state in OPEN else None)
cases["sla_min_left"] = (cases["updated_ts"] + sla_ms - now) / 60_000
cases["link"] = [common.link("recovery_cases", case=c) for c in cases["case_id"]]
states = st.multiselect("State", sorted(cases["state"].unique()), key="states")
view = cases[cases["state"].isin(states)] if states else cases
for col in ("opened_ts", "updated_ts"):
    view = view.assign(**{col.replace("_ts", ""): pd.to_datetime(view[col], unit="ms", utc=True)})
view = view.reset_index(drop=True)
event = st.dataframe(
    view.drop(columns=["opened_ts", "updated_ts"]).style.map(
        lambda m: "background-color: #f5b7b1" if m < 0 else "", subset=["sla_min_left"]).format(
        {"sla_min_left": "{:.1f}"}, na_rep=""),
    key="cases", on_select="rerun", selection_mode="single-row", hide_index=True, width="stretch",
    column_config={"sla_min_left": st.column_config.NumberColumn("SLA left (min)", format="%.1f"),
                   "link": st.column_config.LinkColumn("link", display_text="open")})
st.caption("Click a case to open it. \"SLA left\": until the state's SLA runs out (red: "
           "overdue, the stream escalates it); none for a closed case.")

picked = event.selection.rows
linked = st.query_params.get("case")
if picked:
    case_id = view["case_id"].iloc[picked[0]]
    st.query_params["case"] = case_id
elif linked in set(cases["case_id"]):
    case_id = linked
else:
    if linked:
        st.warning(f"No recovery case {linked}.")
    case_id = view["case_id"].iloc[0]
case = cases.set_index("case_id").loc[case_id]
history = common.q(f"""SELECT ts, state, actor, reason, compromise_from_ts,
                         CASE WHEN {TRANSITIONS} THEN 'transition' ELSE 'request' END AS kind
                       FROM recovery WHERE case_id = ? ORDER BY ts, {SEQ}""", case_id)
history.insert(0, "time", pd.to_datetime(history["ts"], unit="ms", utc=True))
st.subheader(f"Case {case_id} ({case['state']})")
st.caption(f"Deep link: {common.link('recovery_cases', case=case_id)}")
left = case["sla_min_left"]
st.metric("SLA left", "none (closed)" if pd.isna(left) else
          f"{left:.1f} min" if left >= 0 else f"overdue by {-left:.1f} min")
st.markdown(f"[The account]({common.link('accounts', account=case['account'])})")
st.altair_chart(alt.Chart(history).mark_line(point=True, interpolate="step-after").encode(
    x=alt.X("time:T"), y=alt.Y("state:N", sort=None), tooltip=["time", "state", "actor", "kind"]),
    width="stretch")
st.dataframe(history.drop(columns="ts"), hide_index=True, width="stretch", key="timeline")

# the account's transfers since the compromise (else since the case opened), each a link
since = history["compromise_from_ts"].dropna().min()
since = int(since) if pd.notna(since) else int(case["opened_ts"])
transfers = common.q("""
    WITH t AS (SELECT transfer_id, ts, amount_cents / 100.0 AS amount_eur, recipient
               FROM transfer_requests WHERE sender = ? AND ts >= ?)
    SELECT t.*, (SELECT arg_max(status, s.ts) FROM transfer_status s
                 WHERE s.transfer_id = t.transfer_id AND s.ts >= ?) AS status
    FROM t ORDER BY ts""", case["account"], since, since)
st.subheader(f"Transfers since {pd.to_datetime(since, unit='ms', utc=True)}")
if transfers.empty:
    st.text("No transfer sent since then.")
else:
    transfers.insert(0, "time", pd.to_datetime(transfers["ts"], unit="ms", utc=True))
    transfers["link"] = [common.link("review_queue", transfer=t) for t in transfers["transfer_id"]]
    st.dataframe(transfers.drop(columns="ts"), hide_index=True, width="stretch", key="case_transfers",
                 column_config={"link": st.column_config.LinkColumn("link", display_text="open")})
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

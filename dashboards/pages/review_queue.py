"""Review queue: every transfer whose money is held (by a decision or rule, an account lock or the
no-decision fallback), the most urgent first (or by risk x amount), with what held it; click a
row (or open ``?transfer=<id>``) for a transfer's detail and the actions on it. Why each part:
docs/console.md#the-review-queue"""
import altair as alt
import pandas as pd
import streamlit as st

from dashboards import common, entity_index, graph

user = common.require("analyst", "lead", "admin")
st.title("Review queue")
common.no_model_note()

held = common.held_transfers()
# Optimistic update: a transfer this session just released or blocked leaves the queue at once;
# it stays out until the lake shows it is no longer held (confirmed) or the worker refused the
# action (it comes back, with the refusal).
pending = st.session_state.setdefault("pending_decisions", {})  # transfer -> (action, event id)
if pending:
    refused = common.q(common.REFUSED_ACTIONS_SQL).dropna().set_index("id")["refused"]
    for tid, (action, event_id) in list(pending.items()):
        if tid not in set(held["transfer_id"]):
            st.toast(f"{action} of {tid} confirmed: it is no longer held.")
            del pending[tid]
        elif event_id in refused.index:
            st.error(f"{action} of {tid} was refused by the worker:")
            st.text(refused[event_id])
            del pending[tid]
    if pending:
        st.caption(f"{len(pending)} just decided here, out of the queue until the stream confirms: "
                   + ", ".join(f"{t} ({a})" for t, (a, _) in pending.items()))
    held = held[~held["transfer_id"].isin(pending)]
linked = st.query_params.get("transfer")  # a deep link: ?transfer=<id>
if held.empty and not linked:
    st.info("No held transfer is waiting for review.")
    st.stop()

search = st.text_input("Transfer id", key="search", placeholder="all held transfers").strip()
with st.expander("Filters", expanded=False):
    f1, f2, f3, f4 = st.columns(4)
    min_eur = f1.number_input("Minimum amount (€)", min_value=0.0, value=0.0, step=10.0)
    min_score = f2.slider("Minimum score", 0.0, 1.0, 0.0, 0.05)
    owner = f3.selectbox("Owner", ["anyone", "unclaimed", "mine"])
    order = f4.selectbox("Order", ["time left", "risk × amount"], key="order")
    rule = st.text_input("Rule hit contains", "")
# an unscored transfer (the fallback held it, or no model acts) passes any score filter
view = held[(held["amount_eur"] >= min_eur) & (held["score"].isna() | (held["score"] >= min_score))]
if owner == "unclaimed":
    view = view[view["owner"].isna()]
elif owner == "mine":
    view = view[view["owner"] == user["username"]]
if search:
    view = view[view["transfer_id"].str.contains(search, regex=False)]
if rule:
    view = view[view["rules"].str.contains(rule, regex=False)]
if order == "time left":
    view = view.sort_values(["minutes_left", "risk_amount"], ascending=[True, False], kind="stable")
view = view.reset_index(drop=True)
view["link"] = [common.link("review_queue", transfer=t) for t in view["transfer_id"]]


def urgency(minutes) -> str:
    """The time-left cell's colour: overdue red, under a quarter of the SLA orange."""
    if pd.isna(minutes):
        return ""
    if minutes < 0:
        return "background-color: #f5b7b1"
    return "background-color: #fad7a0" if minutes < common.review_sla_s() / 240 else ""


COLUMNS = ["transfer_id", "minutes_left", "held_by", "score", "amount_eur", "risk_amount",
           "age_min", "owner", "rules", "decision", "sender", "recipient", "link"]
# Colouring goes through a pandas Styler, which renders every cell (about 0.15 s per 1,000 rows)
# and refuses over 262,144 cells: a bigger queue (a long outage's fallback holds) is shown plain.
STYLED_ROWS = 2_000
# a new key after each decision: the table's selection is by row position, which the
# optimistic update shifts
table_key = f"queue-{st.session_state.get('queue_version', 0)}"
table = view[COLUMNS]
if len(view) <= STYLED_ROWS:
    # a Styler's own formats win over column_config's: the numbers are formatted here
    table = table.style.map(urgency, subset=["minutes_left"]).format(
        {"minutes_left": "{:.1f}", "score": "{:.3f}", "amount_eur": "{:,.2f}",
         "risk_amount": "{:,.0f}", "age_min": "{:.1f}"}, na_rep="")
event = st.dataframe(
    table, key=table_key,
    on_select="rerun", selection_mode="single-row", hide_index=True, width="stretch",
    column_config={"held_by": st.column_config.TextColumn("held by"),
                   "decision": st.column_config.TextColumn("latest decision"),
                   "minutes_left": st.column_config.NumberColumn("min left", format="%.1f"),
                   "score": st.column_config.NumberColumn(format="%.3f"),
                   "amount_eur": st.column_config.NumberColumn(format="%.2f"),
                   "age_min": st.column_config.NumberColumn("age (min)", format="%.1f"),
                   "risk_amount": st.column_config.NumberColumn("risk × amount", format="%.0f"),
                   "link": st.column_config.LinkColumn("link", display_text="open")})
st.caption(f"{len(view)} of {len(held)} held transfers, ordered by {order}. Click a row to open "
           "it. \"min left\": until a held transfer's review is due (VIGIE_REVIEW_SLA_S after the "
           "hold; red: overdue), or until a hold the payment service has not applied yet pays "
           "out. \"held by\": the payment service's reason, a late decision included; \"latest "
           "decision\": the stream's, if any came. \"link\": this transfer's address, for a ticket."
           + (f" Over {STYLED_ROWS:,} rows the table is not coloured: filter it, or keep the "
              "\"time left\" order (overdue first)." if len(view) > STYLED_ROWS else ""))

rows = {r["transfer_id"]: r for r in view.to_dict("records")}

# --- bulk -------------------------------------------------------------------------------------
with st.expander("Bulk action"):
    chosen = st.multiselect("Transfers", list(rows), key="bulk_ids")
    bulk_action = st.selectbox("Action", ["release", "block", "confirm_fraud", "mark_legitimate"],
                               key="bulk_action")
    bulk_reason = st.text_input("Reason", key="bulk_reason")
    if st.button("Apply to selected", key="bulk_go", disabled=not chosen):
        for tid in chosen:
            if common.act(f"{bulk_action} {tid}", common.transfer_action, bulk_action, rows[tid],
                          bulk_reason):
                pending[tid] = (bulk_action, st.session_state["sent_events"][-1])

# --- one transfer: the clicked row, else the deep link's ----------------------------------------
picked = event.selection.rows
if picked:
    tid = view["transfer_id"].iloc[picked[0]]
    st.query_params["transfer"] = tid  # the address bar is this transfer's deep link
elif linked:
    tid = linked
else:
    st.info("Click a row to open a transfer.")
    st.stop()
if tid not in rows:
    latest = common.q("SELECT arg_max(status, ts) AS status, arg_max(reason, ts) AS reason "
                      "FROM transfer_status WHERE transfer_id = ?", tid)
    status = latest["status"].iloc[0] if len(latest) else None
    if tid in pending or (isinstance(status, str) and status != "held"):
        st.info(f"Transfer {tid} is not held now (latest status: {status or 'being decided'}).")
    elif isinstance(status, str):
        st.info(f"Transfer {tid} is held but hidden by the filters.")
    else:
        st.warning(f"No transfer {tid} in the lake.")
    st.stop()
row = rows[tid]
st.header(f"Transfer {tid}")
st.caption(f"Deep link: {common.link('review_queue', transfer=tid)}")
m1, m2, m3, m4 = st.columns(4)
m1.metric("Score", "none" if pd.isna(row["score"]) else f"{row['score']:.3f}")
m2.metric("Amount", common.eur(row["amount_cents"]))
m3.metric("Time left before payout" if row["status"] != "held" else "Time left to review",
          f"{row['minutes_left']:.1f} min" if row["minutes_left"] >= 0
          else f"overdue by {-row['minutes_left']:.1f} min")
m4.metric("Owner", row["owner"] if isinstance(row["owner"], str) else "unclaimed")
st.text(f"Held by: {row['held_by']}")  # text: a reason may quote a rule's name
decided = (f"latest decision {row['decision']} by model {row['model_version']}"
           if isinstance(row["decision"], str) else "no decision from the stream")
st.text(f"{decided}   sender {row['sender']}   recipient {row['recipient']}")
st.markdown(f"[Sender's account]({common.link('accounts', account=row['sender'])}) · "
            f"[Recipient's account]({common.link('accounts', account=row['recipient'])})")

left, right = st.columns(2)
with left:
    st.subheader("Reason codes")
    reasons = pd.DataFrame(common.parse_json(row["reasons"], []))
    if reasons.empty:
        st.text("No reason codes recorded.")
    else:
        reasons["meaning"] = [common.meaning(f) for f in reasons["feature"]]
        st.altair_chart(alt.Chart(reasons).mark_bar().encode(
            x="contribution:Q", y=alt.Y("feature:N", sort="-x"),
            tooltip=["feature", "meaning", "contribution"],
            color=alt.condition("datum.contribution > 0", alt.value("#c0392b"), alt.value("#2980b9"))),
            width="stretch")
        st.dataframe(reasons[["feature", "meaning", "contribution"]], hide_index=True,
                     width="stretch", key="reasons")
    st.subheader("Rule and list hits")
    st.dataframe(pd.DataFrame({"rule hits": [", ".join(common.parse_json(row["rule_hits"], []))],
                               "list hits": [", ".join(common.parse_json(row["list_hits"], []))]}),
                 hide_index=True)
with right:
    st.subheader("Features vs population")
    feats = common.parse_json(row["features"], {})
    # The last day's decisions (at most 2000), from the last day's hour folders only.
    since = (common.now_ms() - 86_400_000) // 3_600_000 * 3_600_000
    population = common.q(f"SELECT features FROM {common.since('decisions', since)} "
                          "WHERE NOT coalesce(shadow, false) AND ts >= ? ORDER BY ts DESC LIMIT 2000",
                          since)
    pop = pd.DataFrame([common.parse_json(f, {}) for f in population["features"]])
    top = [r["feature"] for r in common.parse_json(row["reasons"], [])][:8] or list(feats)[:8]
    table = []
    for name in top:
        value = feats.get(name)
        col = pop[name].dropna() if name in pop else pd.Series(dtype=float)
        pct = float((col < value).mean() * 100) if value is not None and len(col) else None
        table.append({"feature": name, "meaning": common.meaning(name), "value": value,
                      "population median": float(col.median()) if len(col) else None,
                      "percentile": pct})
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")

with st.expander("Glossary of reason codes (EN / FR)"):
    st.dataframe(common.glossary_table(), hide_index=True, width="stretch", key="glossary")

st.subheader("Conversation signals")
signals = entity_index.conversation(row["sender"], row["recipient"])
st.dataframe(signals, hide_index=True)
st.caption("Message text never reaches Vigie: these are the messaging service's derived signals.")

st.subheader("Sender and recipient")
fraud_labels = common.q("SELECT account, count(*) AS n FROM labels WHERE is_fraud GROUP BY 1")
profiles = entity_index.profiles(row["sender"], row["recipient"])
profiles["fraud_labels"] = profiles["account"].map(fraud_labels.set_index("account")["n"]).fillna(0).astype(int)
st.dataframe(profiles, hide_index=True, width="stretch")

st.subheader("Network (2 hops: accounts ○, devices □, cards ◇)")
dot, n = graph.dot([row["sender"], row["recipient"]], set(fraud_labels["account"]))
st.graphviz_chart(dot)
st.caption(f"{n} nodes (at most {graph.MAX_NODES}); red: an account with a fraud label.")

# --- actions ----------------------------------------------------------------------------------
st.subheader("Actions")
reason = st.text_input("Reason (required to block, confirm, mark legitimate, open a case, list)",
                       key="reason")
b = st.columns(6)


def decide(action: str, label: str) -> None:
    """Send the decision; on success the transfer leaves this session's queue at once."""
    if common.act(label, common.transfer_action, action, row, reason):
        pending[tid] = (action, st.session_state["sent_events"][-1])
        st.session_state["queue_version"] = st.session_state.get("queue_version", 0) + 1
        st.query_params.pop("transfer", None)
        st.rerun()


if b[0].button("Claim", key="claim"):
    common.act("claim", common.claim, row, reason)
if b[1].button("Release", key="release", type="primary"):
    decide("release", "release")
if b[2].button("Block", key="block"):
    decide("block", "block")
if b[3].button("Confirm fraud", key="confirm_fraud"):
    decide("confirm_fraud", "confirm fraud")
if b[4].button("Mark legitimate", key="mark_legitimate"):
    decide("mark_legitimate", "mark legitimate")
if b[5].button("Open recovery case", key="open_case",
               help="Opens (or joins) the sender's account-recovery case."):
    common.act("open recovery case", common.publish_action, "open_case", "account", row["sender"],
               reason, {"transfer_id": tid})

with st.expander("Assign / add to a list"):
    assignee = st.text_input("Assign to (username)", key="assignee")
    if st.button("Assign", key="assign"):
        if not common.is_username(assignee.strip()):
            st.error("Assign to a console username.")
            st.stop()
        common.act("assign", common.publish_action, "assign", "transfer", tid, reason,
                   {"assignee": assignee.strip()})
    targets = {"sender account": ("account", row["sender"]),
               "recipient account": ("account", row["recipient"])}
    if isinstance(row["device"], str):
        targets["device"] = ("device", row["device"])
    if isinstance(row["card"], str):
        targets["card"] = ("card", row["card"])
    which = st.selectbox("Entity", list(targets), key="list_target")
    which_list = st.selectbox("List", ["block", "allow"], key="list_name")
    days = st.number_input("Expires in days (0: never)", min_value=0, value=30, key="list_days")
    if st.button("Add to list", key="add_to_list"):
        kind, value = targets[which]
        common.act("add to list", common.add_to_list, kind, value, which_list, days, reason)

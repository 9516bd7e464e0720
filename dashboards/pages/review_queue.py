"""Review queue: every transfer whose money is held (by a decision or rule, an account lock or the
no-decision fallback), by risk x amount, with what held it; a transfer's detail, and the actions
on it."""
import time

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import common, entity_index, graph

user = common.require("analyst", "lead", "admin")
st.title("Review queue")
common.no_model_note()

held = common.held_transfers()
if held.empty:
    st.info("No held transfer is waiting for review.")
    st.stop()

search = st.text_input("Transfer id", key="search", placeholder="all held transfers").strip()
with st.expander("Filters", expanded=False):
    f1, f2, f3 = st.columns(3)
    min_eur = f1.number_input("Minimum amount (€)", min_value=0.0, value=0.0, step=10.0)
    min_score = f2.slider("Minimum score", 0.0, 1.0, 0.0, 0.05)
    owner = f3.selectbox("Owner", ["anyone", "unclaimed", "mine"])
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

st.dataframe(view[["transfer_id", "held_by", "score", "amount_eur", "risk_amount", "minutes_left",
                   "age_min", "owner", "rules", "decision", "sender", "recipient"]],
             hide_index=True, width="stretch",
             column_config={"held_by": st.column_config.TextColumn("held by"),
                            "decision": st.column_config.TextColumn("latest decision"),
                            "minutes_left": st.column_config.NumberColumn("min left", format="%.1f"),
                            "age_min": st.column_config.NumberColumn("age (min)", format="%.1f"),
                            "risk_amount": st.column_config.NumberColumn("risk × amount", format="%.0f")})
st.caption(f"{len(view)} of {len(held)} held transfers. Ordered by score × amount (no score: "
           "the whole amount). \"held by\": the payment service's reason, a late decision "
           "included; \"latest decision\": the stream's, if any came.")

rows = {r["transfer_id"]: r for r in view.to_dict("records")}

# --- bulk -------------------------------------------------------------------------------------
with st.expander("Bulk action"):
    chosen = st.multiselect("Transfers", list(rows), key="bulk_ids")
    bulk_action = st.selectbox("Action", ["release", "block", "confirm_fraud", "mark_legitimate"],
                               key="bulk_action")
    bulk_reason = st.text_input("Reason", key="bulk_reason")
    if st.button("Apply to selected", key="bulk_go", disabled=not chosen):
        for tid in chosen:
            common.act(f"{bulk_action} {tid}", common.transfer_action, bulk_action, rows[tid], bulk_reason)

# --- one transfer -----------------------------------------------------------------------------
if not rows:
    st.stop()
tid = st.selectbox("Transfer", list(rows), key="transfer")
row = rows[tid]
st.header(f"Transfer {tid}")
m1, m2, m3, m4 = st.columns(4)
m1.metric("Score", "none" if pd.isna(row["score"]) else f"{row['score']:.3f}")
m2.metric("Amount", common.eur(row["amount_cents"]))
m3.metric("Time left before payout", f"{row['minutes_left']:.1f} min")
m4.metric("Owner", row["owner"] if isinstance(row["owner"], str) else "unclaimed")
st.text(f"Held by: {row['held_by']}")  # text: a reason may quote a rule's name
decided = (f"latest decision {row['decision']} by model {row['model_version']}"
           if isinstance(row["decision"], str) else "no decision from the stream")
st.text(f"{decided}   sender {row['sender']}   recipient {row['recipient']}")

left, right = st.columns(2)
with left:
    st.subheader("Reason codes")
    reasons = pd.DataFrame(common.parse_json(row["reasons"], []))
    if reasons.empty:
        st.text("No reason codes recorded.")
    else:
        st.altair_chart(alt.Chart(reasons).mark_bar().encode(
            x="contribution:Q", y=alt.Y("feature:N", sort="-x"),
            color=alt.condition("datum.contribution > 0", alt.value("#c0392b"), alt.value("#2980b9"))),
            width="stretch")
    st.subheader("Rule and list hits")
    st.dataframe(pd.DataFrame({"rule hits": [", ".join(common.parse_json(row["rule_hits"], []))],
                               "list hits": [", ".join(common.parse_json(row["list_hits"], []))]}),
                 hide_index=True)
with right:
    st.subheader("Features vs population")
    feats = common.parse_json(row["features"], {})
    # The last day's decisions (at most 2000): bounding ts lets DuckDB skip the older hours' files.
    since = (common.now_ms() - 86_400_000) // 3_600_000 * 3_600_000
    population = common.q("SELECT features FROM decisions WHERE NOT coalesce(shadow, false) "
                          "AND ts >= ? ORDER BY ts DESC LIMIT 2000", since)
    pop = pd.DataFrame([common.parse_json(f, {}) for f in population["features"]])
    top = [r["feature"] for r in common.parse_json(row["reasons"], [])][:8] or list(feats)[:8]
    table = []
    for name in top:
        value = feats.get(name)
        col = pop[name].dropna() if name in pop else pd.Series(dtype=float)
        pct = float((col < value).mean() * 100) if value is not None and len(col) else None
        table.append({"feature": name, "value": value,
                      "population median": float(col.median()) if len(col) else None,
                      "percentile": pct})
    st.dataframe(pd.DataFrame(table), hide_index=True, width="stretch")

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
if b[0].button("Claim", key="claim"):
    common.act("claim", common.publish_action, "claim", "transfer", tid, reason)
if b[1].button("Release", key="release", type="primary"):
    common.act("release", common.transfer_action, "release", row, reason)
if b[2].button("Block", key="block"):
    common.act("block", common.transfer_action, "block", row, reason)
if b[3].button("Confirm fraud", key="confirm_fraud"):
    common.act("confirm fraud", common.transfer_action, "confirm_fraud", row, reason)
if b[4].button("Mark legitimate", key="mark_legitimate"):
    common.act("mark legitimate", common.transfer_action, "mark_legitimate", row, reason)
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
        params = {"list": which_list}
        if days:
            params["expires_ts"] = int(time.time() * 1000) + int(days) * 86_400_000
        common.act("add to list", common.publish_action, "add_to_list", kind, value, reason, params)

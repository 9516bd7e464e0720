"""Rules and lists: the live rule set and lists (folded from the audited change events, as the
stream folds them), versioned edits, a backtest of a draft over the replayed features, and the
payment service's hard limits (read-only: ``pipelines.contracts.limits``)."""

import json
import os
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboards import common
from features.vector import FEATURE_NAMES
from models.backtest import backtest
from models.labels import label_transfers
from models.lists import ListError, ListStore
from models.rules import ACTIONS, Rule, RuleError, RuleSet
from models.tables import feature_table, labels_table
from pipelines.contracts import limits, settings

user = common.require(*common.ALL)
can_edit = user["role"] in common.ACTION_ROLES["rule_change"]
st.title("Rules and lists")

changes = common.q("SELECT ts, actor, action, target_kind, target, reason, params FROM analyst_actions "
                   "WHERE action IN ('rule_change', 'add_to_list', 'remove_from_list') ORDER BY ts")


def current_rules() -> tuple[RuleSet, list]:
    ruleset, refused = RuleSet(FEATURE_NAMES), []
    for ch in changes[changes["action"] == "rule_change"].itertuples():
        params = common.parse_json(ch.params, {})
        try:
            ruleset.apply_change({**params, "ts": int(ch.ts), "author": ch.actor})
        except RuleError as exc:
            refused.append({"ts": ch.ts, "actor": ch.actor, "rule": ch.target, "refused": str(exc)})
    return ruleset, refused


def current_lists() -> ListStore:
    store = ListStore()
    for ch in changes[changes["action"] != "rule_change"].itertuples():
        params = common.parse_json(ch.params, {})
        try:
            store.apply_change({**params, "op": "add" if ch.action == "add_to_list" else "remove",
                                "kind": ch.target_kind, "value": ch.target, "ts": int(ch.ts),
                                "author": ch.actor, "reason": ch.reason})
        except ListError:
            pass  # the stream refused it too (dead-lettered)
    return store


ruleset, refused = current_rules()
rules_tab, edit_tab, backtest_tab, lists_tab, limits_tab = st.tabs(
    ["Rules", "Edit", "Backtest", "Lists", "Hard limits"])

with rules_tab:
    table = pd.DataFrame([r.to_dict() for r in ruleset.rules])
    if table.empty:
        st.info("No rule yet.")
    else:
        for col in ("created_ts", "updated_ts"):
            table[col] = pd.to_datetime(table[col], unit="ms", utc=True)
        st.dataframe(table, hide_index=True, width="stretch")
    history = changes[changes["action"] == "rule_change"]
    st.subheader("Versions (every change, newest first)")
    st.dataframe(history.iloc[::-1].assign(time=pd.to_datetime(history["ts"], unit="ms", utc=True))
                 [["time", "actor", "target", "reason", "params"]], hide_index=True, width="stretch")
    if refused:
        st.subheader("Changes the stream refused")
        st.dataframe(pd.DataFrame(refused), hide_index=True)

with edit_tab:
    if not can_edit:
        st.info(f"Only {', '.join(common.ACTION_ROLES['rule_change'])} may change rules; "
                "you can still backtest a draft.")
    op = st.selectbox("Change", ["upsert", "enable", "disable", "delete"], key="rule_op")
    names = [r.name for r in ruleset.rules]
    name = st.text_input("Rule name (a-z, 0-9, _)", key="rule_name")
    existing = ruleset.get(name.strip()) if name.strip() else None
    expression = st.text_area("Expression (SQL over feature columns)",
                              existing.expression if existing else "", key="rule_expr")
    action = st.selectbox("Action", ACTIONS, key="rule_action")
    priority = st.number_input("Priority", value=existing.priority if existing else 0, key="rule_prio")
    enabled = st.checkbox("Enabled", value=False, key="rule_enabled",
                          help="Deploy a new rule disabled, backtest it, then enable it.")
    reason = st.text_input("Reason", key="rule_reason")
    if st.button("Publish change", key="rule_publish", disabled=not can_edit):
        params = {"op": op, "name": name.strip()}
        if op == "upsert":
            try:
                ruleset.validate(expression)
            except RuleError as exc:
                st.error("Invalid expression:")
                st.text(str(exc))
                st.stop()
            params.update(expression=expression.strip(), action=action, priority=int(priority),
                          enabled=str(enabled).lower())
        common.act(f"rule {op} {name}", common.publish_action, "rule_change", "rule", name.strip(),
                   reason, params)
    with st.expander("Feature columns"):
        st.text(", ".join(FEATURE_NAMES))


def table_max_age_s() -> float:
    return settings.environment().console.backtest_table_max_age_s


@st.cache_data(show_spinner="Reading the feature table…", max_entries=2)
def _read_table(path: str, mtime: float) -> tuple[pd.DataFrame, dict]:
    """The saved feature table (``mtime`` keys the cache: a new file is read again)."""
    return pd.read_parquet(path), json.loads(Path(path).with_suffix(".json").read_text())


def feature_table_cached(lake: str, refresh: bool = False) -> tuple[pd.DataFrame, dict]:
    """The lake's replayed features, saved once in ``<data dir>/console/backtest-features.parquet``
    and reused for VIGIE_BACKTEST_TABLE_MAX_AGE_S (1 h) or until refreshed: replaying the lake
    takes minutes on a big one, a backtest on the saved table seconds."""
    path = common.conf().data_dir / "console" / "backtest-features.parquet"
    if refresh or not path.exists() or time.time() - path.stat().st_mtime > table_max_age_s():
        with st.spinner("Replaying the lake's features (once; then saved)…"):
            table, stats = feature_table(Path(lake))
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(path.with_suffix(".tmp"))
        path.with_suffix(".json").write_text(json.dumps({**stats, "built_ts": int(time.time())},
                                                        default=str))
        os.replace(path.with_suffix(".tmp"), path)
    return _read_table(str(path), path.stat().st_mtime)


with backtest_tab:
    st.caption("Runs a rule (the live one, or a draft) beside the enabled rules through the live "
               "rule engine, over the lake's features replayed through the stream's own feature "
               "code: replayed once, saved, and reused for an hour (or refresh it).")
    DRAFT = "(a new draft)"
    picked = st.selectbox("Rule", [DRAFT] + [r.name for r in ruleset.rules], key="bt_rule")
    base = ruleset.get(picked) if picked != DRAFT else None
    b_name = st.text_input("Name", base.name if base else "draft_rule", key=f"bt_name_{picked}")
    b_expr = st.text_area("Expression (edit it to try a change)",
                          base.expression if base else "", key=f"bt_expr_{picked}")
    b_action = st.selectbox("Action", ACTIONS, key=f"bt_action_{picked}",
                            index=ACTIONS.index(base.action) if base else 1)
    c_run, c_refresh = st.columns(2)
    run = c_run.button("Backtest", key="bt_run")
    refresh = c_refresh.button("Refresh the feature table", key="bt_refresh",
                               help="Replay the lake again (minutes on a big lake)")
    if run or refresh:
        try:
            started = time.perf_counter()
            table, stats = feature_table_cached(str(common.lake_dir()), refresh=refresh)
            labels = label_transfers(table, labels_table(common.lake_dir())).to_numpy()
            draft = Rule(name=b_name.strip(), expression=b_expr.strip(), action=b_action)
            report = backtest(draft, table, labels, others=ruleset)  # replaces its namesake
            took = time.perf_counter() - started
        except (RuleError, ValueError) as exc:
            st.error("Backtest refused:")
            st.text(str(exc))
        else:
            mine = report["rules"][draft.name]
            c = st.columns(5)
            c[0].metric("Hits", mine["hits"])
            c[1].metric("Precision", "n/a" if mine["precision"] is None else f"{mine['precision']:.1%}")
            c[2].metric("Recall", "n/a" if mine["recall"] is None else f"{mine['recall']:.1%}")
            c[3].metric("Money affected", common.eur(mine["amount_cents"]))
            c[4].metric("Hits no other rule has", mine["unique_hits"])
            per_day = pd.DataFrame({"day": list(mine["hits_per_day"]),
                                    "hits": list(mine["hits_per_day"].values())})
            st.subheader("Hits per day")
            st.bar_chart(per_day, x="day", y="hits")
            st.subheader("Overlap with the other rules")
            st.dataframe(pd.DataFrame({"rule": list(mine["overlap"]),
                                       "shared hits": list(mine["overlap"].values())}),
                         hide_index=True)
            st.subheader("All rules")
            st.dataframe(pd.DataFrame(report["rules"]).T.drop(columns=["hits_per_day", "overlap"]),
                         width="stretch")
            built = pd.to_datetime(stats.get("built_ts", 0), unit="s", utc=True)
            st.caption(f"{report['rows']} transfers, {report['frauds']} labelled fraud; feature "
                       f"table of {stats['events']} events, replayed {built:%Y-%m-%d %H:%M} UTC; "
                       f"backtest in {took:.1f} s.")

with lists_tab:
    entries = pd.DataFrame(current_lists().to_json())
    if entries.empty:
        st.info("The allow and block lists are empty.")
    else:
        st.dataframe(entries, hide_index=True, width="stretch")
        can_remove = user["role"] in common.ACTION_ROLES["remove_from_list"]
        pick = st.selectbox("Entry", [f"{e['list']}:{e['kind']}:{e['value']}"
                                      for e in entries.to_dict("records")], key="list_entry")
        l_reason = st.text_input("Reason", key="list_reason")
        if st.button("Remove from list", key="remove_from_list", disabled=not can_remove):
            name_, kind, value = pick.split(":", 2)
            common.act("remove from list", common.publish_action, "remove_from_list", kind, value,
                       l_reason, {"list": name_})

with limits_tab:
    st.caption("Enforced by the payment service before a transfer reaches Kafka (422 with the "
               "reason): the rules, lists and models above decide only what they let through, so "
               "they can only tighten them. Set in the environment (README, configuration); "
               "read-only here. Shown as this console's environment has them: the payment "
               "service's must be the same.")
    st.dataframe(pd.DataFrame(limits.load().table()), hide_index=True, width="stretch")

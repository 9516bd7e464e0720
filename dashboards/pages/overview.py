"""Overview: traffic, decisions, money held and blocked, decision latency, alerts."""
import altair as alt
import pandas as pd
import streamlit as st

from dashboards import common

user = common.require(*common.ALL)
st.title("Overview")
common.no_model_note()

live = st.toggle("Auto-refresh", value=True, key="live",
                 help=f"Re-read the lake every {common.REFRESH_S}s")


@st.fragment(run_every=common.REFRESH_S if live else None)
def body():
    w, b = st.columns(2)
    window_h = w.selectbox("Window", [1, 6, 24, 24 * 7, 0], index=2,
                           format_func=lambda h: f"last {h} h" if h else "everything")
    bucket_min = b.selectbox("Bucket", [1, 5, 15, 60], index=1, format_func=lambda m: f"{m} min")
    bucket_ms = bucket_min * 60_000
    now = common.now_ms()
    # The charts read only the window's hour folders (common.since); the start is rounded to a
    # bucket so a refresh within the bucket hits the cache.
    since = max(0, (now - window_h * 3_600_000) // bucket_ms * bucket_ms) if window_h else 0

    totals = {**common.lake_totals(),  # per-file counts: no scan of the two biggest topics
              "dead_letters": common.q("SELECT count(*) FROM dead_letters").iloc[0, 0]}
    held = common.held_transfers()
    lag, lag_error = common.consumer_lag(common.conf().kafka.bootstrap_servers)
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("Transfers", int(totals["transfers"]))
    c2.metric("Held now", len(held), help="Transfers whose money is held, waiting for an analyst")
    c3.metric("Money held now", common.eur(held["amount_cents"].sum() if len(held) else 0))
    c4.metric("Dead letters", int(totals["dead_letters"]))
    c5.metric("Worker lag", "unknown" if lag_error else f"{int(lag['lag'].sum()):,}",
              help="Events on the decision worker's input topics it has not committed yet")

    if lag_error:
        st.warning("Consumer lag unknown: Kafka could not be reached.")
        st.text(lag_error)  # the client's own words, as text
    elif int(lag["lag"].sum()) > common.LAG_ALERT:
        st.warning(f"The decision worker is {int(lag['lag'].sum()):,} events behind "
                   f"(alert above {common.LAG_ALERT:,}): decisions may miss the payout window.")

    if int(totals["dead_letters"]):
        st.warning(f"{int(totals['dead_letters'])} events were dead-lettered: see Models & data quality.")
    if totals["last_decision_ts"] is not None and not pd.isna(totals["last_decision_ts"]):
        lag_s = (now - int(totals["last_decision_ts"])) / 1000
        if lag_s > 60:
            st.warning(f"No decision for {lag_s:.0f}s: is the worker (or the lake sink) behind?")

    series = common.q(f"""
        WITH t AS (SELECT (ts // {bucket_ms}) * {bucket_ms} AS b, count(*) AS transfers
                   FROM {common.since('transfer-requests', since)} WHERE ts >= {since} GROUP BY 1),
             d AS (SELECT (ts // {bucket_ms}) * {bucket_ms} AS b,
                          count(*) FILTER (WHERE action = 'approve') AS approve,
                          count(*) FILTER (WHERE action = 'warn') AS warn,
                          count(*) FILTER (WHERE action = 'hold') AS hold,
                          count(*) FILTER (WHERE action = 'block') AS block,
                          sum(amount_cents) FILTER (WHERE action = 'hold') / 100.0 AS held_eur,
                          sum(amount_cents) FILTER (WHERE action = 'block') / 100.0 AS blocked_eur,
                          quantile_cont(latency_ms, 0.99) AS p99_latency_ms
                   FROM {common.since('decisions', since)}
                   WHERE ts >= {since} AND NOT coalesce(shadow, false) GROUP BY 1)
        SELECT * FROM t FULL JOIN d USING (b) ORDER BY b""")
    if series.empty:
        st.info("No transfers in this window.")
    else:
        series["time"] = pd.to_datetime(series["b"], unit="ms", utc=True)
        series["transfers_per_s"] = series["transfers"].fillna(0) / (bucket_ms / 1000)
        left, right = st.columns(2)
        with left:
            st.subheader("Transfers per second")
            st.line_chart(series, x="time", y="transfers_per_s")
            st.subheader("Money held / blocked (€ per bucket)")
            st.area_chart(series.fillna(0), x="time", y=["held_eur", "blocked_eur"])
        with right:
            st.subheader("Decision mix")
            mix = series.melt(id_vars="time", value_vars=["approve", "warn", "hold", "block"],
                              var_name="action", value_name="count").fillna(0)
            st.altair_chart(alt.Chart(mix).mark_bar().encode(x="time:T", y="count:Q", color="action:N"),
                            width="stretch")
            st.subheader("p99 decision latency (ms)")
            st.line_chart(series, x="time", y="p99_latency_ms")

    st.subheader("Decision worker consumer lag (events)")
    if not lag_error and len(lag):
        by_topic = lag.groupby("topic", as_index=False)["lag"].sum()
        # Kafka keeps no history of lag: this session samples it at each refresh.
        history = st.session_state.setdefault("lag_history", [])
        history.append({"time": pd.Timestamp.now(tz="UTC"), **dict(zip(by_topic["topic"], by_topic["lag"]))})
        del history[:-360]  # the last half hour at one sample per 5 s
        left, right = st.columns(2)
        left.bar_chart(by_topic, x="topic", y="lag")
        right.line_chart(pd.DataFrame(history).set_index("time"))

    st.subheader("Held transfers by age")
    if held.empty:
        st.info("Nothing is held.")
    else:
        bins = [-1, 5, 15, 60, 240, 1e12]
        labels = ["<5 min", "5-15 min", "15-60 min", "1-4 h", ">4 h"]
        ages = pd.cut(held["age_min"], bins=bins, labels=labels).value_counts().reindex(labels)
        st.bar_chart(ages.rename("held").to_frame())
    st.caption(f"As of {pd.to_datetime(now, unit='ms', utc=True)}; refreshed every {common.REFRESH_S}s.")


@st.fragment(run_every=common.REFRESH_S if live else None)
def warnings_heeded():
    st.subheader("Warnings heeded")
    heeded = common.queue_q(common.HEEDED_SQL)
    fraud, honest = (heeded[heeded["label"] == side] for side in ("fraud", "honest"))
    c1, c2 = st.columns(2)
    stopped = int(fraud["transfers"].sum())
    c1.metric("Fraud stopped by warnings", common.eur(fraud["amount_cents"].sum()),
              f"{stopped} transfer{'' if stopped == 1 else 's'}", delta_color="off",
              help="Transfers cancelled by their sender after a warning, labelled fraud")
    c2.metric("Honest payments abandoned", f"{int(honest['transfers'].sum())}",
              common.eur(honest["amount_cents"].sum()), delta_color="off",
              help="Transfers cancelled by their sender after a warning, with no fraud label: "
                   "the warnings' friction")
    if heeded.empty:
        st.info("No sender has cancelled a warned transfer yet.")
    else:
        by_code = heeded.pivot_table(index="warning", columns="label", values="transfers",
                                     aggfunc="sum", fill_value=0)
        st.dataframe(by_code.reindex(columns=["fraud", "honest"], fill_value=0))


body()
warnings_heeded()

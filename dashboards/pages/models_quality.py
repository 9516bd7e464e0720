"""Models & data quality: the registry with metrics and each model card's plots,
promote/rollback, drift (PSI per feature and hour) and the shadow model against the acting one
as charts (on demand: they read the last day's decisions), and the dead letters."""
import base64
import json

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import common
from models import drift, registry

user = common.require(*common.ALL)
can_change = user["role"] in common.ACTION_ROLES["promote"]
st.title("Models & data quality")

st.subheader("Registry")
rows, metas = [], {}
for version in reversed(registry.list_versions()):
    try:
        meta = registry.load_meta(version)
    except (OSError, ValueError):
        continue
    flat = pd.json_normalize(meta.get("metrics") or {}, sep=".").to_dict("records")
    flat = {k: v for k, v in (flat[0] if flat else {}).items()
            if k.rsplit(".", 1)[-1] in ("pr_auc", "roc_auc", "base_rate", "auc", "recall_at_budget")
            and isinstance(v, (int, float))}
    rows.append({"version": version, "created_at": meta.get("created_at"),
                 "features": len(meta.get("feature_names", [])),
                 "thresholds": json.dumps(meta.get("thresholds")), **flat})
    metas[version] = meta
registry_df = pd.DataFrame(rows)
updates = common.q("SELECT ts, action, version, actor FROM model_updates ORDER BY ts DESC LIMIT 50")
acting = common.q("""SELECT model_version, count(*) AS decisions, max(ts) AS last_ts FROM decisions
                     WHERE NOT coalesce(shadow, false) GROUP BY 1 ORDER BY last_ts DESC LIMIT 5""")
if registry_df.empty:
    st.info("No model in the registry yet (`vigie train --bootstrap`).")
else:
    st.dataframe(registry_df, hide_index=True, width="stretch")
    with st.expander("A model's metrics"):
        shown = st.selectbox("Version", list(registry_df["version"]), key="metrics_version")
        st.json(metas[shown].get("metrics") or {}, expanded=1)
    with st.expander("A model's card plots"):
        card = st.selectbox("Version", list(registry_df["version"]), key="card_version")
        plots = sorted((registry.models_dir() / card).glob("*.png"))
        if not plots:
            st.text("No plot in this model's card.")
        for column, plot in zip(st.columns(2) * len(plots), plots):
            column.image(str(plot), caption=plot.stem.replace("_", " "))
st.text("Recently deciding: " + ", ".join(acting["model_version"].astype(str)) if len(acting) else
        "No decision yet.")


@st.cache_data(ttl=300, show_spinner="Reading the last day's decisions…")
def drift_by_hour(lake: str, version: str, since: int) -> pd.DataFrame:
    """PSI per feature and hour of ``version``'s acting decisions since ``since`` (a sample of
    at most 20,000), against the training bins in its metadata. ``lake`` keys the cache."""
    bins = registry.load_meta(version).get("feature_bins") or {}
    rows = common.q("""SELECT ts // 3600000 * 3600000 AS hour, features FROM decisions
                       WHERE ts >= ? AND model_version = ? AND NOT coalesce(shadow, false)
                       USING SAMPLE 20000 ROWS""", since, version)
    out = []
    for hour, group in rows.groupby("hour"):
        live = pd.DataFrame([common.parse_json(f, {}) for f in group["features"]]).astype("float64")
        report = drift.drift_report(bins, live)
        out += [{"hour": pd.to_datetime(hour, unit="ms", utc=True), "feature": r.feature,
                 "psi": r.psi} for r in report.itertuples()]
    return pd.DataFrame(out, columns=["hour", "feature", "psi"])


SHADOW_SQL = """
SELECT a.ts // 3600000 * 3600000 AS hour, a.score AS acting_score, s.score AS shadow_score,
       a.action AS acting_action, s.action AS shadow_action, s.model_version AS shadow_model
FROM decisions a JOIN decisions s USING (transfer_id)
WHERE a.ts >= ? AND s.ts >= ? AND NOT coalesce(a.shadow, false) AND s.shadow
  AND NOT starts_with(a.model_version, 'analyst:')
USING SAMPLE 20000 ROWS"""

st.subheader("Drift and the shadow model (last 24 h)")
if st.button("Compute drift and the shadow comparison", key="analyses"):
    st.session_state["show_analyses"] = True
if st.session_state.get("show_analyses"):
    since = (common.now_ms() - 86_400_000) // 3_600_000 * 3_600_000
    version = common.acting_model()
    if version in metas and (metas[version].get("feature_bins")):
        psi = drift_by_hour(str(common.lake_dir()), version, since)
        worst = psi.groupby("feature")["psi"].max().nlargest(8).index
        st.caption(f"PSI of {version}'s 8 most drifted features, per hour (above "
                   f"{drift.ALERT_PSI}: a shift worth an alert). Hover a line for its meaning.")
        shown = psi[psi["feature"].isin(worst)].assign(
            meaning=lambda d: [common.meaning(f) for f in d["feature"]])
        st.altair_chart(alt.Chart(shown).mark_line(point=True).encode(
            x="hour:T", y="psi:Q", color="feature:N", tooltip=["feature", "meaning", "psi"])
            + alt.Chart(pd.DataFrame({"psi": [drift.ALERT_PSI]})).mark_rule(
                strokeDash=[4, 4], color="#c0392b").encode(y="psi:Q"), width="stretch")
        by_hour = psi.assign(hour=psi["hour"].dt.strftime("%Y-%m-%d %H:00"))
        st.dataframe(by_hour.pivot_table(index="feature", columns="hour", values="psi").reset_index(),
                     hide_index=True, width="stretch", key="psi_table")
    else:
        st.info("No drift to compute: no acting model with training bins in the registry.")
    pairs = common.q(SHADOW_SQL, since, since)
    if pairs.empty:
        st.info("No shadow decision in the last 24 h (`vigie shadow VERSION` sets a shadow model).")
    else:
        pairs["agree"] = pairs["acting_action"] == pairs["shadow_action"]
        left, right = st.columns(2)
        left.altair_chart(alt.Chart(pairs).mark_circle(opacity=0.4).encode(
            x=alt.X("acting_score:Q", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("shadow_score:Q", scale=alt.Scale(domain=[0, 1])), color="agree:N",
            tooltip=["acting_action", "shadow_action", "shadow_model"]), width="stretch")
        by_hour = pairs.groupby("hour").agg(agreement=("agree", "mean"), transfers=("agree", "size"))
        by_hour = by_hour.reset_index().assign(hour=lambda d: pd.to_datetime(d["hour"], unit="ms", utc=True))
        right.altair_chart(alt.Chart(by_hour).mark_line(point=True).encode(
            x="hour:T", y=alt.Y("agreement:Q", scale=alt.Scale(domain=[0, 1])),
            tooltip=["agreement", "transfers"]), width="stretch")
        actions = pairs.groupby(["acting_action", "shadow_action"]).size().rename("transfers")
        st.dataframe(actions.reset_index(), hide_index=True, key="shadow_actions")
        st.caption(f"{len(pairs)} transfers decided by both: scores (left), the share where the "
                   "two models take the same action, per hour (right), and the actions crossed.")

st.subheader("Model updates")
st.dataframe(updates.assign(time=pd.to_datetime(updates["ts"], unit="ms", utc=True)).drop(columns="ts"),
             hide_index=True, width="stretch")

if can_change:
    with st.form("model_change"):
        versions = list(registry_df["version"]) if not registry_df.empty else []
        version = st.selectbox("Version to promote", versions)
        reason = st.text_input("Reason")
        c1, c2 = st.columns(2)
        promote = c1.form_submit_button("Promote")
        rollback = c2.form_submit_button("Roll back to the previous model")
    if promote and version:
        common.act(f"promote {version}", common.model_update, "promote", version, reason)
    if rollback:
        common.act("rollback", common.model_update, "rollback", "previous", reason)
else:
    st.info("Promote and roll back: data_scientist or admin only.")

st.subheader("Live data quality")
# The lake sink's sampled Great Expectations checks (pipelines/stream/quality.py), latest per topic.
quality = common.q("""SELECT topic, suite, success, evaluated, sample_rows, seen_rows, failures, ts
                      FROM data_quality QUALIFY row_number() OVER (PARTITION BY topic ORDER BY ts DESC) = 1
                      ORDER BY topic""")
if quality.empty:
    st.info("No live data-quality check yet (the lake sink checks a sample of each input topic "
            "every minute).")
else:
    def failed(value) -> str:
        """Failed expectations as plain text (column and a summary; never sample values)."""
        return "; ".join(f"{f.get('expectation')}[{f.get('column') or ''}] {f.get('observed') or ''}"
                         for f in common.parse_json(value, []))

    quality["failed expectations"] = [failed(v) for v in quality["failures"]]
    quality.insert(0, "checked", pd.to_datetime(quality["ts"], unit="ms", utc=True))
    bad = int((~quality["success"].astype(bool)).sum())
    (st.error if bad else st.success)(f"{bad} of {len(quality)} topics failing their suite"
                                      if bad else f"All {len(quality)} checked topics pass their suite")
    st.dataframe(quality.drop(columns=["ts", "failures"]), hide_index=True, width="stretch")

st.subheader("Dead letters")
dead = common.q("""SELECT topic, reason, count(*) AS n, max(ts) AS last_ts FROM dead_letters
                   GROUP BY 1, 2 ORDER BY n DESC""")
if dead.empty:
    st.success("No dead letter.")
    st.stop()
st.dataframe(dead.assign(last=pd.to_datetime(dead["last_ts"], unit="ms", utc=True)).drop(columns="last_ts"),
             hide_index=True, width="stretch")
sample = common.q("SELECT ts, topic, partition, \"offset\", reason, original_size, original_b64 "
                  "FROM dead_letters ORDER BY ts DESC LIMIT 200")


def shape(b64: str) -> str:
    """Field names and value types only: a refused event may hold anything, PII included."""
    try:
        value = json.loads(base64.b64decode(b64))
    except (ValueError, TypeError):
        return "(not JSON)"
    if not isinstance(value, dict):
        return f"(JSON {type(value).__name__})"
    return ", ".join(f"{k}: {type(v).__name__}" for k, v in value.items())


sample["payload fields"] = [shape(b) for b in sample["original_b64"]]
sample.insert(0, "time", pd.to_datetime(sample["ts"], unit="ms", utc=True))
st.dataframe(sample.drop(columns=["ts", "original_b64"]), hide_index=True, width="stretch")
st.caption("Payload preview shows field names and types only, never values.")

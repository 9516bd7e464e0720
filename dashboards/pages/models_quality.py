"""Models & data quality: the registry with metrics, promote/rollback, and the dead letters."""
import base64
import json

import pandas as pd
import streamlit as st

from dashboards import common
from models import registry

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
st.text("Recently deciding: " + ", ".join(acting["model_version"].astype(str)) if len(acting) else
        "No decision yet.")
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

# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Exploring the lake with DuckDB and pandas
#
# The lake is append-only Parquet, one folder per topic, partitioned by event hour.
# `pipelines.lake.parquet.connect` gives one DuckDB view per topic. Without a lake given
# (`LAKE` below, or `VIGIE_NOTEBOOK_LAKE`) we simulate a small one (600 users, 5 days).

# %% tags=["parameters"]
import nbsetup

LAKE = nbsetup.given_lake()  # e.g. "data/local/lake", the live system's; None: simulate one

# %%
import pandas as pd

from pipelines.lake import parquet as lake_mod

pd.set_option("display.width", 160)
LAKE_DIR = nbsetup.lake(LAKE, seed=21, users=600, days=5)
LAKES = {"lake": LAKE_DIR}  # what this notebook reads (the tests count their rows)
con = lake_mod.connect(LAKE_DIR)
topics = [t for t in lake_mod.TOPICS if lake_mod.has_data(LAKE_DIR, t)]
pd.Series({t: con.execute(f"SELECT count(*) FROM {lake_mod.view_name(t)}").fetchone()[0]
           for t in topics}, name="events")

# %% [markdown]
# ## What is in each topic

# %%
con.execute("DESCRIBE transfer_requests").df()[["column_name", "column_type"]]

# %%
hourly = con.execute("""
    SELECT date_trunc('hour', make_timestamp(ts * 1000)) AS hour, count(*) AS transfers,
           sum(amount_cents) / 100 AS euros
    FROM transfer_requests GROUP BY 1 ORDER BY 1""").df()
hourly.assign(hour_of_day=hourly.hour.dt.hour).groupby("hour_of_day")[["transfers"]].mean().T

# %%
con.execute("""
    SELECT suggestion_id IS NOT NULL AS suggested_by_assistant, count(*) AS transfers,
           median(amount_cents) / 100 AS median_eur, quantile_cont(amount_cents, .99) / 100 AS p99_eur
    FROM transfer_requests GROUP BY 1""").df()

# %% [markdown]
# ## Messages carry signals, never text

# %%
con.execute("""
    SELECT lang, avg(money_talk::INT) AS money_talk, avg(money_request::INT) AS money_request,
           avg(urgency::INT) AS urgency, avg(has_link::INT) AS link, count(*) AS messages
    FROM messages GROUP BY lang ORDER BY messages DESC""").df()

# %% [markdown]
# ## Labels: which scenarios, and how late they arrive

# %%
labels = con.execute("""
    SELECT scenario, kind, count(*) AS labels,
           median((known_at - ts) / 86400000.0) AS median_delay_days,
           max((known_at - ts) / 86400000.0) AS max_delay_days
    FROM labels GROUP BY ALL ORDER BY labels DESC""").df()
labels

# %%
print("labels arrive after a median of", round(float(labels.median_delay_days.median()), 1),
      "days")

# %% [markdown]
# ## Joining topics: transfers with their labels (pandas)

# %%
tr = con.execute("SELECT transfer_id, ts, sender, amount_cents, card IS NOT NULL AS card "
                 "FROM transfer_requests").df()
lb = con.execute("SELECT transfer_id, scenario FROM labels "
                 "WHERE transfer_id IS NOT NULL AND is_fraud").df()
joined = tr.merge(lb.drop_duplicates("transfer_id"), on="transfer_id", how="left")
joined.groupby(joined.scenario.fillna("legitimate")).agg(
    transfers=("transfer_id", "size"), median_eur=("amount_cents", lambda a: a.median() / 100),
    with_card=("card", "mean"))

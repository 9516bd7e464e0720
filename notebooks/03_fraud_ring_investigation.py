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
# # Investigating a fraud ring: a money-mule ring
#
# Victims pay a few mule accounts (fan-in); each mule forwards the money to a collector within
# minutes (fan-out), keeping a cut. We find a ring from its labels, map it with DuckDB, draw it,
# and check what the features saw. Without a lake given (`LAKE`, or `VIGIE_NOTEBOOK_LAKE`) we
# simulate six days rich in mule rings and fake-account farms.

# %% tags=["parameters"]
import nbsetup

LAKE = nbsetup.given_lake()  # e.g. "data/local/lake", the live system's; None: simulate one

# %%
import pandas as pd

from pipelines.lake import parquet as lake_mod

pd.set_option("display.width", 160)
LAKE_DIR = nbsetup.lake(LAKE, seed=41, users=1500, days=6,
                        mix={"mule": 0.6, "fake_account_farm": 0.3})
LAKES = {"lake": LAKE_DIR}  # what this notebook reads
con = lake_mod.connect(LAKE_DIR)
con.execute("SELECT scenario, kind, count(*) n FROM labels GROUP BY ALL ORDER BY n DESC").df()

# %% [markdown]
# ## The mule accounts: who receives labelled mule money, and who they pay

# %%
mule_tx = con.execute("""
    SELECT t.transfer_id, t.ts, t.sender, t.recipient, t.amount_cents
    FROM transfer_requests t JOIN labels l USING (transfer_id)
    WHERE l.scenario = 'mule' AND l.is_fraud""").df()
fan_in = con.execute("""
    SELECT recipient AS account, count(*) AS payments_in, count(DISTINCT sender) AS payers,
           sum(amount_cents) / 100 AS euros_in
    FROM transfer_requests WHERE recipient IN (SELECT recipient FROM mule_tx)
    GROUP BY 1 HAVING count(DISTINCT sender) >= 2 ORDER BY payers DESC""").df()
fan_in.head(10)

# %%
mules = set(fan_in.account)
out = con.execute("""
    SELECT sender AS mule, recipient AS collector, count(*) AS forwards,
           sum(amount_cents) / 100 AS euros_out
    FROM transfer_requests WHERE sender IN (SELECT account FROM fan_in)
    GROUP BY ALL ORDER BY euros_out DESC""").df()
out.head(10)

# %% [markdown]
# ## The ring, drawn
#
# The three mules with the most payers: their payers on the left, the mules in the middle,
# where the money goes on the right (edge width: euros). Accounts are keyed hashes; the first
# six characters name them.

# %%
import matplotlib.pyplot as plt
import networkx as nx

top = list(fan_in.account[:3])
paid = con.execute("""
    SELECT sender, recipient, sum(amount_cents) / 100 AS euros FROM transfer_requests
    WHERE recipient IN (SELECT unnest(?)) OR sender IN (SELECT unnest(?))
    GROUP BY ALL""", [top, top]).df()
ring = nx.DiGraph()
for row in paid.itertuples():
    ring.add_edge(row.sender, row.recipient, euros=row.euros)
role = {n: "mule" if n in top else "payer" if ring.out_degree(n) and not ring.in_degree(n)
        else "collector" for n in ring}
layer = {"payer": 0, "mule": 1, "collector": 2}
nx.set_node_attributes(ring, {n: layer[role[n]] for n in ring}, "layer")
pos = nx.multipartite_layout(ring, subset_key="layer")
colours = {"payer": "#8ab6d6", "mule": "#e4572e", "collector": "#6c4f77"}
fig, ax = plt.subplots(figsize=(9, 6))
widths = [0.5 + 3 * ring.edges[e]["euros"] / paid.euros.max() for e in ring.edges]
nx.draw_networkx(ring, pos, ax=ax, node_color=[colours[role[n]] for n in ring], node_size=260,
                 width=widths, arrowsize=10, font_size=7, labels={n: n[:6] for n in ring},
                 edge_color="#999999")
ax.set_title(f"Mule ring: {sum(r == 'payer' for r in role.values())} payers -> "
             f"{len(top)} mules -> onward to {sum(r == 'collector' for r in role.values())}")
ax.axis("off")
plt.close(fig)
print(f"ring: {ring.number_of_nodes()} accounts, {ring.number_of_edges()} payment links")
nbsetup.png(fig)

# %% [markdown]
# ## Minutes between money in and money out (the forwarding signature)

# %%
flows = con.execute("""
    SELECT i.recipient AS mule, i.ts AS in_ts, min(o.ts) AS out_ts
    FROM transfer_requests i JOIN transfer_requests o ON o.sender = i.recipient AND o.ts > i.ts
    WHERE i.recipient IN (SELECT account FROM fan_in) GROUP BY ALL""").df()
flows["minutes"] = (flows.out_ts - flows.in_ts) / 60000
flows.minutes.describe()

# %% [markdown]
# ## What the stream's features said when the mules were paid

# %%
from models.tables import feature_table

features, _ = feature_table(LAKE_DIR)
cols = ["recipient_distinct_senders_24h", "recipient_forwarded_share_30m_7d",
        "recipient_min_forward_minutes_7d", "recipient_account_age_days",
        "sender_first_transfer_to_recipient"]
is_mule_payment = features.recipient.isin(mules)
features.groupby(is_mule_payment.map({True: "paid to a mule", False: "other"}))[cols].median().T

# %% [markdown]
# ## The fake-account farm: signups sharing devices and an IP

# %%
farm = con.execute("""
    WITH farm_accounts AS (SELECT DISTINCT account FROM labels WHERE scenario = 'fake_account_farm')
    SELECT device, ip, count(DISTINCT account) AS accounts
    FROM account_events WHERE kind = 'signup' AND account IN (SELECT account FROM farm_accounts)
    GROUP BY ALL ORDER BY accounts DESC""").df()
farm.head()

# %%
print(f"{len(mules)} mule accounts; median {flows.minutes.median():.0f} min from money in to "
      "money out")

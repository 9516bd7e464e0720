"""Writes the notebooks in this folder from the cells below (``python notebooks/build_notebooks.py``).

Each notebook simulates its own small lake into a temporary directory with ``run_offline``, so it
runs top to bottom anywhere; ``tests/models/test_lifecycle_notebooks.py`` executes all of them.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = '''import os, sys, tempfile, json
from pathlib import Path
import pandas as pd
import numpy as np
# the notebooks run from notebooks/: make the repository importable
sys.path.insert(0, str(Path.cwd().parent if Path.cwd().name == "notebooks" else Path.cwd()))
os.environ.setdefault("VIGIE_HASH_KEY", "notebook-demo-key")
pd.set_option("display.width", 160)
from pipelines.simulator.offline import run_offline
from pipelines.lake import parquet as lake_mod
WORK = Path(tempfile.mkdtemp(prefix="vigie-nb-"))'''

EXPLORE = [
    new_markdown_cell("# Exploring the lake with DuckDB and pandas\n\nThe lake is append-only "
                      "Parquet, one folder per topic, partitioned by event hour. `pipelines.lake.parquet.connect` "
                      "gives one DuckDB view per topic. We simulate a small one here (600 users, 5 days)."),
    new_code_cell(SETUP + '''
stats = run_offline(WORK / "lake", seed=21, users=600, days=5)
con = lake_mod.connect(WORK / "lake")
pd.Series(stats["by_topic"], name="events")'''),
    new_markdown_cell("## What is in each topic"),
    new_code_cell('''con.execute("DESCRIBE transfer_requests").df()[["column_name", "column_type"]]'''),
    new_code_cell('''hourly = con.execute("""
    SELECT date_trunc('hour', make_timestamp(ts * 1000)) AS hour, count(*) AS transfers,
           sum(amount_cents) / 100 AS euros
    FROM transfer_requests GROUP BY 1 ORDER BY 1""").df()
hourly.assign(hour_of_day=hourly.hour.dt.hour).groupby("hour_of_day")[["transfers"]].mean().T'''),
    new_code_cell('''con.execute("""
    SELECT suggestion_id IS NOT NULL AS suggested_by_assistant, count(*) AS transfers,
           median(amount_cents) / 100 AS median_eur, quantile_cont(amount_cents, .99) / 100 AS p99_eur
    FROM transfer_requests GROUP BY 1""").df()'''),
    new_markdown_cell("## Messages carry signals, never text"),
    new_code_cell('''con.execute("""
    SELECT lang, avg(money_talk::INT) AS money_talk, avg(money_request::INT) AS money_request,
           avg(urgency::INT) AS urgency, avg(has_link::INT) AS link, count(*) AS messages
    FROM messages GROUP BY lang ORDER BY messages DESC""").df()'''),
    new_markdown_cell("## Labels: which scenarios, and how late they arrive"),
    new_code_cell('''labels = con.execute("""
    SELECT scenario, kind, count(*) AS labels,
           median((known_at - ts) / 86400000.0) AS median_delay_days,
           max((known_at - ts) / 86400000.0) AS max_delay_days
    FROM labels GROUP BY ALL ORDER BY labels DESC""").df()
labels'''),
    new_code_cell('''assert labels["labels"].sum() > 0 and set(labels["scenario"]) >= {"card_testing"}
print("labels arrive after a median of", round(float(labels.median_delay_days.median()), 1), "days")'''),
    new_markdown_cell("## Joining topics: transfers with their labels (pandas)"),
    new_code_cell('''tr = con.execute("SELECT transfer_id, ts, sender, amount_cents, card IS NOT NULL AS card FROM transfer_requests").df()
lb = con.execute("SELECT transfer_id, scenario FROM labels WHERE transfer_id IS NOT NULL AND is_fraud").df()
joined = tr.merge(lb.drop_duplicates("transfer_id"), on="transfer_id", how="left")
joined.groupby(joined.scenario.fillna("legitimate")).agg(
    transfers=("transfer_id", "size"), median_eur=("amount_cents", lambda a: a.median() / 100),
    with_card=("card", "mean"))'''),
]

TRAIN = [
    new_markdown_cell("# Training and evaluating a model end to end\n\n1. point-in-time training "
                      "set from the lake (replay of the stream's feature code, labels as known at the "
                      "cut-off);\n2. Great Expectations suite;\n3. LightGBM with a time split and early "
                      "stopping, registered with its metadata and model card;\n4. evaluation on a "
                      "held-out lake the fraud-team way."),
    new_code_cell(SETUP + '''
run_offline(WORK / "history", seed=31, users=1000, days=7)
run_offline(WORK / "held_out", seed=32, users=600, days=3)'''),
    new_code_cell('''from models.datasets import training_set, DAY_MS
table, stats = training_set(WORK / "history", maturity_ms=2 * DAY_MS)
print({k: stats[k] for k in ("transfers", "rows", "frauds", "left_out_immature", "labels_known")})
table[["transfer_id", "ts", "amount_cents", "sender_count_24h", "recipient_distinct_senders_24h", "label", "scenario"]].tail()'''),
    new_code_cell('''from models.expectations import validate_training_table, format_failures
result = validate_training_table(table, stats["cutoff_ms"])
print(format_failures([result]))'''),
    new_markdown_cell("A corrupted table is refused, with the failing expectations named:"),
    new_code_cell('''bad = table.assign(label=(np.arange(len(table)) % 2))
print(format_failures([validate_training_table(bad, stats["cutoff_ms"])]))'''),
    new_code_cell('''from models.lifecycle import train_validated
from models import registry
root = WORK / "models"
out = train_validated(table, stats, seed=7, root=root)
version = out["version"]
{k: out[k] for k in ("version", "rows", "frauds", "best_iteration", "test_pr_auc", "test_roc_auc")}'''),
    new_code_cell('''from IPython.display import Markdown, Image, display
card_dir = registry.models_dir(root) / version
display(Markdown((card_dir / "MODEL_CARD.md").read_text().split("## Results")[1][:1500]))
display(Image(filename=str(card_dir / "pr_curve.png")))'''),
    new_markdown_cell("## Evaluation on a held-out lake (different seed, later users)"),
    new_code_cell('''from models.evaluate import evaluate_lake, summary
report = evaluate_lake(WORK / "held_out", version, root=root)
print(summary(report))'''),
    new_code_cell('''pd.DataFrame(report["calibration"])'''),
    new_markdown_cell("## Champion vs challenger on the same traffic"),
    new_code_cell('''from models.compare import compare_models, format_comparison
challenger = train_validated(table, stats, seed=8, root=root, card=False)["version"]
print(format_comparison(compare_models(WORK / "held_out", version, challenger, root)))'''),
    new_markdown_cell("## Drift of the held-out traffic against the training window"),
    new_code_cell('''from models.drift import drift_report
from models.evaluate import labelled_lake
held, _ = labelled_lake(WORK / "held_out")
drift_report(registry.load_meta(version, root)["feature_bins"], held).head(8)'''),
]

RING = [
    new_markdown_cell("# Investigating a fraud ring: a money-mule ring\n\nVictims pay a few mule "
                      "accounts (fan-in); each mule forwards the money to a collector within minutes "
                      "(fan-out), keeping a cut. We find a ring from its labels, map it with DuckDB, "
                      "and check what the features saw."),
    new_code_cell(SETUP + '''
run_offline(WORK / "lake", seed=41, users=1500, days=6, mix={"mule": 0.6, "fake_account_farm": 0.3})
con = lake_mod.connect(WORK / "lake")
con.execute("SELECT scenario, kind, count(*) n FROM labels GROUP BY ALL ORDER BY n DESC").df()'''),
    new_markdown_cell("## The mule accounts: who receives labelled mule money, and who they pay"),
    new_code_cell('''mule_tx = con.execute("""
    SELECT t.transfer_id, t.ts, t.sender, t.recipient, t.amount_cents
    FROM transfer_requests t JOIN labels l USING (transfer_id)
    WHERE l.scenario = 'mule' AND l.is_fraud""").df()
fan_in = con.execute("""
    SELECT recipient AS account, count(*) AS payments_in, count(DISTINCT sender) AS payers,
           sum(amount_cents) / 100 AS euros_in
    FROM transfer_requests WHERE recipient IN (SELECT recipient FROM mule_tx)
    GROUP BY 1 HAVING count(DISTINCT sender) >= 2 ORDER BY payers DESC""").df()
fan_in.head(10)'''),
    new_code_cell('''mules = set(fan_in.account)
out = con.execute("""
    SELECT sender AS mule, recipient AS collector, count(*) AS forwards, sum(amount_cents)/100 AS euros_out
    FROM transfer_requests WHERE sender IN (SELECT account FROM fan_in) GROUP BY ALL ORDER BY euros_out DESC""").df()
out.head(10)'''),
    new_markdown_cell("## Minutes between money in and money out (the forwarding signature)"),
    new_code_cell('''flows = con.execute("""
    SELECT i.recipient AS mule, i.ts AS in_ts, min(o.ts) AS out_ts
    FROM transfer_requests i JOIN transfer_requests o ON o.sender = i.recipient AND o.ts > i.ts
    WHERE i.recipient IN (SELECT account FROM fan_in) GROUP BY ALL""").df()
flows["minutes"] = (flows.out_ts - flows.in_ts) / 60000
flows.minutes.describe()'''),
    new_markdown_cell("## What the stream's features said when the mules were paid"),
    new_code_cell('''from models.tables import feature_table
features, _ = feature_table(WORK / "lake")
cols = ["recipient_distinct_senders_24h", "recipient_forwarded_share_30m_7d",
        "recipient_min_forward_minutes_7d", "recipient_account_age_days", "sender_first_transfer_to_recipient"]
is_mule_payment = features.recipient.isin(mules)
features.groupby(is_mule_payment.map({True: "paid to a mule", False: "other"}))[cols].median().T'''),
    new_markdown_cell("## The fake-account farm: signups sharing devices and an IP"),
    new_code_cell('''farm = con.execute("""
    WITH farm_accounts AS (SELECT DISTINCT account FROM labels WHERE scenario = 'fake_account_farm')
    SELECT device, ip, count(DISTINCT account) AS accounts
    FROM account_events WHERE kind = 'signup' AND account IN (SELECT account FROM farm_accounts)
    GROUP BY ALL ORDER BY accounts DESC""").df()
farm.head()'''),
    new_code_cell('''assert len(mules) >= 1 and flows.minutes.median() < 120
print(f"{len(mules)} mule accounts; median {flows.minutes.median():.0f} min from money in to money out")'''),
]


def main() -> None:
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}}
    for name, cells in (("01_explore_the_lake", EXPLORE), ("02_train_and_evaluate", TRAIN),
                        ("03_fraud_ring_investigation", RING)):
        for i, cell in enumerate(cells):
            cell.id = f"{name[:2]}-{i:02d}"  # fixed ids: rebuilding changes only what changed
        nb = new_notebook(cells=cells, metadata=meta)
        nbformat.write(nb, HERE / f"{name}.ipynb")
        print(HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()

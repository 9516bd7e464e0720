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
# # Training and evaluating a model end to end
#
# 1. point-in-time training set from the lake (replay of the stream's feature code, labels as
#    known at the cut-off);
# 2. Great Expectations suite;
# 3. LightGBM with a time split and early stopping, registered with its metadata and model card
#    (in a temporary registry: this notebook promotes nothing);
# 4. evaluation on a held-out lake the fraud-team way.
#
# The history is the lake given (`LAKE`, or `VIGIE_NOTEBOOK_LAKE`), else a simulated week; the
# held-out lake is always simulated apart (another seed, later users).

# %% tags=["parameters"]
import nbsetup

LAKE = nbsetup.given_lake()  # e.g. "data/local/lake", the live system's; None: simulate one

# %%
import numpy as np
import pandas as pd

pd.set_option("display.width", 160)
HISTORY = nbsetup.lake(LAKE, "history", seed=31, users=1000, days=7)
HELD_OUT = nbsetup.lake(None, "held_out", seed=32, users=600, days=3)
LAKES = {"history": HISTORY, "held_out": HELD_OUT}  # what this notebook reads

# %%
from models.datasets import DAY_MS, training_set

table, stats = training_set(HISTORY, maturity_ms=2 * DAY_MS)
print({k: stats[k] for k in ("transfers", "rows", "frauds", "left_out_immature", "labels_known")})
table[["transfer_id", "ts", "amount_cents", "sender_count_24h", "recipient_distinct_senders_24h",
       "label", "scenario"]].tail()

# %%
from models.expectations import format_failures, validate_training_table

result = validate_training_table(table, stats["cutoff_ms"])
print(format_failures([result]))

# %% [markdown]
# A corrupted table is refused, with the failing expectations named:

# %%
bad = table.assign(label=(np.arange(len(table)) % 2))
print(format_failures([validate_training_table(bad, stats["cutoff_ms"])]))

# %%
from models import registry
from models.lifecycle import train_validated

root = nbsetup.WORK / "models"
out = train_validated(table, stats, seed=7, root=root)
version = out["version"]
{k: out[k] for k in ("version", "rows", "frauds", "best_iteration", "test_pr_auc", "test_roc_auc")}

# %%
from IPython.display import Image, Markdown, display

card_dir = registry.models_dir(root) / version
display(Markdown((card_dir / "MODEL_CARD.md").read_text().split("## Results")[1][:1500]))
display(Image(filename=str(card_dir / "pr_curve.png")))

# %% [markdown]
# ## Evaluation on a held-out lake (different seed, later users)

# %%
from models.evaluate import evaluate_lake, summary

report = evaluate_lake(HELD_OUT, version, root=root)
print(summary(report))

# %%
pd.DataFrame(report["calibration"])

# %% [markdown]
# ## Champion vs challenger on the same traffic

# %%
from models.compare import compare_models, format_comparison

challenger = train_validated(table, stats, seed=8, root=root, card=False)["version"]
print(format_comparison(compare_models(HELD_OUT, version, challenger, root)))

# %% [markdown]
# ## Drift of the held-out traffic against the training window

# %%
from models.drift import drift_report
from models.evaluate import labelled_lake

held, _ = labelled_lake(HELD_OUT)
drift_report(registry.load_meta(version, root)["feature_bins"], held).head(8)

"""``vigie train`` end to end: point-in-time set -> validation -> LightGBM -> registry -> card.

1. ``models.datasets.training_set``: features by replay of the events before the cut-off,
   labels as known at the cut-off, too-recent transfers left out (maturity).
   The lake's source families (``pipelines.lake.sources.lake_families``) choose the features: only
   those its families can feed (``features.sources.features_for_sources``).
2. ``models.expectations``: the training table's Great Expectations suite, on the present
   families (an absent family's expectations are reported as absent, never failed). A failing
   suite stops here with ``DataValidationError`` naming the failing expectations.
3. ``models.train.fit``: time split train / validation / test, modest class weights, stopping
   on the validation log loss (at least ``MIN_ROUNDS`` trees), a seeded parameter search within
   ``search_budget_s``, the logistic-regression baseline on the same slice, fixed seed and
   thread count (deterministic for a seed and a finished search), a progress bar.
4. ``models.registry.save`` with the metadata (feature order, families, windows, data hash, GX
   result, recipe and search trials, baseline, metrics, thresholds, drift bins, git commit),
   then ``models.card.write`` next to it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from features.sources import features_for_sources
from features.vector import FEATURE_NAMES
from models import card as card_mod, datasets, registry
from models.datasets import DAY_MS, DEFAULT_MATURITY_DAYS
from models.evaluate import full_report
from models.expectations import format_failures, validate_training_table
from models.train import fit
from pipelines.lake.sources import lake_families


class DataValidationError(RuntimeError):
    def __init__(self, result: dict):
        self.result = result
        super().__init__("the training table fails its expectation suite:\n"
                         + format_failures([result]))


def model_features(families: Optional[dict[str, bool]]) -> list[str]:
    """The features a history with these families feeds, in FEATURE_NAMES order (None: all)."""
    if families is None:
        return list(FEATURE_NAMES)
    fed = set(features_for_sources({f for f, present in families.items() if present}))
    return [n for n in FEATURE_NAMES if n in fed]


def train_validated(table, dataset_stats: dict, seed: int = 7, root=None, progress: bool = False,
                    card: bool = True, validate: bool = True,
                    families: Optional[dict[str, bool]] = None,
                    search_budget_s: float = 0.0, search_trials: Optional[int] = None) -> dict:
    """Validate ``table`` (a ``training_set``), train, register, write the card.
    ``families``: the lake's source families (None: all present); ``search_budget_s``: the
    parameter search's budget (0: the defaults only; ``vigie train`` gives it
    ``models.train.SEARCH_BUDGET_S``); ``search_trials``: at most this many trials (default
    ``models.train.SEARCH_TRIALS``). A search that ends on its trials, not its budget, gives the
    same model for the same seed on any machine."""
    stats = {}
    started = time.perf_counter()
    gx_result = None
    if validate:
        gx_result = validate_training_table(table, reference_ms=dataset_stats.get("cutoff_ms"),
                                            families=families)
        stats["validate_s"] = time.perf_counter() - started
        if not gx_result["success"]:
            raise DataValidationError(gx_result)
    started = time.perf_counter()
    dataset = {k: dataset_stats.get(k) for k in ("cutoff_ms", "maturity_ms", "left_out_immature",
                                                 "labels_known", "labels_after_cutoff")}
    features = model_features(families)
    sources = {"families": families, "features": len(features),
               "features_left_out": len(FEATURE_NAMES) - len(features)}
    model_text, meta, details = fit(
        table, features, seed=seed, progress=progress, search_budget_s=search_budget_s,
        **({} if search_trials is None else {"search_trials": search_trials}),
        extra_meta={"validation": gx_result or {"skipped": True}, "dataset": dataset,
                    "sources": sources})
    stats["train_s"] = time.perf_counter() - started
    stats.update(details["timings"])
    started = time.perf_counter()
    test, y_test, s_test = details["parts"][2], details["y"][2], details["scores"]["test"]
    report = full_report(test, s_test, details["baseline_scores"]["test"], meta["thresholds"])
    meta["metrics"]["test_report"] = {k: report[k] for k in (
        "pr_auc", "roc_auc", "at_budget", "legit_block_rate", "review_capacity",
        "average_precision", "topk_daily_precision", "k", "baseline", "warnings")}
    stats["evaluate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    version = registry.save(model_text, meta, root)
    stats["save_s"] = time.perf_counter() - started
    if card:
        started = time.perf_counter()
        card_mod.write(registry.models_dir(root) / version, registry.load_meta(version, root),
                       report, y_test, s_test)
        stats["card_s"] = time.perf_counter() - started
    search = meta["search"]
    stats.update(version=version, rows=len(table), frauds=int(table["label"].sum()),
                 features=len(features), best_iteration=meta["best_iteration"],
                 search_trials=len(search["trials"]), search_s=search["elapsed_s"],
                 chosen_trial=search["chosen"], test_pr_auc=report["pr_auc"],
                 test_roc_auc=report["roc_auc"],
                 test_topk_daily_precision=report["topk_daily_precision"],
                 baseline_test_pr_auc=report["baseline"]["average_precision"],
                 baseline_test_topk_daily_precision=report["baseline"]["topk_daily_precision"],
                 warnings=report["warnings"])
    return stats


def train_lake(lake_dir: Path, seed: int = 7, root=None, cutoff_ms: Optional[int] = None,
               maturity_days: float = DEFAULT_MATURITY_DAYS, progress: bool = False,
               card: bool = True, validate: bool = True, features: Optional[Path] = None,
               search_budget_s: float = 0.0, search_trials: Optional[int] = None,
               replay_workers: int = 1) -> dict:
    """``features``: the lake's replayed feature table (``vigie replay --out``), to train
    after replay without replaying again; else the replay runs over ``replay_workers``."""
    started = time.perf_counter()
    families = lake_families(Path(lake_dir))
    # datasets.training_set, not a name bound at import: a test stands in for it
    table, stats = datasets.training_set(Path(lake_dir), cutoff_ms, int(maturity_days * DAY_MS),
                                         features=features, workers=replay_workers,
                                         progress=progress)
    stats["dataset_s"] = time.perf_counter() - started
    stats.update(train_validated(table, stats, seed=seed, root=root, progress=progress,
                                 card=card, validate=validate, families=families,
                                 search_budget_s=search_budget_s, search_trials=search_trials))
    return stats

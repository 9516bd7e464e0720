"""``vigie train`` end to end: point-in-time set -> validation -> LightGBM -> registry -> card.

1. ``models.datasets.training_set``: features by replay of the events before the cut-off,
   labels as known at the cut-off, too-recent transfers left out (maturity).
2. ``models.expectations``: the training table's Great Expectations suite. A failing suite
   stops here with ``DataValidationError`` naming the failing expectations; nothing is trained.
3. ``models.train.fit``: time split train / validation / test, class weights, early stopping on
   validation PR-AUC, fixed seed and thread count (deterministic), a progress bar.
4. ``models.registry.save`` with the metadata (feature order, windows, data hash, GX result,
   metrics, thresholds, drift bins, git commit), then ``models.card.write`` next to it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from models.datasets import DAY_MS, DEFAULT_MATURITY_DAYS


class DataValidationError(RuntimeError):
    def __init__(self, result: dict):
        from models.expectations import format_failures

        self.result = result
        super().__init__("the training table fails its expectation suite:\n"
                         + format_failures([result]))


def train_validated(table, dataset_stats: dict, seed: int = 7, root=None, progress: bool = False,
                    card: bool = True, validate: bool = True) -> dict:
    """Validate ``table`` (a ``training_set``), train, register, write the card."""
    from features.vector import FEATURE_NAMES
    from models import card as card_mod
    from models import registry
    from models.evaluate import evaluate
    from models.expectations import validate_training_table
    from models.train import fit

    stats = {}
    started = time.perf_counter()
    gx_result = None
    if validate:
        gx_result = validate_training_table(table, reference_ms=dataset_stats.get("cutoff_ms"))
        stats["validate_s"] = time.perf_counter() - started
        if not gx_result["success"]:
            raise DataValidationError(gx_result)
    started = time.perf_counter()
    dataset = {k: dataset_stats.get(k) for k in ("cutoff_ms", "maturity_ms", "left_out_immature",
                                                 "labels_known", "labels_after_cutoff")}
    model_text, meta, details = fit(
        table, FEATURE_NAMES, seed=seed, progress=progress,
        extra_meta={"validation": gx_result or {"skipped": True}, "dataset": dataset})
    stats["train_s"] = time.perf_counter() - started
    stats.update(details["timings"])
    started = time.perf_counter()
    test = details["parts"][2]
    report = evaluate(details["y"][2], details["scores"]["test"], test["amount_cents"], test["ts"],
                      test["scenario"] if "scenario" in test else None, meta["thresholds"])
    meta["metrics"]["test_report"] = {k: report[k] for k in ("pr_auc", "roc_auc", "at_budget",
                                                             "legit_block_rate", "review_capacity")}
    stats["evaluate_s"] = time.perf_counter() - started
    started = time.perf_counter()
    version = registry.save(model_text, meta, root)
    stats["save_s"] = time.perf_counter() - started
    if card:
        started = time.perf_counter()
        card_mod.write(registry.models_dir(root) / version, registry.load_meta(version, root),
                       report, details["y"][2], details["scores"]["test"])
        stats["card_s"] = time.perf_counter() - started
    stats.update(version=version, rows=len(table), frauds=int(table["label"].sum()),
                 best_iteration=meta["best_iteration"], test_pr_auc=report["pr_auc"],
                 test_roc_auc=report["roc_auc"])
    return stats


def train_lake(lake_dir: Path, seed: int = 7, root=None, cutoff_ms: Optional[int] = None,
               maturity_days: float = DEFAULT_MATURITY_DAYS, progress: bool = False,
               card: bool = True, validate: bool = True, features: Optional[Path] = None) -> dict:
    """``features``: the lake's replayed feature table (``vigie replay --out``), to train
    after replay without replaying again."""
    from models.datasets import training_set

    started = time.perf_counter()
    table, stats = training_set(Path(lake_dir), cutoff_ms, int(maturity_days * DAY_MS),
                                features=features)
    stats["dataset_s"] = time.perf_counter() - started
    stats.update(train_validated(table, stats, seed=seed, root=root, progress=progress,
                                 card=card, validate=validate))
    return stats

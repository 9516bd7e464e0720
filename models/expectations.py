"""Data validation with Great Expectations 1.x: one suite per event topic, one for the training table.

The suites are data: JSON files under ``data/expectations/`` in GX's suite format (``{"name",
"expectations": [{"type", "kwargs", "meta"}]}``), reviewed like code and rebuilt by ``vigie
suites`` from the event contracts (``topic_suite``) and a profile of a seeded simulated lake
(``training_suite``). Here: building a suite from its sources, loading one, and running it
(``validate_frame``, ``validate_training_table``, ``validate_lake``) in GX's ephemeral context;
a result is a small dict whose ``failures`` name each failing expectation. An absent source
family's expectations are reported as ``absent``, never failed; freshness is judged at run time
(``meta.freshness_hours``). Details: docs/models.md, "Expectation suites".
"""
from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path
from typing import Optional

import msgspec
import numpy as np
import pandas as pd

from features.routing import new_state
from features.sources import FEATURE_FAMILY
from features.vector import FEATURE_NAMES, features_of
from models.tables import ID_COLUMNS
from pipelines.contracts.privacy import HEX_CHARS
from pipelines.contracts.schemas import TransferRequested
from pipelines.contracts.topics import TOPICS
from pipelines.lake import parquet as lake
from pipelines.lake.parquet import TopicTable
from pipelines.lake.sources import manifest

SUITES_DIR = Path(__file__).resolve().parents[1] / "data" / "expectations"
EVENT_TOPICS = ("transfer-requests", "messages", "account-events", "assistant-events", "labels")
TRAINING_SUITE = "training_table"
TOPIC_SAMPLE_ROWS = 200_000  # big topics are validated on a uniform sample
HOUR_MS = 3_600_000
# Fraud is rare: a history at 1 in 10,000 is still one to learn from; above 20 % the labels
# are likely not what they claim.
LABEL_RATE = (0.0001, 0.20)
# Null rates depend on how active a history's accounts are (a 24 h mean is missing for an
# account that paid nobody that day), so a rate profiled on the simulator would refuse a
# sparser history: only the features defined for every transfer (``always_defined``) are
# checked, for being missing at most this often (a broken pipeline, not a quiet one).
NULL_SLACK = 0.01
# 0/1 features, by name (the profile alone cannot tell a flag from a count that stayed at 0/1).
FLAG_SUFFIXES = ("transfer_suggested", "transfer_amount_edited", "transfer_recipient_edited",
                 "transfer_has_conversation", "transfer_has_device", "transfer_has_card",
                 "transfer_to_self", "payee_raised_money_first", "no_prior_conversation",
                 "first_transfer_to_recipient", "suggestion_seen", "suggestion_for_other_payee",
                 "suggestion_edited", "device_first_seen", "confirmed_fraud")


def _expectation(type_: str, meta: Optional[dict] = None, **kwargs) -> dict:
    return {"type": type_, "kwargs": kwargs, "meta": meta or {}}


# --- building the suites --------------------------------------------------------------------
def topic_suite(topic: str) -> dict:
    """The suite of an event topic, from its contract (``pipelines.contracts.schemas``):
    columns, required fields, literal sets, numeric ranges, id patterns, freshness."""
    info = msgspec.inspect.type_info(TOPICS[topic].schema)
    exps = [_expectation("expect_table_columns_to_match_set",
                         column_set=TopicTable(topic, with_kafka_columns=False).fields,
                         exact_match=False),
            _expectation("expect_table_row_count_to_be_between", min_value=1),
            _expectation("expect_column_values_to_be_unique", column="id")]
    for f in info.fields:
        t = f.type
        optional = isinstance(t, msgspec.inspect.UnionType) and any(
            isinstance(m, msgspec.inspect.NoneType) for m in t.types)
        if optional:
            t = next(m for m in t.types if not isinstance(m, msgspec.inspect.NoneType))
        if f.required or not optional:
            exps.append(_expectation("expect_column_values_to_not_be_null", column=f.name))
        if isinstance(t, msgspec.inspect.LiteralType):
            exps.append(_expectation("expect_column_values_to_be_in_set", column=f.name,
                                     value_set=sorted(t.values)))
        elif isinstance(t, msgspec.inspect.IntType) and (t.ge is not None or t.le is not None
                                                         or t.gt is not None):
            low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else None)
            exps.append(_expectation("expect_column_values_to_be_between", column=f.name,
                                     min_value=low, max_value=t.le))
        elif isinstance(t, msgspec.inspect.StrType) and t.pattern:
            exps.append(_expectation("expect_column_values_to_match_regex", column=f.name,
                                     regex=t.pattern))
    if topic != "labels":  # labels arrive late by nature; the others must keep flowing
        exps.append(_expectation("expect_column_max_to_be_between", {"freshness_hours": 24},
                                 column="ts", min_value=None, max_value=None))
    return {"name": topic.replace("-", "_"), "expectations": exps,
            "meta": {"source": "pipelines.contracts.schemas", "topic": topic}}


def _not_applicable(suite: dict, families: Optional[dict]) -> tuple[dict, list[str], int]:
    """The suite without the expectations of absent families; the absent families it named
    and how many expectations were left out."""
    absent = {f for f, present in (families or {}).items() if not present}
    kept, skipped, named = [], 0, set()
    for exp in suite["expectations"]:
        needs = set(exp.get("meta", {}).get("families", ())) & absent
        if needs:
            skipped += 1
            named |= needs
        else:
            kept.append(exp)
    return {**suite, "expectations": kept}, sorted(named), skipped


def feature_families(names) -> dict[str, list[str]]:
    """feature -> the source families it needs (``features.sources.FEATURE_FAMILY``; a name
    outside it: none, always checked)."""
    return {n: [FEATURE_FAMILY[n]] if n in FEATURE_FAMILY else [] for n in names}


def always_defined() -> set[str]:
    """The features a transfer gets even between two accounts with no history and with no
    device, card or IP on it (counts are 0 there): the ones a working pipeline never leaves
    missing. Ages, means, ratios and times since are missing by design when there is nothing
    to measure, and how often depends on how active a history is."""
    ts = 1_800_000_000_000
    tr = TransferRequested(id="probe", ts=ts, transfer_id="probe", sender="a_" + "0" * HEX_CHARS,
                           recipient="a_" + "1" * HEX_CHARS, amount_cents=100,
                           payout_due_ts=ts + 30_000)
    return {n for n, v in features_of(tr, lambda kind, key: new_state(kind)).items() if v == v}


def training_suite(profile: pd.DataFrame) -> dict:
    """From a profiled training table (``models.datasets.training_set`` on a simulated lake,
    ``vigie suites``): which features are flags (0/1), shares (0..1), non-negative, or always
    defined, plus label-rate bounds and a freshness window."""
    # features come and go with their families: only the fixed columns must be there
    exps = [_expectation("expect_table_columns_to_match_set",
                         column_set=[*ID_COLUMNS, "label", "scenario"], exact_match=False),
            _expectation("expect_table_row_count_to_be_between", min_value=100),
            _expectation("expect_column_values_to_be_unique", column="transfer_id"),
            _expectation("expect_column_values_to_not_be_null", column="ts"),
            _expectation("expect_column_values_to_be_between", column="amount_cents",
                         min_value=1, max_value=1_000_000_000),
            _expectation("expect_column_values_to_be_in_set", column="label", value_set=[0, 1]),
            _expectation("expect_column_mean_to_be_between", column="label",
                         min_value=LABEL_RATE[0], max_value=LABEL_RATE[1]),
            _expectation("expect_column_max_to_be_between", {"freshness_hours": 45 * 24},
                         column="ts", min_value=None, max_value=None)]
    families = feature_families(FEATURE_NAMES)
    always = always_defined()
    for name in FEATURE_NAMES:
        values = profile[name].to_numpy(np.float64)
        meta = {"families": families[name]}
        exps.append(_expectation("expect_column_to_exist", meta, column=name))
        if name in always:
            exps.append(_expectation("expect_column_values_to_not_be_null", meta, column=name,
                                     mostly=1 - NULL_SLACK))
        if name.endswith(FLAG_SUFFIXES):
            exps.append(_expectation("expect_column_values_to_be_in_set", meta, column=name,
                                     value_set=[0.0, 1.0]))
        elif "_share_" in name:
            exps.append(_expectation("expect_column_values_to_be_between", meta, column=name,
                                     min_value=0.0, max_value=1.0))
        elif np.isfinite(values).any() and np.nanmin(values) >= 0:
            exps.append(_expectation("expect_column_values_to_be_between", meta, column=name,
                                     min_value=0.0))
    return {"name": TRAINING_SUITE, "expectations": exps,
            "meta": {"source": "profile of run_offline(seed=11, users=1500, days=14)",
                     "null_slack": NULL_SLACK, "label_rate": list(LABEL_RATE)}}


# --- running them ---------------------------------------------------------------------------
def load_suite(name: str, suites_dir: Path = SUITES_DIR) -> dict:
    return json.loads((Path(suites_dir) / f"{name.replace('-', '_')}.json").read_text())


_CONTEXT: list = []


def _context():
    """GX and one ephemeral context per process (creating one costs about a second)."""
    if not _CONTEXT:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        logging.getLogger("great_expectations").setLevel(logging.ERROR)  # chatty at import
        # why local: GX takes seconds to import and only validation needs it
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        _CONTEXT.extend([gx, context])
    return _CONTEXT[0], _CONTEXT[1]


def validate_frame(df: pd.DataFrame, suite: dict, reference_ms: Optional[int] = None) -> dict:
    """Run one suite on a DataFrame; returns {"suite", "success", "evaluated", "failures": [...]}
    where each failure is {"expectation", "column", "kwargs", "observed"}."""
    gx, context = _context()
    expectations = []
    for exp in suite["expectations"]:
        exp = json.loads(json.dumps(exp))
        hours = exp.get("meta", {}).get("freshness_hours")
        if hours is not None:
            if reference_ms is None:
                continue  # no reference time: freshness cannot be judged
            exp["kwargs"]["min_value"] = int(reference_ms - hours * HOUR_MS)
        expectations.append(exp)
    gx_suite = gx.ExpectationSuite(name=suite["name"], expectations=expectations)
    source = context.data_sources.add_pandas(f"vigie_{suite['name']}_{uuid.uuid4().hex[:8]}")
    batch_def = source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("all")
    # GX's pandas metrics want plain numpy dtypes (pandas' nullable ones confuse some of them)
    frame = df.copy()
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.StringDtype) or frame[col].dtype == "string":
            frame[col] = frame[col].astype(object)
        elif pd.api.types.is_extension_array_dtype(frame[col].dtype):
            frame[col] = frame[col].astype("float64")
    try:
        # BASIC: counts, rates, observed values and a few unexpected values, which is all the
        # failures below read; GX's default (SUMMARY) adds value counts: 35 % slower
        result = batch_def.get_batch(batch_parameters={"dataframe": frame}).validate(
            gx_suite, result_format="BASIC")
    finally:
        context.data_sources.delete(source.name)
    failures = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        kwargs = {k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)}
        observed = r.result.get("observed_value")
        if observed is None and "unexpected_percent" in r.result:
            observed = {"unexpected_percent": round(float(r.result["unexpected_percent"]), 3),
                        "sample": [str(v) for v in r.result.get("partial_unexpected_list", [])[:5]]}
        if observed is None and r.exception_info and r.exception_info.get("raised_exception"):
            observed = {"error": str(r.exception_info.get("exception_message"))[:200]}
        failures.append({"expectation": cfg.type, "column": kwargs.get("column"),
                         "kwargs": _jsonable(kwargs), "observed": _jsonable(observed)})
    return {"suite": suite["name"], "success": bool(result.success),
            "evaluated": len(result.results), "failures": failures}


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


# GX's pandas checks cost ~0.04 ms a row (100k rows: ~4 s). A 100k-row uniform sample still
# sees a corruption of 1 row in 10,000 with probability 1 - e^-10, and estimates a 2 % label or
# null rate to +-0.05 points, far inside the suite's bounds.
TRAINING_SAMPLE_ROWS = 100_000


def validate_training_table(table: pd.DataFrame, reference_ms: Optional[int] = None,
                            suites_dir: Path = SUITES_DIR,
                            families: Optional[dict[str, bool]] = None) -> dict:
    """The training-table suite; a table over TRAINING_SAMPLE_ROWS is checked on a seeded
    uniform sample (rates, ranges, sets, nulls and the label rate hold on a sample; the
    uniqueness of transfer ids is then checked on the sample only). ``families`` (family ->
    present; None: all present): the expectations of absent families are not run, and the
    result names those families under ``absent`` with ``not_applicable`` expectations."""
    sampled = len(table) > TRAINING_SAMPLE_ROWS
    frame = table.sample(TRAINING_SAMPLE_ROWS, random_state=0).sort_index() if sampled else table
    full = load_suite(TRAINING_SUITE, suites_dir)
    suite, absent, skipped = _not_applicable(full, families)
    result = validate_frame(frame, suite, reference_ms)
    checked = {e["kwargs"].get("column") for e in full["expectations"]}
    result.update(rows=len(table), sampled=sampled, absent=absent, not_applicable=skipped,
                  # features newer than the suite: unchecked until it is regenerated
                  unprofiled=[n for n in FEATURE_NAMES if n in table.columns and n not in checked])
    return result


def validate_lake(lake_dir: Path, suites_dir: Path = SUITES_DIR,
                  topics=EVENT_TOPICS) -> list[dict]:
    """Every event topic's suite on the lake (big topics on a uniform sample); freshness is
    judged against the latest event of the whole lake."""
    present = [t for t in topics if lake.has_data(lake_dir, t)]
    con = lake.connect(lake_dir, topics=present)
    views = [lake.view_name(t) for t in present if t != "labels"]
    reference = con.execute("SELECT max(t) FROM (" + " UNION ALL ".join(
        f"SELECT max(ts) AS t FROM {v}" for v in views) + ")").fetchone()[0] if views else None
    if manifest(lake_dir) is not None:  # an imported history is a past, not a live feed:
        reference = None  # its sources need not end together (sign-ups stop before transfers)
    results = []
    for topic in topics:
        if topic not in present:  # a history without this source: normal, not a failure
            results.append({"suite": topic.replace("-", "_"), "topic": topic, "success": True,
                            "absent_topic": True, "evaluated": 0, "failures": [], "rows": 0,
                            "sampled": False})
            continue
        view = lake.view_name(topic)
        n = con.execute(f"SELECT count(*) FROM {view}").fetchone()[0]
        sample = f" USING SAMPLE {TOPIC_SAMPLE_ROWS} ROWS (reservoir, 7)" if n > TOPIC_SAMPLE_ROWS else ""
        frame = con.execute(f"SELECT * FROM {view}{sample}").df()
        frame = frame.drop(columns=[c for c in ("_partition", "_offset") if c in frame.columns])
        result = validate_frame(frame, load_suite(topic, suites_dir), reference)
        result.update(topic=topic, rows=int(n), sampled=bool(sample))
        results.append(result)
    return results


def format_failures(results: list[dict]) -> str:
    lines = []
    for res in results:
        if res.get("absent_topic"):
            lines.append(f"{res['suite']}: absent (no such source in this history)")
            continue
        status = "ok" if res["success"] else f"FAILED ({len(res['failures'])})"
        absent = (f"; absent families {', '.join(res['absent'])}: "
                  f"{res['not_applicable']} not applicable" if res.get("absent") else "")
        lines.append(f"{res['suite']}: {status} - {res['evaluated']} expectations{absent}")
        if res.get("unprofiled"):
            lines.append(f"  ! {len(res['unprofiled'])} features not in the suite (unchecked; "
                         f"regenerate: vigie suites): "
                         f"{', '.join(res['unprofiled'][:5])}{' ...' if len(res['unprofiled']) > 5 else ''}")
        for f in res["failures"]:
            col = f" [{f['column']}]" if f["column"] else ""
            lines.append(f"  x {f['expectation']}{col}: observed {json.dumps(f['observed'])}")
    return "\n".join(lines)

"""The live stream's data-quality check: the lake sink validates a sample of each input topic on a
schedule (pipelines/stream/quality.py) and publishes the result to the data-quality topic."""
from __future__ import annotations

import asyncio
import time

import msgspec
import pytest
from console_lake import signed_in
from process_support import wait_for

from pipelines.contracts import schemas
from pipelines.contracts.privacy import pseudonymize as h
from pipelines.lake import parquet as lake
from pipelines.stream.quality import Sampler, check

DAY = 86_400_000


def _transfers(n: int, ts: int, duplicate_ids: bool = False):
    return [schemas.TransferRequested(
        id=f"dq-t{i // 2 if duplicate_ids else i}-{ts}", ts=ts + i, transfer_id=f"dq-tr{i}-{ts}",
        sender=h("account", f"dq-{i % 5}"), recipient=h("account", f"dq-{5 + i % 3}"),
        amount_cents=1000 + i, payout_due_ts=ts + 30_000) for i in range(n)]


def test_sampler_is_bounded_and_restarts_each_window():
    sampler = Sampler(["transfer-requests"], size=10)
    for event in _transfers(500, 1_800_000_000_000):
        sampler.observe("transfer-requests", event)
    sampler.observe("analyst-actions", object())  # a topic without a suite is ignored
    taken = sampler.take()
    assert list(taken) == ["transfer-requests"]
    sample, seen = taken["transfer-requests"]
    assert len(sample) == 10 and seen == 500
    assert max(e.ts for e in sample) - min(e.ts for e in sample) > 100  # spread, not the head
    assert sampler.take() == {}  # nothing seen since: nothing to report


def test_a_stale_duplicated_sample_fails_and_names_its_expectations():
    now = int(time.time() * 1000)
    good = check("transfer-requests", _transfers(40, now - 60_000), 40, now)
    bad = check("transfer-requests", _transfers(40, now - 3 * DAY, duplicate_ids=True), 40, now)
    assert good.success and not good.failures
    assert not bad.success
    assert {(f.expectation, f.column) for f in bad.failures} == {
        ("expect_column_values_to_be_unique", "id"), ("expect_column_max_to_be_between", "ts")}
    assert "dq-t" not in msgspec.json.encode(bad).decode()  # observations carry no sample values


async def _published(since_ts: int) -> list[schemas.DataQuality]:
    from pipelines.kafka.clients import consumer

    cons = consumer("data-quality")
    await cons.start()
    try:
        batches = await cons.getmany(timeout_ms=2000)
    finally:
        await cons.stop()
    results = [msgspec.json.decode(r.value, type=schemas.DataQuality)
               for records in batches.values() for r in records]
    return [r for r in results if r.ts >= since_ts]


@pytest.mark.kafka
def test_the_sink_publishes_a_failing_result_for_a_bad_sample(kafka, processes, tmp_path):
    from pipelines.kafka.clients import Publisher
    from pipelines.kafka.lag import group_lag_sync

    async def publish(events):
        pub = await Publisher().start()
        try:
            for event in events:
                await pub.publish("transfer-requests", event, wait=False)
            await pub.producer.flush()
        finally:
            await pub.stop()

    processes.start("sink", "sink", "--name", "dq",
                    env={"VIGIE_DATA_DIR": str(tmp_path / "data"), "VIGIE_QUALITY_EVERY_S": "2"})
    # what earlier tests left on the topic is read and checked first; then a window of our own
    asyncio.run(publish(_transfers(1, int(time.time() * 1000))))
    def caught_up() -> bool:
        try:
            rows = group_lag_sync("vigie-lake-sink", topics=["transfer-requests"], timeout_s=10)
        except Exception:  # a young broker: no group coordinator yet
            return False
        # transfer-requests' only: the other topics the sink reads are listed too, among them
        # the payment service's transactional ones, whose commit markers a Faust app never
        # commits past (a lag of 1 until the next record)
        return sum(r["lag"] for r in rows if r["topic"] == "transfer-requests") == 0

    wait_for(caught_up, timeout=60, what="the sink to catch up")
    time.sleep(5)  # past the current check window
    published = int(time.time() * 1000)
    stale = published - 3 * DAY  # the bad sample: three days old, every id sent twice
    asyncio.run(publish(_transfers(30, stale, duplicate_ids=True)))

    def failed():
        return next((r for r in asyncio.run(_published(published))
                     if r.topic == "transfer-requests" and not r.success), None)

    result = wait_for(failed, timeout=60, interval=1.0, what="a failing data-quality result")
    assert (result.sample_rows, result.seen_rows, result.from_ts) == (30, 30, stale)
    assert {(f.expectation, f.column) for f in result.failures} == {
        ("expect_column_values_to_be_unique", "id"), ("expect_column_max_to_be_between", "ts")}
    # the sink lands its own results in the lake, where the console reads them
    in_lake = lambda: lake.connect(tmp_path / "data" / "lake", ["data-quality"]).execute(  # noqa: E731
        "SELECT count(*) FROM data_quality WHERE topic = 'transfer-requests' AND NOT success"
    ).fetchone()[0]
    wait_for(in_lake, timeout=30, what="the data-quality result in the lake")


def test_console_shows_the_latest_result_per_topic_as_text(tmp_path, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("VIGIE_DATA_DIR", str(tmp_path))
    now = int(time.time() * 1000)
    markup = schemas.QualityFailure(expectation="expect_column_values_to_be_unique", column="id",
                                    observed="**50.0** <b>% of the sample unexpected</b>")
    results = [schemas.DataQuality(id=f"dq-{i}", ts=now - (2 - i) * 60_000, topic=topic,
                                   suite=topic.replace("-", "_"), success=ok, evaluated=29,
                                   failures=[] if ok else [markup], sample_rows=1000, seen_rows=4000)
               for i, (topic, ok) in enumerate([("transfer-requests", True), ("messages", True),
                                                ("transfer-requests", False)])]
    table = lake.TopicTable("data-quality", with_kafka_columns=False)
    lake.write_batch(tmp_path / "lake", "data-quality", table, results, name="p0-1-3")
    page = Path(__file__).resolve().parents[2] / "dashboards" / "pages" / "models_quality.py"
    at = signed_in(AppTest.from_file(str(page), default_timeout=60), "dana", "data_scientist").run()
    assert not at.exception, [e.value for e in at.exception]
    [shown] = [d.value for d in at.dataframe if "failed expectations" in d.value.columns]
    latest = dict(zip(shown["topic"], shown["success"]))
    assert latest == {"messages": True, "transfer-requests": False}  # the newest per topic
    assert "**50.0** <b>" in " ".join(shown["failed expectations"])  # verbatim text, not markup
    assert any("1 of 2 topics failing" in e.value for e in at.error)

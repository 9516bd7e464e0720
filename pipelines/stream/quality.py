"""Live data quality, a stage of the lake sink's Faust app: it checks a sample of each input topic on a schedule.

Every ``VIGIE_QUALITY_EVERY_S`` seconds (default 60) each topic's reservoir sample of the
events seen since the previous check is validated against its Great Expectations suite
(``data/expectations/``, as ``vigie validate``) in a thread, and the result goes to the
``data-quality`` topic. A topic that saw no event since the previous check is not reported.

Why in the sink: docs/lake.md#quality
"""
from __future__ import annotations

import asyncio
import logging
import os
import random
import time

from models.expectations import load_suite, validate_frame
from pipelines.contracts import schemas, settings
from pipelines.lake.parquet import TopicTable

log = logging.getLogger(__name__)
TOPIC = "data-quality"
SAMPLE_ROWS = 1000  # per topic and check: GX's pandas checks cost ~0.1 ms a row


class Sampler:
    """A uniform reservoir sample (Algorithm R) of each topic's events since the last ``take``."""

    def __init__(self, topics, size: int = SAMPLE_ROWS, seed: int = 0):
        self.topics, self.size = tuple(topics), size
        self.rng = random.Random(seed)
        self.samples: dict[str, list] = {t: [] for t in self.topics}
        self.seen = dict.fromkeys(self.topics, 0)

    def observe(self, topic: str, event) -> None:
        if topic not in self.seen:
            return
        self.seen[topic] += 1
        sample = self.samples[topic]
        if len(sample) < self.size:
            sample.append(event)
        else:
            slot = self.rng.randrange(self.seen[topic])
            if slot < self.size:
                sample[slot] = event

    def take(self) -> dict[str, tuple[list, int]]:
        """{topic: (sample, events seen)} for the topics that saw events; starts a new window."""
        out = {t: (self.samples[t], self.seen[t]) for t in self.topics if self.seen[t]}
        self.samples = {t: [] for t in self.topics}
        self.seen = dict.fromkeys(self.topics, 0)
        return out


def _observed(value) -> str:
    """A failure's observation without sample values: they could be identifiers."""
    if isinstance(value, dict) and "unexpected_percent" in value:
        return f"{value['unexpected_percent']} % of the sample unexpected"
    if isinstance(value, (int, float, bool)):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ("columns: " + ", ".join(value))[:500]  # column names from a schema check
    return "" if value is None else type(value).__name__


def check(topic: str, events: list, seen: int, now_ms: int) -> schemas.DataQuality:
    """Validate one topic's sample (the lake's columns, as ``vigie validate`` sees them)."""
    frame = TopicTable(topic, with_kafka_columns=False).to_arrow(events).to_pandas()
    result = validate_frame(frame, load_suite(topic), reference_ms=now_ms)
    times = [e.ts for e in events]
    return schemas.DataQuality(
        id=f"dq.{topic}.{now_ms}.{os.getpid()}", ts=now_ms, topic=topic, suite=result["suite"],
        success=result["success"], evaluated=result["evaluated"],
        failures=[schemas.QualityFailure(expectation=f["expectation"], column=f["column"],
                                         observed=_observed(f["observed"]))
                  for f in result["failures"]],
        sample_rows=len(events), seen_rows=seen,
        from_ts=min(times, default=None), to_ts=max(times, default=None))


def register(app, sampler: Sampler) -> None:
    every_s = settings.environment().stream.quality_every_s
    out = app.topic(TOPIC, key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")

    @app.timer(every_s, name="data-quality")
    async def validate_samples():
        for topic, (events, seen) in sampler.take().items():
            try:  # GX is CPU work: a thread, so the sink's event loop keeps writing batches
                result = await asyncio.to_thread(check, topic, events, seen, int(time.time() * 1000))
            except Exception:  # a broken check must not stop the sink
                log.exception("data quality check of %s", topic)
                continue
            await out.send(key=topic.encode(), value=schemas.encode(result))
            log.info("data quality: %s %s (%d of %d events, %d failed expectations)", topic,
                     "ok" if result.success else "FAILED", result.sample_rows, seen,
                     len(result.failures))

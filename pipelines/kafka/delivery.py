"""A record the producer gave up on stops the process at once, before it commits anything.

The stages wait for their records' delivery before they commit input offsets or write entity
states (``producer.flush()``), but a flush waits, it does not check: a record the broker refused
for good (after aiokafka's retries and its request timeout, or at once, e.g. too large) would
be skipped and the input it came from committed: lost. A stream stage cannot carry on past a
lost record, so like Kafka Streams' default (a failed send stops the stream thread) the worker
stops, without committing or writing anything more: exactly a kill -9, after which the next
owner of its partitions re-reads what it held (the stages are idempotent under redelivery).

Why before: aiokafka resolves a batch's future and its records' futures in one call, and their
callbacks (Faust's, which report to the sensors) run in that order, before the task awaiting
the flush resumes. ``tests/kafka/test_failed_delivery.py`` checks it on the real broker.
"""
from __future__ import annotations

import logging
import os
from typing import Optional

import faust

log = logging.getLogger(__name__)
EXIT_CODE = 75  # EX_TEMPFAIL: the broker refused a record; restarting may succeed


def stop(what: str, error: BaseException) -> None:
    """The process stops now: nothing after this line commits or writes."""
    log.critical("%s not delivered (%r): stopping now; the partitions' records are read "
                 "again by their next owner", what, error)
    logging.shutdown()
    os._exit(EXIT_CODE)


class FailedDeliveries(faust.Sensor):
    """Every record a Faust topic sends: a failed delivery stops the process (``stop``)."""

    def on_send_initiated(self, producer, topic: str, message, keysize: int,
                          valsize: int) -> str:
        return topic  # what ``on_send_error`` is handed as its state

    def on_send_error(self, producer, exc: BaseException, state) -> None:
        stop(f"a record to {state}", exc)


class Sender:
    """Sends one topic's records through the app's aiokafka producer, past Faust's per-record
    send (a future message, its sensors, a done-callback: more than half of a send's CPU,
    py-spy on the latency bench's 500 transfers/s). For the worker's busiest records: bundles,
    watermarks, decisions, recovery signals. A record the broker refused stops the process, as
    ``FailedDeliveries`` does for Faust's sends; records sent in order keep their order on a
    partition, with Faust's sends too (the same producer)."""

    def __init__(self, app, topic: str):
        self.app, self.topic = app, topic
        self.what = f"a record to {topic}"

    async def send(self, key: Optional[bytes], value: bytes,
                   partition: Optional[int] = None) -> None:
        producer = self.app.producer._ensure_producer()  # aiokafka's, started with the app
        sent = await producer.send(self.topic, value, key=key, partition=partition)
        sent.add_done_callback(self._delivered)

    def _delivered(self, sent) -> None:
        if not sent.cancelled() and sent.exception() is not None:
            stop(self.what, sent.exception())

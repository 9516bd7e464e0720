"""Reading a Faust stream in batches, unacknowledged (``take``), and acknowledging the held
events in offset order: ``InOrderAcks`` acks an event only once every earlier event of its
partition is finished, so a commit never skips one still held.

Why (Faust's gap check lets a one-offset hole through): docs/stream.md#acks
"""
from __future__ import annotations

import logging
import os
import signal
from collections import deque

from pipelines.contracts import settings

log = logging.getLogger(__name__)
STAGE_WINDOW_S = settings.environment().stream.stage_window_ms / 1000


def take(stream, most: int):
    """A Faust stream's records in batches of at most ``most``: what was fetched meanwhile,
    every stage window (``VIGIE_STAGE_WINDOW_MS``; Faust's take yields on a timer, not on the
    first record). Each batch costs its stage a whole pass, whatever its size; with a 2 ms
    window, a worker with traffic spent more of its CPU on those passes than on the events, and
    could not keep up with 500 transfers/s (docs/stream.md#stage-window)."""
    return stream.noack_take(most, within=STAGE_WINDOW_S)


class InOrderAcks:
    def __init__(self):
        self.queues: dict = {}  # partition (TP) -> deque of [event, finished]

    def track(self, event) -> list:
        """Call on arrival, in arrival (= offset) order; returns the handle for ``finish``."""
        entry = [event, False]
        tp = event.message.tp
        queue = self.queues.get(tp)
        if queue is None:
            queue = self.queues[tp] = deque()
        queue.append(entry)
        return entry

    def finish(self, entry: list) -> None:
        entry[1] = True
        queue = self.queues.get(entry[0].message.tp)
        while queue and queue[0][1]:
            queue.popleft()[0].ack()

    def forget(self, tps) -> None:
        """Revoked partitions: their unfinished events are read again by the next owner."""
        for tp in tps:
            self.queues.pop(tp, None)

    def register(self, app, topic: str) -> None:
        """Forget ``topic``'s partitions when the worker loses them."""
        @app.on_partitions_revoked.connect
        async def forget_revoked(app, revoked, **kwargs):
            self.forget(tp for tp in revoked if tp.topic == topic)


class CrashAfterProduce:
    """A test hook (``VIGIE_TEST_CRASH_AFTER_PRODUCE=N``, ``VIGIE_TEST_CRASH_STAGE``): the
    worker kills itself (SIGKILL) once ``stage`` had N batches' produces acknowledged, before
    it commits (or acknowledges) what they came from (tests/stream/test_batch_ingest_crash.py).
    """

    def __init__(self, stage: str):
        env = settings.environment().stream
        self.at = env.test_crash_after_produce if env.test_crash_stage == stage else None
        self.stage = stage
        self.produced = 0

    @property
    def armed(self) -> bool:
        return self.at is not None

    def produced_one(self) -> None:
        """Call once a batch's produces were acknowledged, before its commit."""
        self.produced += 1
        if self.produced == self.at:
            log.warning("test hook: %s killed after a batch's produce, before its commit",
                        self.stage)
            os.kill(os.getpid(), signal.SIGKILL)

"""Acknowledging held events in offset order: ``InOrderAcks`` acks an event only once every
earlier event of its partition is finished, so a commit never skips one still held.

Why (Faust's gap check lets a one-offset hole through): docs/stream.md#acks
"""
from __future__ import annotations

from collections import deque


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

"""What the services write to their logs: no raw identifiers, no floods.

- ``hide_request_lines``: aiohttp logs a request it cannot parse with the parser's exception,
  whose message quotes the raw request line (``GET /v1/notifications/<raw account>``), and a
  traceback. The service logs the error's kind only.
- ``limit_repeats``: during a broker outage aiokafka and the services log the same error many
  times a second (~1 MB/s a service, measured). The first record of each kind (logger, level,
  message template) goes through; the repeats are only counted, and the next one after
  ``every_s`` goes through again saying how many were left out.
"""
from __future__ import annotations

import logging
import time

from aiohttp.http_exceptions import HttpProcessingError

REPEAT_WINDOW_S = 30.0
MAX_KINDS = 1000  # message templates come from the code: few; bounded all the same


class HideRequestLines(logging.Filter):
    """On aiohttp's server logger: a parse error is logged by its kind, without its message
    (the raw request line), its traceback or the client's address."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "malformed HTTP request refused (%s)", (type(exc).__name__,)
            record.exc_info = record.exc_text = None
        return True


class RepeatLimiter(logging.Filter):
    """Lets the first record of each kind through, then one every ``every_s`` with the count
    of those left out since (records below ``level`` always pass)."""

    def __init__(self, every_s: float = REPEAT_WINDOW_S, level: int = logging.WARNING):
        super().__init__()
        self.every_s, self.level = every_s, level
        self.kinds: dict[tuple, list] = {}  # kind -> [when one last went through, left out since]

    def filter(self, record: logging.LogRecord) -> bool:
        verdict = getattr(record, "_repeat_verdict", None)
        if verdict is not None:  # the same record at another handler: the same answer
            return verdict
        record._repeat_verdict = verdict = self._decide(record)
        return verdict

    def _decide(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        key, now = (record.name, record.levelno, str(record.msg)), time.monotonic()
        seen = self.kinds.get(key)
        if seen is not None and now - seen[0] < self.every_s:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            age = now - seen[0]
            record.msg = f"{record.msg} [and {seen[1]} more like it in the last {age:.1f} s]"
        if seen is None and len(self.kinds) >= MAX_KINDS:
            self.kinds.pop(next(iter(self.kinds)))
        self.kinds[key] = [now, 0]
        return True


def hide_request_lines() -> None:
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, HideRequestLines) for f in server.filters):
        server.addFilter(HideRequestLines())


def limit_repeats(every_s: float = REPEAT_WINDOW_S) -> RepeatLimiter:
    """Rate-limit repeated warnings and errors at every handler of the root logger (a filter on
    a logger would not see its children's records: aiokafka logs from a dozen modules)."""
    limiter = RepeatLimiter(every_s)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatLimiter) for f in handler.filters):
            handler.addFilter(limiter)
    return limiter

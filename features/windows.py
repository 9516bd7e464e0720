"""Time units, the feature windows and the few list helpers every family uses.

The window rule, used by every feature: an event at time ``e`` counts for a read at time ``t``
over a window of width ``W`` iff ``t - W <= e < t``. So an event exactly 10 minutes old is IN
the 10-minute window, and an event at the very millisecond of the transfer is OUT. The strict
upper bound makes a feature independent of how events sharing a millisecond are ordered (the
stream and the replay use the same tie-break, but a late event is ordered where it arrives),
and a transfer never counts itself even if it was already learnt.

Windowed data is kept in parallel lists of ints sorted by time, so a window is two bisects.

>>> count_in([0, 5, 10], t=10, width=10)  # 10 ms old: in; at the read's very ms: out
2
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right

SECOND = 1_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
MONTH = 30 * DAY  # the longest memory: amount history, pairs, devices, fraud links

WINDOWS = (("10m", 10 * MINUTE), ("1h", HOUR), ("24h", DAY), ("7d", WEEK))
NAN = float("nan")


def tag(key: str) -> int:
    """A 32-bit tag of a keyed hash ("a_<20 hex>"), for membership and distinct counts inside one
    entity's small lists (collision odds ~n²/2^33: negligible for a few hundred entries)."""
    return int(key[2:10], 16)


def span(ts: list[int], t: int, width: int) -> tuple[int, int]:
    """Indices [lo, hi) of the entries of sorted ``ts`` inside the window of ``width`` before t."""
    hi = bisect_left(ts, t)
    return bisect_left(ts, t - width, 0, hi), hi


def count_in(ts: list[int], t: int, width: int) -> int:
    lo, hi = span(ts, t, width)
    return hi - lo


def insert(cols: tuple[list[int], ...], row: tuple[int, ...]) -> None:
    """Insert ``row`` into parallel lists sorted by the first column (append when in order, which is
    almost always; a late event goes in its place, after equal times)."""
    ts = cols[0]
    if not ts or ts[-1] <= row[0]:
        for col, value in zip(cols, row):
            col.append(value)
    else:
        i = bisect_right(ts, row[0])
        for col, value in zip(cols, row):
            col.insert(i, value)


def drop_head(cols: tuple[list[int], ...], n: int) -> None:
    if n > 0:
        for col in cols:
            del col[:n]


"""Velocity: count, sum, max and distinct counterparties of transfers over exact sliding windows
(10 min, 1 h, 24 h, 7 d); the amount against the account's own history (its transfers of the last
30 days, the 20 most recent unless the last 7 days alone hold more: ratio to their median, z-score
with the spread floored at 10 % of the mean and 1 €); the sender's spending profile.

A ``Flow`` is one entity's transfers one way, as parallel int lists sorted by event time (relative
ms, see ``features.state``; cents). Exact rows live 7 days (and the amount history). An
``AccountFlow`` also keeps *day buckets* (start, count, sum, max) for 30 days: a bucket opens at a
transfer at least 24 h after the previous bucket's start (a late transfer joins the bucket whose
span holds it), so buckets depend on event times only, never on the base or on sweeps. A 30-day
read (``windows``, also the spending profile's) adds the buckets older than the last 7 days to the
exact rows: exact at the near edge (the read's own millisecond stays out), a bucket's resolution
(< 24 h) at the far edge.

>>> flow = Flow()
>>> flow.add(0, 500, 1, 0); flow.add(60_000, 700, 2, 0)
>>> v = flow.velocity(120_000, "recipients")
>>> v["count_10m"], v["sum_10m"], v["distinct_recipients_10m"]
(2.0, 1200.0, 2.0)
"""
from __future__ import annotations

from bisect import bisect_left
from functools import lru_cache
from operator import mul
from typing import ClassVar, Optional

from msgspec import Struct

from features.family import Family
from features.state import Buckets, Rows
from features.windows import DAY, MONTH, NAN, WEEK, WINDOWS, drop_head, insert, span

HISTORY = 20  # the amount baseline: the last 20 transfers of 30 d (and all those of 7 d)
MAX_ROWS = 2_000  # hard bound per flow: a flood keeps its newest rows, counts saturate here
STD_FLOOR_CENTS = 100
MAX_DAYS = 40  # day buckets per flow (30 days need at most 31; late transfers may add a few)

# flag bits stored with a transfer, decided when it is learnt
NEW_COUNTERPARTY = 1  # no earlier transfer between the two accounts
NO_CONVERSATION = 2  # no message between them before the transfer



class Flow(Struct, array_like=True, gc=False):
    """A device's or a card's transfers: the exact rows of 7 days."""
    ts: list[int] = []
    amount: list[int] = []
    cp: list[int] = []  # the counterparty's tag (recipient for outflows, sender for inflows)
    flags: list[int] = []
    days: list[int] = []  # day buckets, flat: start, count, sum, max (only with ``by_day``)

    TIMES = (Rows("ts", "amount", "cp", "flags"), Buckets("days", 4))  # swept by ``forget``
    HISTORY: ClassVar[int] = 0  # rows of 30 d kept beyond the 7 d for the amount baseline
    BY_DAY: ClassVar[bool] = False  # keeps the day buckets

    def add(self, t: int, amount: int, cp: int, flags: int, history: Optional[int] = None,
            by_day: Optional[bool] = None) -> None:
        history = self.HISTORY if history is None else history
        if self.BY_DAY if by_day is None else by_day:
            self._add_to_day(t, amount)
        ts = self.ts
        if not ts or ts[-1] <= t:  # in order: the usual case, kept cheap
            ts.append(t)
            self.amount.append(amount)
            self.cp.append(cp)
            self.flags.append(flags)
        else:
            insert((ts, self.amount, self.cp, self.flags), (t, amount, cp, flags))
        n = len(ts)
        if (ts[0] < t - WEEK and (n > history or ts[0] < t - MONTH)) or n > MAX_ROWS:
            self.sweep(t, history)

    def _add_to_day(self, t: int, amount: int) -> None:
        days = self.days
        if not days or t >= days[-4] + DAY:  # in order, a day after the last bucket opened
            days += (t, 1, amount, amount)
            if len(days) > 4 * MAX_DAYS:
                del days[:4]
            return
        i = len(days) - 4
        while i >= 0 and days[i] > t:  # a late transfer: the bucket whose span holds it
            i -= 4
        if i < 0:  # older than every bucket: one of its own in front
            days[0:0] = (t, 1, amount, amount)
        else:
            days[i + 1] += 1
            days[i + 2] += amount
            if amount > days[i + 3]:
                days[i + 3] = amount

    def sweep(self, t: int, history: int = 0) -> None:
        """Drop the rows no read at t or later can use (see ``kept``); never keep over MAX_ROWS.
        Day buckets go once their start is over 30 days old."""
        drop_head((self.ts, self.amount, self.cp, self.flags),
                  max(self.kept(t, history), len(self.ts) - MAX_ROWS))
        days = self.days
        if days:
            del days[:4 * bisect_left(days[0::4], t - MONTH)]

    def kept(self, t: int, history: int) -> int:
        """Index of the first row a read at t uses: every row of the last 7 d and, for the amount
        baseline, the last ``history`` rows of the last 30 d. It only grows with t, so what a
        sweep drops is never needed again, whenever the sweep happens."""
        ts = self.ts
        hi = bisect_left(ts, t)
        week, month = bisect_left(ts, t - WEEK, 0, hi), bisect_left(ts, t - MONTH, 0, hi)
        return min(week, max(hi - history, month))

    def forget(self, t: int, day: int) -> None:
        self.sweep(t, self.HISTORY)

    def velocity(self, t: int, counterparties: str) -> dict[str, float]:
        """count, sum, max, distinct counterparties, for each window."""
        ts, amount, cp = self.ts, self.amount, self.cp
        hi = bisect_left(ts, t)
        out = {}
        for (_, width), (count, total, top, distinct) in zip(WINDOWS, _keys(counterparties)):
            lo = bisect_left(ts, t - width, 0, hi)
            if lo == hi:  # the usual case for the short windows
                out[count] = out[total] = out[top] = out[distinct] = 0.0
                continue
            seg = amount[lo:hi]
            out[count] = float(hi - lo)
            out[total] = float(sum(seg))
            out[top] = float(max(seg))
            out[distinct] = float(len(set(cp[lo:hi])))
        return out

    def windows(self, t: int) -> Windows:
        """count, sum, max over 24 h and 7 d (exact rows) and 30 d (day buckets, then exact rows:
        see the module doc), the ``LONG_WINDOWS``."""
        ts, amount = self.ts, self.amount
        hi = bisect_left(ts, t)
        out = []
        for width in (DAY, WEEK):
            lo = bisect_left(ts, t - width, 0, hi)
            seg = amount[lo:hi]
            out.append((hi - lo, sum(seg), max(seg, default=0)))
        days = self.days
        if not days:
            out.append((0, 0, 0))
            return tuple(out)
        starts = days[0::4]
        recent = bisect_left(starts, t - WEEK)
        first = bisect_left(starts, t - MONTH, 0, recent)
        lo = bisect_left(ts, starts[recent], 0, hi) if recent < len(starts) else hi
        seg = amount[lo:hi]
        count, total, top = hi - lo, sum(seg), max(seg, default=0)
        for i in range(4 * first, 4 * recent, 4):
            count += days[i + 1]
            total += days[i + 2]
            if days[i + 3] > top:
                top = days[i + 3]
        out.append((count, total, top))
        return tuple(out)

    def baseline(self, t: int, amount: int) -> dict[str, float]:
        """This amount against the history: ratio to the 30-day median, z-score, history size."""
        lo, hi = self.kept(t, HISTORY), bisect_left(self.ts, t)
        n = hi - lo
        if n == 0:
            return {"amount_to_median_30d": NAN, "amount_zscore_30d": NAN,
                    "amount_history_30d": 0.0}
        hist = sorted(self.amount[lo:hi])
        mid = n // 2
        median = hist[mid] if n % 2 else (hist[mid - 1] + hist[mid]) / 2
        total = sum(hist)
        mean = total / n
        std = ((n * sum(map(mul, hist, hist)) - total * total) ** 0.5) / n  # exact in ints
        std = max(std, 0.1 * mean, STD_FLOOR_CENTS)
        return {"amount_to_median_30d": amount / median, "amount_zscore_30d": (amount - mean) / std,
                "amount_history_30d": float(n)}

    def cps_since(self, t: int, width: int, flag: int = 0) -> set[int]:
        """Distinct counterparties in the window, only those whose transfer carried ``flag``."""
        lo, hi = span(self.ts, t, width)
        if not flag:
            return set(self.cp[lo:hi])
        return {c for c, f in zip(self.cp[lo:hi], self.flags[lo:hi]) if f & flag}


class AccountFlow(Flow, array_like=True, gc=False):
    """An account's transfers one way: also the amount history and the 30 days' buckets."""
    HISTORY = HISTORY  # the module's
    BY_DAY = True


@lru_cache(maxsize=None)
def _keys(counterparties: str) -> tuple[tuple[str, str, str, str], ...]:
    """Per window: the names of its count, sum, max and distinct counterparties."""
    stats = ("count", "sum", "max", f"distinct_{counterparties}")
    return tuple(tuple(f"{stat}_{w}" for stat in stats) for w, _ in WINDOWS)


LONG_WINDOWS = ("24h", "7d", "30d")  # the windows of ``Flow.windows``
Windows = tuple[tuple[int, int, int], ...]  # (count, sum, max) per LONG_WINDOWS


def spending(stats: Windows) -> dict[str, float]:
    """The spending profile from the sent ``Flow.windows``: mean amount over 24 h, 7 d, 30 d (NaN
    without transfers), then the 30-day sum and max."""
    out = {f"out_mean_{w}": total / count if count else NAN
           for w, (count, total, _) in zip(LONG_WINDOWS, stats)}
    out["out_sum_30d"], out["out_max_30d"] = float(stats[-1][1]), float(stats[-1][2])
    return out


def _flow(account, role: str) -> Flow:
    return account.sent if role == "sender" else account.received


# the families an account gives (see ``features.family``)
VELOCITY = Family(lambda a, tr, t, role: _flow(a, role).velocity(
    t, "recipients" if role == "sender" else "senders"), "transfers")
BASELINE = Family(lambda a, tr, t, role: _flow(a, role).baseline(t, tr.amount_cents), "transfers",
                  warnings={"sender": dict.fromkeys(("amount_to_median_30d", "amount_zscore_30d"),
                                                    "unusual_amount")})
SPENDING = Family(lambda a, tr, t, role: spending(a.sent.windows(t)), "transfers")

"""Velocity: count, sum, max and distinct counterparties of transfers over exact sliding windows
(10 min, 1 h, 24 h, 7 d), for the sender, the recipient, the device and the card; and the amount
against the sender's own history: its transfers of the last 30 days, the 20 most recent unless
the last 7 days alone hold more (ratio to their median; z-score, with the spread floored at 10 %
of the mean and 1 € so that a flat history gives finite values).

A ``Flow`` is one entity's transfers in one direction, as parallel int lists sorted by event time
(ms, relative to the state's base, see ``features.state``). Amounts are in cents.
"""
from __future__ import annotations

from bisect import bisect_left
from functools import lru_cache
from operator import mul

from msgspec import Struct

from features.windows import MONTH, NAN, WEEK, WINDOWS, drop_head, insert, span

HISTORY = 20  # the amount baseline: the last 20 transfers of 30 d (and all those of 7 d)
MAX_ROWS = 2_000  # hard bound per flow: a flood keeps its newest rows, counts saturate here
STD_FLOOR_CENTS = 100

# flag bits stored with a transfer, decided when it is learnt
NEW_COUNTERPARTY = 1  # no earlier transfer between the two accounts
NO_CONVERSATION = 2  # no message between them before the transfer


WIDTHS = tuple(width for _, width in WINDOWS)
_EMPTY = (0.0, 0.0, 0.0, 0.0)


class Flow(Struct, array_like=True, gc=False):
    ts: list[int] = []
    amount: list[int] = []
    cp: list[int] = []  # the counterparty's tag (recipient for outflows, sender for inflows)
    flags: list[int] = []

    def add(self, t: int, amount: int, cp: int, flags: int, history: int = 0) -> None:
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

    def sweep(self, t: int, history: int = 0) -> None:
        """Drop the rows no read at t or later can use (see ``kept``); never keep over MAX_ROWS."""
        drop_head((self.ts, self.amount, self.cp, self.flags),
                  max(self.kept(t, history), len(self.ts) - MAX_ROWS))

    def kept(self, t: int, history: int) -> int:
        """Index of the first row a read at t uses: every row of the last 7 d and, for the amount
        baseline, the last ``history`` rows of the last 30 d. It only grows with t, so what a
        sweep drops is never needed again, whenever the sweep happens."""
        ts = self.ts
        hi = bisect_left(ts, t)
        week, month = bisect_left(ts, t - WEEK, 0, hi), bisect_left(ts, t - MONTH, 0, hi)
        return min(week, max(hi - history, month))

    def shift(self, d: int) -> None:
        self.ts[:] = [x - d for x in self.ts]

    def velocity(self, t: int) -> list[float]:
        """count, sum, max, distinct counterparties, for each window (the order of ``names``)."""
        ts, amount, cp = self.ts, self.amount, self.cp
        hi = bisect_left(ts, t)
        out = []
        for width in WIDTHS:
            lo = bisect_left(ts, t - width, 0, hi)
            if lo == hi:
                out += _EMPTY
            else:
                seg = amount[lo:hi]
                out += (float(hi - lo), float(sum(seg)), float(max(seg)),
                        float(len(set(cp[lo:hi]))))
        return out

    def baseline(self, t: int, amount: int) -> list[float]:
        """This amount against the history: ratio to the 30-day median, z-score, history size."""
        lo, hi = self.kept(t, HISTORY), bisect_left(self.ts, t)
        n = hi - lo
        if n == 0:
            return [NAN, NAN, 0.0]
        hist = sorted(self.amount[lo:hi])
        mid = n // 2
        median = hist[mid] if n % 2 else (hist[mid - 1] + hist[mid]) / 2
        total = sum(hist)
        mean = total / n
        std = ((n * sum(map(mul, hist, hist)) - total * total) ** 0.5) / n  # exact in ints
        std = max(std, 0.1 * mean, STD_FLOOR_CENTS)
        return [amount / median, (amount - mean) / std, float(n)]

    def cps_since(self, t: int, width: int, flag: int = 0) -> set[int]:
        """Distinct counterparties in the window, only those whose transfer carried ``flag``."""
        lo, hi = span(self.ts, t, width)
        if not flag:
            return set(self.cp[lo:hi])
        return {c for c, f in zip(self.cp[lo:hi], self.flags[lo:hi]) if f & flag}

    def empty(self) -> bool:
        return not self.ts


@lru_cache(maxsize=None)
def names(prefix: str, cp_name: str) -> tuple[str, ...]:
    return tuple(f"{prefix}_{stat}_{w}" for w, _ in WINDOWS
                 for stat in ("count", "sum", "max", f"distinct_{cp_name}"))


def baseline_names(prefix: str) -> tuple[str, ...]:
    return (f"{prefix}_amount_to_median_30d", f"{prefix}_amount_zscore_30d",
            f"{prefix}_amount_history_30d")

"""Counterparty risk from delayed labels: how much of what an account sent and received lately
turned out to be fraud, as known now.

A mule or a compromised account keeps receiving fraudulent transfers for days after the first ones
are reported; the labels say so long before the account itself is judged. Each account keeps, per
direction, the transfers of the last 30 days (by transfer time) that a label confirms fraudulent:
(the transfer's time, a 32-bit tag of its id). A label takes effect at ``known_at``, as events
are applied in that order, so a transfer decided before the label came sees nothing of it.

Which labels count: any label naming a transfer (``transfer_id``) tells both its parties when
it carries them (``Label.sender`` / ``recipient``, routed in ``features.routing``). ``is_fraud``
marks the transfer fraudulent, a later label with ``is_fraud`` False (an analyst's "legitimate")
clears it: the latest known wins, as in ``models.labels.label_transfers``. Two labels on one
transfer count it once. The transfer's time is the label's ``ts`` (when the fraud happened).

Features, for the sender's and the recipient's account (p), inbound and outbound (d), over
24 h, 7 d and 30 d (w): ``{p}_{d}_count_{w}`` every transfer (``velocity.Flow.windows``),
``{p}_{d}_fraud_{w}`` those known fraudulent, ``{p}_{d}_fraud_share_{w}`` (NaN without transfers,
at most 1: the 30-day count's far edge is at a day bucket's resolution), and
``{p}_{d}_hours_since_fraud`` (the newest known-fraudulent transfer of 30 days; NaN if none).
"""
from __future__ import annotations

import zlib
from bisect import bisect_left

from msgspec import Struct

from features.family import Family
from features.state import Rows
from features.velocity import LONG_WINDOWS, Windows
from features.windows import DAY, HOUR, MONTH, NAN, WEEK, count_in, drop_head, insert

MAX_ROWS = 64  # known-fraudulent transfers kept per direction (the newest)
_WIDTHS = (DAY, WEEK, MONTH)  # LONG_WINDOWS
DIRECTIONS = ("in", "out")


def transfer_tag(transfer_id: str) -> int:
    """32 bits of a transfer id (ids are not keyed hashes: CRC-32, stable across processes)."""
    return zlib.crc32(transfer_id.encode())


class Risk(Struct, array_like=True, gc=False):
    in_ts: list[int] = []  # known-fraudulent transfers received: time (relative ms), sorted
    in_tx: list[int] = []  # ...and the tag of their id
    out_ts: list[int] = []  # the same for transfers sent
    out_tx: list[int] = []

    TIMES = (Rows("in_ts", "in_tx", keep=MONTH), Rows("out_ts", "out_tx", keep=MONTH))

    def on_label(self, label, ts: int, now: int, outbound: bool) -> None:
        """Learn ``label`` (read at relative time ``now``) about a transfer of relative time
        ``ts`` that this account sent (``outbound``) or received."""
        if label.transfer_id is None:
            return
        cols = (self.out_ts, self.out_tx) if outbound else (self.in_ts, self.in_tx)
        tx = transfer_tag(label.transfer_id)
        if tx in cols[1]:  # a second label on the same transfer: the latest known wins
            i = cols[1].index(tx)
            for col in cols:
                del col[i]
        if label.is_fraud and ts >= now - MONTH:
            insert(cols, (ts, tx))
            drop_head(cols, len(cols[0]) - MAX_ROWS)

    def features(self, inbound: Windows, outbound: Windows, t: int) -> dict[str, float]:
        """``inbound`` / ``outbound``: the account's received and sent ``Flow.windows(t)``."""
        out = {}
        for d, stats, fraud_ts in (("in", inbound, self.in_ts), ("out", outbound, self.out_ts)):
            keys = _KEYS[d]
            if not fraud_ts:  # the usual case
                for (count, _, _), (n, fraud, share) in zip(stats, keys):
                    out[n], out[fraud], out[share] = float(count), 0.0, 0.0 if count else NAN
                out[_SINCE[d]] = NAN
                continue
            for (count, _, _), width, (n, fraud, share) in zip(stats, _WIDTHS, keys):
                k = count_in(fraud_ts, t, width)
                out[n], out[fraud] = float(count), float(k)
                out[share] = min(k / count, 1.0) if count else NAN
            i = bisect_left(fraud_ts, t)
            newest = fraud_ts[i - 1] if i else None
            out[_SINCE[d]] = ((t - newest) / HOUR if newest is not None and newest >= t - MONTH
                              else NAN)
        return out


# names per direction: (count, fraud, fraud share) per LONG_WINDOWS, then the hours since fraud
_KEYS = {d: [tuple(f"{d}_{stat}_{w}" for stat in ("count", "fraud", "fraud_share"))
             for w in LONG_WINDOWS] for d in DIRECTIONS}
_SINCE = {d: f"{d}_hours_since_fraud" for d in DIRECTIONS}

# the counts read transfers only; the rest need labels
RISK = Family(lambda a, tr, t, role: a.risk.features(a.received.windows(t), a.sent.windows(t), t),
              "labels", sources=dict.fromkeys((n for d in DIRECTIONS for n, _, _ in _KEYS[d]),
                                              "transfers"))

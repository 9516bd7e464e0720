"""Conversation and assistant signals, read from the sender's account state.

An account's state sees every message it sends (msg_out) and receives (msg_in), so it holds one
``Pair`` per counterparty: how old the conversation is, messages each way per UTC day, who raised
money first, transfers each way. Messages carrying a signal (money talk, money request, urgency,
link) are also kept for an hour in ``Chat.hot``, and assistant suggestions for a day.

Message counts "in the last 7 d" are by UTC day (today and the six days before): exact
per-message timestamps would cost ~5 bytes a message; a day bucket costs 3 ints a day.
A pair silent for 30 days is forgotten: it counts as a new conversation afterwards.
"""
from __future__ import annotations

import zlib
from typing import Optional

from msgspec import Struct

from features.family import Family
from features.state import Moment, Nested, Rows
from features.windows import DAY, HOUR, NAN, drop_head, insert, span, tag

PAIR_TTL_DAYS = 30
MAX_PAIRS = 256  # a spammer's state stays bounded: the least recently active pair goes first
SUGGESTION_TTL = DAY

# message signal bits (Chat.hot)
OUT, MONEY, REQUEST, URGENT, LINK = 1, 2, 4, 8, 16
# assistant bits (Chat.sugg)
SUGGESTED, ACCEPTED, EDITED, DECLINED = 1, 2, 4, 8
_ASSISTANT_BITS = {"suggested": SUGGESTED, "accepted": ACCEPTED, "edited": EDITED,
                   "declined": DECLINED}


def pair_key(account: str) -> bytes:
    """The 80 bits of an account hash: the full id comes back as "a_" + key.hex()."""
    return bytes.fromhex(account[2:])


def suggestion_tag(suggestion_id: str) -> int:
    return zlib.crc32(suggestion_id.encode())


class Pair(Struct, array_like=True, gc=False):
    last_day: int  # UTC day of the last message or transfer, for the 30-day expiry
    first_msg: Optional[int] = None  # ms (relative) of the first message either way
    money_first: int = 0  # who raised money first: 0 nobody yet, 1 this account, 2 the other
    tx_out: int = 0  # transfers this account made to the other
    tx_in: int = 0
    days: list[int] = []  # [day, messages out, messages in] * the last 7 UTC days

    TIMES = (Moment("first_msg"),)  # last_day and days are UTC days, not relative times

    def count_msg(self, day: int, out: bool) -> None:
        days = self.days
        i = len(days) - 3
        while i >= 0 and days[i] > day:  # a late message: find its day (at most 7 buckets)
            i -= 3
        if i >= 0 and days[i] == day:
            days[i + (1 if out else 2)] += 1
        else:
            days[i + 3:i + 3] = (day, 1, 0) if out else (day, 0, 1)
        while days and days[0] <= day - 7:
            del days[:3]

    def msgs_7d(self, day: int) -> tuple[float, float]:
        out = inn = 0
        days = self.days
        for i in range(0, len(days), 3):
            if day - 7 < days[i] <= day:
                out += days[i + 1]
                inn += days[i + 2]
        return float(out), float(inn)


class Chat(Struct, array_like=True, gc=False):
    pairs: dict[bytes, Pair] = {}
    hot_ts: list[int] = []  # messages with a signal, for one hour
    hot_cp: list[int] = []
    hot_bits: list[int] = []
    sugg_ts: list[int] = []  # assistant events, for one day
    sugg_id: list[int] = []
    sugg_cp: list[int] = []
    sugg_bits: list[int] = []

    TIMES = (Rows("hot_ts", "hot_cp", "hot_bits", keep=HOUR),
             Rows("sugg_ts", "sugg_id", "sugg_cp", "sugg_bits", keep=SUGGESTION_TTL),
             Nested("pairs"))

    # --- learning -------------------------------------------------------------------------
    def pair(self, account: str, day: int) -> tuple[Pair, bool]:
        """The live pair with ``account`` (created or restarted when missing or expired)."""
        key = pair_key(account)
        p = self.pairs.get(key)
        if p is not None and p.last_day >= day - PAIR_TTL_DAYS:
            if day > p.last_day:
                p.last_day = day
            return p, False
        if p is None and len(self.pairs) >= MAX_PAIRS:
            del self.pairs[min(self.pairs, key=lambda k: self.pairs[k].last_day)]
        p = self.pairs[key] = Pair(last_day=day)
        return p, True

    def on_message(self, msg, t: int, out: bool) -> bool:
        """Learn one message; True when it opened a new pair."""
        day = msg.ts // DAY
        other = msg.recipient if out else msg.sender
        p, new = self.pair(other, day)
        if p.first_msg is None or t < p.first_msg:
            p.first_msg = t
        days = p.days
        if days and days[-3] == day:  # another message today: the usual case, kept cheap
            days[-2 if out else -1] += 1
        else:
            p.count_msg(day, out)
        if msg.money_talk or msg.money_request or msg.urgency or msg.has_link:
            if msg.money_talk and not p.money_first:
                p.money_first = 1 if out else 2
            bits = ((MONEY if msg.money_talk else 0) | (REQUEST if msg.money_request else 0)
                    | (URGENT if msg.urgency else 0) | (LINK if msg.has_link else 0))
            self._trim_hot(t)
            insert((self.hot_ts, self.hot_cp, self.hot_bits),
                   (t, tag(other), bits | (OUT if out else 0)))
        return new

    def on_transfer(self, other: str, ts: int, out: bool) -> tuple[Pair, bool]:
        p, new = self.pair(other, ts // DAY)
        if out:
            p.tx_out += 1
        else:
            p.tx_in += 1
        return p, new

    def on_assistant(self, ev, t: int) -> None:
        bits = _ASSISTANT_BITS[ev.kind] | (EDITED if ev.amount_edited or ev.recipient_edited else 0)
        cols = (self.sugg_ts, self.sugg_id, self.sugg_cp, self.sugg_bits)
        drop_head(cols, span(self.sugg_ts, t, SUGGESTION_TTL)[0])
        insert(cols, (t, suggestion_tag(ev.suggestion_id), tag(ev.counterparty), bits))

    def _trim_hot(self, t: int) -> None:
        if self.hot_ts and self.hot_ts[0] < t - HOUR:
            drop_head((self.hot_ts, self.hot_cp, self.hot_bits), span(self.hot_ts, t, HOUR)[0])

    def forget(self, t: int, day: int) -> None:
        """Pairs silent for 30 days, and message days out of the last 7."""
        for key in [k for k, p in self.pairs.items() if p.last_day < day - PAIR_TTL_DAYS]:
            del self.pairs[key]
        for p in self.pairs.values():
            while p.days and p.days[0] <= day - 7:
                del p.days[:3]

    # --- reading --------------------------------------------------------------------------
    def live_pair(self, account: str, day: int) -> Optional[Pair]:
        p = self.pairs.get(pair_key(account))
        return p if p is not None and p.last_day >= day - PAIR_TTL_DAYS else None

    def counterparties(self, day: int, limit: int) -> list[str]:
        """The live counterparties, most recently active first: who a fraud label is told to."""
        live = [(p.last_day, k) for k, p in self.pairs.items() if p.last_day >= day - PAIR_TTL_DAYS]
        live.sort(reverse=True)
        return ["a_" + k.hex() for _, k in live[:limit]]

    def signals_1h(self, t: int, cp: int) -> tuple[float, float, float, float]:
        """Messages of the pair in the last hour: money talk, money requests from the other side,
        urgency, links."""
        lo, hi = span(self.hot_ts, t, HOUR)
        money = request_in = urgent = link = 0
        for c, b in zip(self.hot_cp[lo:hi], self.hot_bits[lo:hi]):
            if c == cp:
                money += (b & MONEY) != 0
                request_in += (b & (REQUEST | OUT)) == REQUEST
                urgent += (b & URGENT) != 0
                link += (b & LINK) != 0
        return float(money), float(request_in), float(urgent), float(link)

    def requests_out_1h(self, t: int) -> int:
        """Distinct contacts this account asked for money in the last hour (account takeover)."""
        lo, hi = span(self.hot_ts, t, HOUR)
        return len({c for c, b in zip(self.hot_cp[lo:hi], self.hot_bits[lo:hi])
                    if b & (REQUEST | OUT) == REQUEST | OUT})

    def pair_features(self, tr, t: int) -> dict[str, float]:
        p = self.live_pair(tr.recipient, tr.ts // DAY)
        talked = p is not None and p.first_msg is not None and p.first_msg < t
        msgs_out, msgs_in = p.msgs_7d(tr.ts // DAY) if p is not None else (0.0, 0.0)
        money, request_in, urgent, link = self.signals_1h(t, tag(tr.recipient))
        return {
            "pair_age_hours": (t - p.first_msg) / HOUR if talked else NAN,
            "pair_msgs_out_7d": msgs_out, "pair_msgs_in_7d": msgs_in,
            "pair_payee_raised_money_first":
                float(p.money_first == 2) if p is not None and p.money_first else NAN,
            "pair_money_msgs_1h": money, "pair_money_requests_in_1h": request_in,
            "pair_urgent_msgs_1h": urgent, "pair_link_msgs_1h": link,
            "pair_prior_transfers_out": float(p.tx_out) if p is not None else 0.0,
            "pair_prior_transfers_in": float(p.tx_in) if p is not None else 0.0,
            "no_prior_conversation": 0.0 if talked else 1.0,
            "first_transfer_to_recipient": 0.0 if p is not None and p.tx_out else 1.0,
        }

    def assistant_features(self, tr, t: int) -> dict[str, float]:
        """Was the suggestion the transfer claims really shown to the sender, for this payee, and
        did the sender edit it."""
        bits, other = 0, False
        if tr.suggestion_id is not None:
            sid, payee = suggestion_tag(tr.suggestion_id), tag(tr.recipient)
            lo, hi = span(self.sugg_ts, t, SUGGESTION_TTL)
            rows = zip(self.sugg_id[lo:hi], self.sugg_cp[lo:hi], self.sugg_bits[lo:hi])
            for s_id, s_cp, s_bits in rows:
                if s_id == sid:
                    bits |= s_bits
                    other = other or (s_bits & SUGGESTED > 0 and s_cp != payee)
        return {"suggestion_seen": float(bits & SUGGESTED > 0),
                "suggestion_for_other_payee": float(other),
                "suggestion_edited": float(bits & EDITED > 0)}


# the families an account gives (see ``features.family``): the pair's messages, but its prior
# transfers; the sender is warned of a payee it never talked to or paid, and of pressure
PAIR = Family(lambda a, tr, t, role: a.chat.pair_features(tr, t), "messages",
              sources=dict.fromkeys(("pair_prior_transfers_out", "pair_prior_transfers_in",
                                     "first_transfer_to_recipient"), "transfers"),
              warnings={"sender": {
                  **dict.fromkeys(("no_prior_conversation", "first_transfer_to_recipient",
                                   "pair_age_hours"), "first_contact_payee"),
                  "pair_urgent_msgs_1h": "urgency", "pair_money_requests_in_1h": "money_request",
                  "pair_link_msgs_1h": "link_shared"}})
ASSISTANT = Family(lambda a, tr, t, role: a.chat.assistant_features(tr, t), "assistant")

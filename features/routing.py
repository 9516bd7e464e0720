"""Which entity states an event updates, in which role, and in which order events are applied.

Every event is routed to the entities it touches, each (kind, key) with kind in account, device,
card, ip; a worker holds the states of the entities in its partitions. ``routes`` is the only
place that knows this, for the stream and for the replay.

An entity gets ONE role per event (the idempotence guard, ``seq`` in the replay and the source
offset in the stream, skips a second route of the same event to the same key). A Label naming its
transfer's ``sender`` goes to the sender as ``label_sent``, to a different recipient as
``label_received``, and to ``account`` as ``label`` only if it is neither; without ``sender``,
to ``account`` as ``label`` (see ``features.account``).

Derived events (``NeighbourFlagged``, returned by ``learn_one``) are routed the same way and
applied right after the event that caused them, in the order returned: the replay does exactly
that; the stream publishes them and applies them when they come back (so it may lag a few ms).

Order (the replay's, and the stream's through ``pipelines/stream/watermarks.py``): by event time
(``known_at`` for a Label, ``ts`` otherwise), then by topic in ``TOPIC_ORDER``, then by event
id. Windows leave out events at the very millisecond of a transfer, so the tie-break hardly
matters: only counters (prior transfers of a pair, a device's last sighting) can see an event
sharing the millisecond.

>>> from features.family import PROBE  # a transfer with a device, a card and an IP
>>> [kind for kind, _, role in routes(PROBE)]
['account', 'account', 'device', 'card', 'ip']
"""
from __future__ import annotations

from features.account import AccountState
from features.graph import NeighbourFlagged
from features.links import CardState, DeviceState, IpState
from pipelines.contracts import schemas as s

STATE_CLASSES = {cls.KIND: cls for cls in (AccountState, DeviceState, CardState, IpState)}
# the same tie-break as pipelines.lake.event_log.FEATURE_TOPICS (the lake reader)
TOPIC_ORDER = {s.AccountEvent: 0, s.MessageSent: 1, s.AssistantEvent: 2, s.TransferRequested: 3,
               s.Label: 4, NeighbourFlagged: 5}


def _message(m):
    return [("account", m.sender, "msg_out"), ("account", m.recipient, "msg_in")]


def _account_event(e):
    out = [("account", e.account, "security")]
    for kind, key in (("device", e.device), ("ip", e.ip), ("card", e.card)):
        if key is not None:
            out.append((kind, key, "seen"))
    return out


def _label(lb):
    if lb.sender is None:
        return [("account", lb.account, "label")]
    out = [("account", lb.sender, "label_sent")]
    if lb.recipient is not None and lb.recipient != lb.sender:
        out.append(("account", lb.recipient, "label_received"))
    if lb.account != lb.sender and lb.account != lb.recipient:
        out.append(("account", lb.account, "label"))
    return out


def _transfer(tr):
    out = [("account", tr.sender, "sender"), ("account", tr.recipient, "recipient")]
    for kind, key in (("device", tr.device), ("card", tr.card), ("ip", tr.ip)):
        if key is not None:
            out.append((kind, key, "transfer"))
    return out


_ROUTERS = {
    s.MessageSent: _message,
    s.AccountEvent: _account_event,
    s.TransferRequested: _transfer,
    # the counterparty learns nothing from a suggestion it never sees
    s.AssistantEvent: lambda a: [("account", a.user, "assistant")],
    s.Label: _label,
    NeighbourFlagged: lambda n: [("account", n.account, "neighbour_flagged")],
}


def routes(event) -> list[tuple[str, str, str]]:
    """(entity kind, key, role) for each state the event updates; [] for events features ignore
    (decisions, statuses, analyst actions...)."""
    router = _ROUTERS.get(type(event))
    return router(event) if router is not None else []


def event_time(event) -> int:
    return event.known_at if type(event) is s.Label else event.ts


def order_key(event) -> tuple[int, int, str]:
    return event_time(event), TOPIC_ORDER.get(type(event), 9), event.id


def new_state(kind: str):
    return STATE_CLASSES[kind]()

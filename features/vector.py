"""The feature vector of a transfer: its own attributes plus what each entity it touches gives.

``FEATURE_NAMES`` is the full, ordered list; the model uses this order. Every value is a float:
booleans are 0/1, and a missing value is NaN (no history, no device on the transfer, an entity
the stream could not reach...), which LightGBM treats as missing.
"""
from __future__ import annotations

from features.routing import STATE_CLASSES, routes
from features.windows import DAY, HOUR, NAN

TRANSFER_NAMES = (
    "transfer_amount_cents", "transfer_suggested", "transfer_amount_edited",
    "transfer_recipient_edited", "transfer_has_conversation", "transfer_has_device",
    "transfer_has_card", "transfer_payout_delay_hours", "transfer_to_self",
)


def transfer_part(tr) -> dict[str, float]:
    """What the transfer says about itself, with no state."""
    return dict(zip(TRANSFER_NAMES, (
        float(tr.amount_cents), float(tr.suggestion_id is not None), float(tr.amount_edited),
        float(tr.recipient_edited), float(tr.conversation is not None),
        float(tr.device is not None), float(tr.card is not None),
        min(tr.payout_due_ts - tr.ts, 30 * DAY) / HOUR, float(tr.sender == tr.recipient),
    )))


FEATURE_NAMES: tuple[str, ...] = (
    TRANSFER_NAMES
    + STATE_CLASSES["account"].feature_names("sender")
    + STATE_CLASSES["account"].feature_names("recipient")
    + STATE_CLASSES["device"].feature_names()
    + STATE_CLASSES["card"].feature_names()
    + STATE_CLASSES["ip"].feature_names()
)
assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES), "a feature name is defined twice"


def combine(parts: list[dict[str, float]]) -> dict[str, float]:
    """One dict per entity (and ``transfer_part``) -> the full vector in FEATURE_NAMES order,
    NaN for whatever no part gave."""
    merged = dict.fromkeys(FEATURE_NAMES, NAN)  # fixes the order; parts fill in their values
    for part in parts:
        merged.update(part)
    return merged

def parts_of(tr, state_of, owns=None) -> list[dict[str, float]]:
    """What each entity of the transfer gives it, read before the transfer is learnt.
    ``state_of(kind, key)`` returns the state (a fresh one for an unknown key); ``owns(key)``, when
    given, keeps only the entities this process holds (a sharded replay, a stream worker)."""
    return [state_of(kind, key).features_for(tr, role) for kind, key, role in routes(tr)
            if owns is None or owns(key)]


def features_of(tr, state_of) -> dict[str, float]:
    """The full vector when every state is at hand (the replay; a single worker)."""
    return combine(parts_of(tr, state_of) + [transfer_part(tr)])

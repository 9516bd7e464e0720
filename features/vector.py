"""The feature vector of a transfer: its own attributes plus what each entity it touches gives.

``FEATURE_NAMES`` is the full, ordered list; the model uses this order. It, the in-chat
``WARNING_CODES`` and ``features.sources.FEATURE_FAMILY`` are derived from the families each
entity state reads (``READS``, see ``features.family``): adding a feature is adding it to its
family's read. Every value is a float: booleans are 0/1, and a missing value is NaN (no history,
no device on the transfer, an entity the stream could not reach...), which LightGBM treats as
missing.

>>> FEATURE_NAMES[:2], WARNING_CODES["recipient_confirmed_fraud"]
(('transfer_amount_cents', 'transfer_suggested'), 'payee_reported')
"""
from __future__ import annotations

from features.family import PROBE, Family, declared
from features.routing import STATE_CLASSES, routes
from features.windows import DAY, HOUR, NAN


def transfer_part(tr) -> dict[str, float]:
    """What the transfer says about itself, with no state."""
    return {
        "transfer_amount_cents": float(tr.amount_cents),
        "transfer_suggested": float(tr.suggestion_id is not None),
        "transfer_amount_edited": float(tr.amount_edited),
        "transfer_recipient_edited": float(tr.recipient_edited),
        "transfer_has_conversation": float(tr.conversation is not None),
        "transfer_has_device": float(tr.device is not None),
        "transfer_has_card": float(tr.card is not None),
        "transfer_payout_delay_hours": min(tr.payout_due_ts - tr.ts, 30 * DAY) / HOUR,
        "transfer_to_self": float(tr.sender == tr.recipient),
    }


TRANSFER = Family(lambda state, tr, t, role: transfer_part(tr), "transfers", sources={
    # edits of an assistant's suggestion
    **dict.fromkeys(("transfer_suggested", "transfer_amount_edited", "transfer_recipient_edited"),
                    "assistant"),
    "transfer_has_conversation": "messages",
    "transfer_has_device": "devices", "transfer_has_card": "devices"})
TRANSFER_NAMES = tuple(transfer_part(PROBE))

# the entity parts of the vector, in its order
PARTS = (("account", "sender"), ("account", "recipient"), ("device", "transfer"),
         ("card", "transfer"), ("ip", "transfer"))
# (name, family, suffix, role) of every feature, in FEATURE_NAMES order
DECLARED: tuple[tuple[str, Family, str, str], ...] = (
    tuple((name, TRANSFER, name, "transfer") for name in TRANSFER_NAMES)
    + tuple((name, family, suffix, role) for kind, role in PARTS
            for name, family, suffix in declared(STATE_CLASSES[kind], role)))

FEATURE_NAMES: tuple[str, ...] = tuple(name for name, _, _, _ in DECLARED)
assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES), "a feature name is defined twice"

# The in-chat warning, chosen from the strongest reason that has one (exact feature names).
WARNING_CODES: dict[str, str] = {
    name: family.warning(role, suffix) for name, family, suffix, role in DECLARED
    if family.warning(role, suffix) is not None}


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

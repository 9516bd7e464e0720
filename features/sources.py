"""The source families an event history may hold, and which features each family feeds.

A history is normal whatever families it lacks: a payment provider's export often holds only
transfers and labels. A model is trained on the features of the families its history holds;
features of an absent family are left out (never fed as all-null).

``FEATURE_FAMILY`` maps every name of ``features.vector.FEATURE_NAMES`` to the one family it needs
beyond transfers (a feature of transfers alone: "transfers"), built from each family's own name
functions; ``features_for_sources`` is what a history holding some families can feed a model.
"""
from __future__ import annotations

from features import conversation, graph, risk, security, velocity
from features.routing import STATE_CLASSES
from features.vector import FEATURE_NAMES, TRANSFER_NAMES

# transfers: transfer requests; labels: delayed fraud labels; accounts: sign-ups;
# devices: logins, devices, cards, IPs (account-security events); messages: chat metadata;
# assistant: payment suggestions and their outcomes.
FAMILIES = ("transfers", "labels", "accounts", "devices", "messages", "assistant")

_TRANSFER_PART = {
    "transfer_amount_cents": "transfers", "transfer_payout_delay_hours": "transfers",
    "transfer_to_self": "transfers",
    "transfer_suggested": "assistant", "transfer_amount_edited": "assistant",
    "transfer_recipient_edited": "assistant",  # edits of an assistant's suggestion
    "transfer_has_conversation": "messages",
    "transfer_has_device": "devices", "transfer_has_card": "devices",
}
# conversation.names: the pair's messages, but its prior transfers and the suggestion check
_PAIR_TRANSFERS = ("pair_prior_transfers_out", "pair_prior_transfers_in",
                   "first_transfer_to_recipient")
_SUGGESTION = ("suggestion_seen", "suggestion_for_other_payee", "suggestion_edited")


def _account(p: str) -> dict[str, str]:
    out = dict.fromkeys(velocity.names(p, "recipients" if p == "sender" else "senders")
                        + velocity.baseline_names(p) + risk.count_names(p), "transfers")
    if p == "sender":
        out.update(dict.fromkeys(velocity.spending_names(p), "transfers"))
    for name in conversation.names(p):
        suffix = name[len(p) + 1:]
        out[name] = ("transfers" if suffix in _PAIR_TRANSFERS
                     else "assistant" if suffix in _SUGGESTION else "messages")
    out.update(dict.fromkeys(security.names(p, p == "sender"), "devices"))
    out[f"{p}_account_age_days"] = "accounts"
    out.update(dict.fromkeys(graph.fraud_names(p), "labels"))
    out.update({n: "labels" for n in risk.names(p) if n not in out})
    out.update({
        f"{p}_minutes_since_last_inbound": "transfers", f"{p}_new_recipients_24h": "transfers",
        f"{p}_money_requests_out_1h": "messages",
        # "new" senders are those who never wrote first: without messages, every sender is new
        f"{p}_new_senders_share_24h": "messages",
        f"{p}_forwarded_share_30m_7d": "transfers", f"{p}_min_forward_minutes_7d": "transfers",
    })
    return out


def _build() -> dict[str, str]:
    out = dict(_TRANSFER_PART)
    out.update(_account("sender"))
    out.update(_account("recipient"))
    for kind in ("device", "card", "ip"):  # hashes carried by transfers and security events
        out.update(dict.fromkeys(STATE_CLASSES[kind].feature_names(), "devices"))
    return {name: out[name] for name in FEATURE_NAMES if name in out}


FEATURE_FAMILY: dict[str, str] = _build()
assert set(TRANSFER_NAMES) <= set(_TRANSFER_PART)


def features_for_sources(present: set[str]) -> list[str]:
    """The features a history holding the families ``present`` can feed, in FEATURE_NAMES order
    (a family outside FAMILIES is refused)."""
    unknown = set(present) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown source families {sorted(unknown)}; known: {FAMILIES}")
    return [name for name, family in FEATURE_FAMILY.items() if family in present]

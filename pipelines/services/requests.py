"""What the thin services accept over HTTP, and how each request becomes an event.

Requests carry raw identifiers and (for messages) the text; the events built here carry
only keyed hashes and derived signals. The services and the offline simulator both build
events through these functions, so the offline event log is exactly what live traffic
would have produced.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional

from msgspec import Meta, Struct

from features.message_signals import derive
from pipelines.contracts import schemas as s
from pipelines.contracts.privacy import pseudonymize

RawId = Annotated[str, Meta(min_length=1, max_length=128)]
Text = Annotated[str, Meta(max_length=4096)]


class Request(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    pass


class MessageRequest(Request):
    sender: RawId
    recipient: RawId
    conversation: RawId
    text: Text


class AccountEventRequest(Request):
    account: RawId
    kind: s.AccountEventKind
    device: Optional[RawId] = None
    ip: Optional[RawId] = None
    country: Optional[s.Country] = None
    card_number: Optional[Annotated[str, Meta(pattern=r"^[0-9 ]{12,23}$")]] = None
    bank_account: Optional[RawId] = None  # IBAN


class TransferRequest(Request):
    sender: RawId
    recipient: RawId
    amount_cents: s.Cents
    currency: s.Currency = "EUR"
    conversation: Optional[RawId] = None
    device: Optional[RawId] = None
    ip: Optional[RawId] = None
    card_number: Optional[Annotated[str, Meta(pattern=r"^[0-9 ]{12,23}$")]] = None
    suggestion_id: Optional[s.EventId] = None
    amount_edited: bool = False
    recipient_edited: bool = False


class SuggestionResponseRequest(Request):
    user: RawId
    response: Literal["accepted", "edited", "declined"]
    amount_cents: Optional[s.Cents] = None  # the amount the user kept or typed
    recipient_edited: bool = False


class ScamReportRequest(Request):
    """A user reports a scam: ``reported`` scammed ``reporter``; ``transfer_id``, when given, is
    a payment between the two (the messaging service refuses one the reporter is not a party
    to, or whose other party is not ``reported``)."""
    reporter: RawId
    reported: RawId
    transfer_id: Optional[s.TransferId] = None
    category: Optional[s.Code] = None  # e.g. "romance", "marketplace", "impersonation"
    occurred_ts: Optional[s.Millis] = None


class ChargebackRequest(Request):
    transfer_id: s.TransferId
    category: Optional[s.Code] = None  # the card network's reason, e.g. "stolen_card"


class TakeoverReportRequest(Request):
    """A confirmed account takeover (account security, once the owner has noticed), on the
    account (``transfer_id`` None) or on one of the attacker's transfers, with its window."""
    account: RawId
    occurred_ts: s.Millis  # the takeover's start, or the transfer's time
    compromise_from_ts: s.Millis
    compromise_to_ts: s.Millis
    transfer_id: Optional[s.TransferId] = None

    def __post_init__(self):  # decoding turns this into a 400 with the reason
        if self.compromise_to_ts < self.compromise_from_ts:
            raise ValueError("compromise_to_ts is before compromise_from_ts")


class RecoveryAnswerRequest(Request):
    """The owner's answer to a step-up challenge, "confirm_compromise" or "it_was_me", with
    the code sent to the owner's verified contact (without it, the answer proves nothing)."""
    account: RawId
    answer: Literal["confirm_compromise", "it_was_me"]
    code: Annotated[str, Meta(pattern=r"^[0-9]{6}$")]
    actor: Literal["owner", "simulator-owner"] = "owner"


class Switch(Struct, forbid_unknown_fields=True):
    """The assistant's on/off switch of a user (``PUT /v1/users/{user}/assistant``)."""
    enabled: bool


class SuggestionsQuery(Struct, forbid_unknown_fields=True):
    """``GET /v1/suggestions``'s query string."""
    user: RawId
    conversation: RawId


def _h(kind: str, raw: Optional[str]) -> Optional[str]:
    return pseudonymize(kind, raw) if raw is not None else None


def card_key(card_number: str) -> str:
    """Cards are hashed on their digits only, so '4111 1111…' and '41111111…' are one card."""
    return card_number.replace(" ", "")


def message_event(req: MessageRequest, event_id: str, now_ms: int) -> s.MessageSent:
    sig = derive(req.text)  # the text goes no further than this line
    return s.MessageSent(
        id=event_id, ts=now_ms,
        sender=pseudonymize("account", req.sender),
        recipient=pseudonymize("account", req.recipient),
        conversation=pseudonymize("conversation", req.conversation),
        lang=sig.lang, length=sig.length, money_talk=sig.money_talk,
        money_request=sig.money_request, amount_mentioned_cents=sig.amount_mentioned_cents,
        urgency=sig.urgency, has_link=sig.has_link, has_phone=sig.has_phone,
    )


def account_event(req: AccountEventRequest, event_id: str, now_ms: int) -> s.AccountEvent:
    return s.AccountEvent(
        id=event_id, ts=now_ms, account=pseudonymize("account", req.account), kind=req.kind,
        device=_h("device", req.device), ip=_h("ip", req.ip), country=req.country,
        card=_h("card", card_key(req.card_number)) if req.card_number else None,
        bank_account=_h("bank_account", req.bank_account),
    )


def transfer_event(req: TransferRequest, transfer_id: str, event_id: str, now_ms: int,
                   availability_delay_ms: int) -> s.TransferRequested:
    return s.TransferRequested(
        id=event_id, ts=now_ms, transfer_id=transfer_id,
        sender=pseudonymize("account", req.sender),
        recipient=pseudonymize("account", req.recipient),
        amount_cents=req.amount_cents, currency=req.currency,
        conversation=_h("conversation", req.conversation),
        device=_h("device", req.device), ip=_h("ip", req.ip),
        card=_h("card", card_key(req.card_number)) if req.card_number else None,
        suggestion_id=req.suggestion_id, amount_edited=req.amount_edited,
        recipient_edited=req.recipient_edited,
        payout_due_ts=now_ms + availability_delay_ms,
    )


# What a transfer event says about the request that made it: everything but when it was made.
_NOT_CONTENT = frozenset({"id", "ts", "v", "payout_due_ts"})


def transfer_content(event: s.TransferRequested) -> tuple:
    """The request a transfer event was made from, as keyed hashes: two requests are the same
    transfer exactly when their events' contents are equal (an ``Idempotency-Key`` retry's
    check; the event in the log is its record, so it survives restarts)."""
    return tuple(getattr(event, f) for f in event.__struct_fields__ if f not in _NOT_CONTENT)


def scam_report_label(req: ScamReportRequest, event_id: str, now_ms: int,
                      parties: Optional[tuple[str, str]] = None) -> s.Label:
    """The reported account is the party accused. A report naming its transfer names the
    transfer's parties too: ``parties`` (sender, recipient), as the transfer log has them, when
    the caller checked the reporter against them (the messaging service does); without them,
    as the report says (the reporter paid the reported account: the offline simulator)."""
    reported = pseudonymize("account", req.reported)
    named = req.transfer_id is not None
    if parties is None and named:
        parties = (pseudonymize("account", req.reporter), reported)
    sender, recipient = parties or (None, None)
    return s.Label(
        id=event_id, ts=req.occurred_ts or now_ms, kind="user_scam_report",
        account=reported, transfer_id=req.transfer_id, is_fraud=True, known_at=now_ms,
        scenario=req.category, party="sender" if reported == sender else "recipient",
        sender=sender, recipient=recipient,
    )


def chargeback_label(req: ChargebackRequest, transfer: s.TransferRequested, event_id: str,
                     now_ms: int) -> s.Label:
    """A chargeback names the transfer; the label is on its sender's account (the card was used
    by whoever sent it), and names both parties."""
    return s.Label(
        id=event_id, ts=transfer.ts, kind="chargeback", account=transfer.sender,
        transfer_id=transfer.transfer_id, is_fraud=True, known_at=now_ms, scenario=req.category,
        party="sender", sender=transfer.sender, recipient=transfer.recipient,
    )


def takeover_label(req: TakeoverReportRequest, event_id: str, now_ms: int) -> s.Label:
    """The taken-over account is the sender's side (its owner a victim, see features.graph); a
    report naming one of the attacker's transfers names its sender, that account (its recipient
    is not in the request)."""
    account = pseudonymize("account", req.account)
    return s.Label(
        id=event_id, ts=req.occurred_ts, kind="ato_confirmed", account=account,
        transfer_id=req.transfer_id, is_fraud=True, known_at=now_ms, scenario="ato",
        compromise_from_ts=req.compromise_from_ts, compromise_to_ts=req.compromise_to_ts,
        party="sender", sender=account if req.transfer_id is not None else None,
    )


def suggestion_event(message: s.MessageSent, suggestion_id: str, now_ms: int) -> Optional[s.AssistantEvent]:
    """The assistant's rule: money talk in a message suggests a payment to its recipient
    (the person being asked or told about money), towards the message's sender.
    The caller checks the recipient's assistant switch."""
    if not message.money_talk:
        return None
    return s.AssistantEvent(
        id=f"{suggestion_id}.s", ts=now_ms, kind="suggested", suggestion_id=suggestion_id,
        user=message.recipient, counterparty=message.sender, conversation=message.conversation,
        amount_cents=message.amount_mentioned_cents,
    )


def suggestion_response_event(suggested: s.AssistantEvent, req: SuggestionResponseRequest,
                              event_id: str, now_ms: int) -> s.AssistantEvent:
    amount_edited = (req.response == "edited" and req.amount_cents is not None
                     and req.amount_cents != suggested.amount_cents)
    return s.AssistantEvent(
        id=event_id, ts=now_ms, kind=req.response, suggestion_id=suggested.suggestion_id,
        user=suggested.user, counterparty=suggested.counterparty,
        conversation=suggested.conversation,
        amount_cents=req.amount_cents or suggested.amount_cents,
        amount_edited=amount_edited, recipient_edited=req.recipient_edited,
    )

"""Versioned event contracts: one schema per topic, strict and fast (msgspec).

Every event carries ``id`` (unique, used for idempotence), ``ts`` (event time,
UTC epoch milliseconds) and ``v`` (schema version). Unknown fields are refused,
so there is no room for a message body, a card number or a raw device/IP id:
identifier fields only accept keyed hashes (see ``pipelines.contracts.privacy``).

To evolve a schema, add a new version beside the old one and accept both until every producer
has moved; never change a published version. A topic's ``schema`` (``pipelines.contracts.topics``)
is the struct every stage reads; its other wire versions are listed beside it (``TopicSpec.also``)
and each turns itself into that struct (``as_current()``), so the stages, the replay and the lake
never see two shapes. Today: ``transfer-requests`` reads v1 and v2 (``TransferRequestedV2``);
``analyst-actions`` reads v2 (signed, the struct every stage reads) and v1 (``AnalystActionV1``,
unsigned, read as an unsigned v2); every other topic, v1 only. The rules are written out in docs/contracts.md.
"""
from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

import msgspec
from msgspec import Meta, Struct

from pipelines.contracts.privacy import CODE_DIGEST, PATTERNS

# --- field types ------------------------------------------------------------------
AccountId = Annotated[str, Meta(pattern=PATTERNS["account"])]
DeviceId = Annotated[str, Meta(pattern=PATTERNS["device"])]
IpId = Annotated[str, Meta(pattern=PATTERNS["ip"])]
CardId = Annotated[str, Meta(pattern=PATTERNS["card"])]
BankAccountId = Annotated[str, Meta(pattern=PATTERNS["bank_account"])]
ConversationId = Annotated[str, Meta(pattern=PATTERNS["conversation"])]
EventId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
TransferId = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
# 2001-09-09 .. 2286-11-20: refuses seconds and microseconds sent by mistake
Millis = Annotated[int, Meta(ge=1_000_000_000_000, le=9_999_999_999_999)]
Cents = Annotated[int, Meta(gt=0, le=10_000_000_00)]  # at most 10M in the currency's unit
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]
Country = Annotated[str, Meta(pattern=r"^[A-Z]{2}$")]
ShortText = Annotated[str, Meta(max_length=500)]  # reasons typed by people, never message text
Code = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_.:-]+$")]
Actor = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@:-]+$")]
CodeDigest = Annotated[str, Meta(pattern=CODE_DIGEST)]  # a one-time code's keyed hash, never a code


class Event(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    id: EventId
    ts: Millis
    v: Literal[1] = 1


# --- input topics (written by the thin services) ----------------------------------------
class MessageSent(Event, kw_only=True):
    """A chat message's metadata and derived signals. The text itself never leaves the
    messaging service."""
    sender: AccountId
    recipient: AccountId
    conversation: ConversationId
    lang: Literal["fr", "en", "other"]
    length: Annotated[int, Meta(ge=0, le=100_000)]
    money_talk: bool
    money_request: bool  # the sender asks the recipient for money
    amount_mentioned_cents: Optional[Cents] = None
    urgency: bool
    has_link: bool
    has_phone: bool


AccountEventKind = Literal[
    "signup", "login", "login_failed", "password_reset", "email_changed", "phone_changed",
    "device_added", "card_registered", "bank_account_registered",
    "assistant_enabled", "assistant_disabled",
]


class AccountEvent(Event, kw_only=True):
    account: AccountId
    kind: AccountEventKind
    device: Optional[DeviceId] = None
    ip: Optional[IpId] = None
    country: Optional[Country] = None
    card: Optional[CardId] = None
    bank_account: Optional[BankAccountId] = None


class TransferRequested(Event, kw_only=True):
    transfer_id: TransferId
    sender: AccountId
    recipient: AccountId
    amount_cents: Cents
    currency: Currency = "EUR"
    conversation: Optional[ConversationId] = None
    device: Optional[DeviceId] = None
    ip: Optional[IpId] = None
    card: Optional[CardId] = None  # funding card, when not paid from the balance
    suggestion_id: Optional[EventId] = None  # the assistant suggestion it came from
    amount_edited: bool = False
    recipient_edited: bool = False
    payout_due_ts: Millis  # end of the availability delay: a decision is needed before it


class Money(Struct, forbid_unknown_fields=True, frozen=True):
    cents: Cents
    currency: Currency  # always stated: no default


class TransferRequestedV2(Event, kw_only=True):
    """Version 2 of a transfer request: the amount travels with its currency as one value,
    ``amount: {"cents": 2500, "currency": "EUR"}``, and the currency is always stated (v1's
    ``currency`` defaults to EUR, so a producer that forgets it silently claims euros). Every other
    field is v1's. No producer writes it yet (the payment service writes v1): the stream accepts
    both meanwhile and reads a v2 request as the v1 struct (``as_current``)."""
    v: Literal[2] = 2
    transfer_id: TransferId
    sender: AccountId
    recipient: AccountId
    amount: Money
    conversation: Optional[ConversationId] = None
    device: Optional[DeviceId] = None
    ip: Optional[IpId] = None
    card: Optional[CardId] = None
    suggestion_id: Optional[EventId] = None
    amount_edited: bool = False
    recipient_edited: bool = False
    payout_due_ts: Millis

    def as_current(self) -> TransferRequested:
        """The request as every stage reads it (``TransferRequested``, whose ``v`` is then 1: the
        wire version is not kept, the layout is)."""
        fields = {f: getattr(self, f) for f in self.__struct_fields__ if f not in ("v", "amount")}
        return TransferRequested(**fields, amount_cents=self.amount.cents,
                                 currency=self.amount.currency)


class AssistantEvent(Event, kw_only=True):
    """A payment suggestion made by the assistant, and what the user did with it."""
    kind: Literal["suggested", "accepted", "edited", "declined"]
    suggestion_id: EventId
    user: AccountId  # who the suggestion was shown to
    counterparty: AccountId
    conversation: ConversationId
    amount_cents: Optional[Cents] = None
    amount_edited: bool = False
    recipient_edited: bool = False


# --- the payment service's own record ---------------------------------------------------
TransferStatusKind = Literal[
    "pending", "approved", "warned", "held", "released", "blocked", "paid_out", "returned",
    "cancelled",  # by the sender, before the payout (then "returned")
]


class TransferStatus(Event, kw_only=True):
    transfer_id: TransferId
    sender: AccountId
    recipient: AccountId
    amount_cents: Cents
    status: TransferStatusKind
    reason: ShortText = ""  # e.g. "decision:hold", "fallback: no decision by deadline"


# --- stream outputs ------------------------------------------------------------------------
class ReasonCode(Struct, forbid_unknown_fields=True, frozen=True):
    feature: str
    value: Optional[float]  # None: the feature was missing (NaN does not exist in JSON)
    contribution: float


Action = Literal["approve", "warn", "hold", "block"]


class Decision(Event, kw_only=True):
    transfer_id: TransferId
    sender: AccountId
    recipient: AccountId
    amount_cents: Cents
    action: Action
    score: float
    model_version: str
    shadow: bool = False  # a challenger's would-be decision: recorded, never applied
    rule_hits: list[str] = []
    list_hits: list[str] = []
    reasons: list[ReasonCode] = []
    features: dict[str, Optional[float]] = {}  # None: missing (NaN does not exist in JSON)
    latency_ms: float = 0.0  # transfer request's event time to this decision


class Notification(Event, kw_only=True):
    """Something the messaging service shows a user: a warning, a step-up challenge."""
    account: AccountId
    kind: Literal["transfer_warning", "contact_warning", "step_up_challenge", "recovery_summary"]
    code: Code  # which template, e.g. "first_contact_payee", "urgency", "new_device"
    transfer_id: Optional[TransferId] = None
    case_id: Optional[EventId] = None


# --- knowledge that arrives later ------------------------------------------------------
LabelParty = Literal["sender", "recipient", "unknown"]


class Label(Event, kw_only=True):
    """What we learnt about a transfer or an account. ``ts`` is when the fraud happened;
    ``known_at`` is when Vigie learnt it (training uses only labels known before its cut-off).

    ``party`` is who the fraud is attributed to: ``sender`` (the sender is the fraudster, or its
    account was taken over: ``ato_confirmed``), ``recipient`` (a scammer or a mule), ``unknown``
    (the label marks the transfer only: no account is flagged). ``None`` (labels written before
    the field existed): ``account`` is the judged account. With a party, ``account`` is that
    party's account (the sender's for ``unknown``: the key the topic is partitioned by).
    ``sender`` / ``recipient``: the labelled transfer's parties, when it names one, so both ends
    learn that one of their transfers turned out fraudulent (counterparty risk)."""
    kind: Literal["chargeback", "user_scam_report", "analyst_verdict", "ato_confirmed", "not_ato"]
    account: AccountId
    transfer_id: Optional[TransferId] = None
    is_fraud: bool
    known_at: Millis
    party: Optional[LabelParty] = None
    sender: Optional[AccountId] = None
    recipient: Optional[AccountId] = None
    scenario: Optional[Code] = None  # ground truth from the simulator, or the analyst's call
    compromise_from_ts: Optional[Millis] = None
    compromise_to_ts: Optional[Millis] = None


Role = Literal["analyst", "lead", "data_scientist", "admin"]
AnalystActionKind = Literal["release", "block", "confirm_fraud", "mark_legitimate", "open_case",
                            "add_to_list", "remove_from_list", "claim", "assign", "rule_change",
                            "promote", "rollback", "case_transition"]
# Who may take which action: the console checks it before signing, the worker again after
# verifying the signature (a role the action does not allow is refused, signed or not).
ACTION_ROLES: dict[str, tuple[str, ...]] = {
    "release": ("analyst", "lead", "admin"),
    "block": ("analyst", "lead", "admin"),
    "confirm_fraud": ("analyst", "lead", "admin"),
    "mark_legitimate": ("analyst", "lead", "admin"),
    "open_case": ("analyst", "lead", "admin"),
    "case_transition": ("analyst", "lead", "admin"),
    "add_to_list": ("analyst", "lead", "admin"),
    "remove_from_list": ("lead", "admin"),
    "claim": ("analyst", "lead", "admin"),
    "assign": ("lead", "admin"),
    "rule_change": ("lead", "admin"),
    "promote": ("data_scientist", "admin"),
    "rollback": ("data_scientist", "admin"),
}
Signature = Annotated[str, Meta(max_length=128, pattern=r"^[A-Za-z0-9_-]*$")]  # base64url


class AnalystAction(Event, kw_only=True):
    """What an analyst did in the console, signed by the console (version 2): ``signature`` is
    its Ed25519 signature over every other field, actor and role included
    (``pipelines.contracts.signatures``). The worker applies only a signed action whose role
    may take it; anything else is dead-lettered with the reason."""
    v: Literal[2] = 2
    actor: Actor
    role: Role
    action: AnalystActionKind
    target_kind: Literal["transfer", "account", "device", "card", "rule", "model", "case"]
    target: Annotated[str, Meta(min_length=1, max_length=128)]
    reason: ShortText = ""
    params: dict[str, str] = {}
    signature: Signature = ""


class AnalystActionV1(Event, kw_only=True):
    """Version 1: an analyst action without a signature. Still read (an old record decodes), as
    an unsigned version 2, which the worker refuses: nothing unsigned moves money."""
    actor: Actor
    role: Role
    action: AnalystActionKind
    target_kind: Literal["transfer", "account", "device", "card", "rule", "model", "case"]
    target: Annotated[str, Meta(min_length=1, max_length=128)]
    reason: ShortText = ""
    params: dict[str, str] = {}

    def as_current(self) -> AnalystAction:
        fields = {f: getattr(self, f) for f in self.__struct_fields__ if f != "v"}
        return AnalystAction(**fields)


class RecoveryEvent(Event, kw_only=True):
    """One transition of an account-recovery case (event-sourced)."""
    case_id: EventId
    account: AccountId
    state: Literal["opened", "contained", "owner_verification", "secured", "transfers_review",
                   "restored", "closed_fraudulent", "closed_legitimate", "escalated"]
    actor: Actor  # "stream", "simulator-owner", or an analyst
    reason: ShortText = ""
    compromise_from_ts: Optional[Millis] = None


class OwnerVerification(Event, kw_only=True):
    """The owner's verified channel, as the messaging service saw it (``owner-verification``):
    ``code_sent``, a one-time code delivered to the contact the owner verified before the
    compromise, for the step-up challenge ``challenge_id``; ``answer``, the owner's answer given
    in the app with a code. Both carry only the code's keyed hash (``privacy.code_digest``,
    bound to the case); the recovery stage compares them, counts wrong codes and is the only
    one to write the transition that says the owner was verified."""
    kind: Literal["code_sent", "answer"]
    case_id: EventId
    account: AccountId
    code_digest: CodeDigest
    challenge_id: Optional[EventId] = None  # code_sent: the step_up_challenge notification
    answer: Optional[Literal["confirm_compromise", "it_was_me"]] = None  # answer only
    actor: Actor = "owner"  # answer: "owner" or "simulator-owner", as the app said


class ModelUpdate(Event, kw_only=True):
    """A change of the acting or shadow model, on the record: who (a console user, or the OS
    user of ``vigie promote``…) and why. The audit page lists them."""
    action: Literal["promote", "rollback", "shadow", "unshadow"]
    version: Annotated[str, Meta(min_length=1, max_length=64)]
    actor: Actor
    reason: ShortText = ""  # required by the console and the command line; "" in older records


class IdempotentReply(Event, kw_only=True):
    """A service's answer to a POST sent with an ``Idempotency-Key`` (its own
    ``idempotency-<service>`` topic, compacted by ``id``): ``id`` is the key's keyed hash
    scoped to the caller and the route (never the key), ``request`` the request body's keyed
    digest (a retry with another body gets 422), ``status`` and ``answer`` what was answered.
    An answer holds ids only (``{"id": "<event id>"}``): no request content goes in it."""
    request: Annotated[str, Meta(pattern=r"^[0-9a-f]{64}$")]
    status: Annotated[int, Meta(ge=200, le=299)]
    answer: Annotated[dict[Annotated[str, Meta(pattern=r"^[a-z_]{1,32}$")], EventId],
                      Meta(max_length=4)]


class QualityFailure(Struct, forbid_unknown_fields=True, frozen=True):
    expectation: Code
    column: Optional[str] = None
    observed: ShortText = ""  # a summary (a rate, a number, column names), never sample values


class DataQuality(Event, kw_only=True):
    """One Great Expectations check of a sample of one input topic's recent events (the lake
    sink's periodic check, ``pipelines/stream/quality.py``); ``ts`` is when it ran."""
    topic: Annotated[str, Meta(min_length=1, max_length=64)]
    suite: Code
    success: bool
    evaluated: int  # expectations run
    failures: list[QualityFailure] = []
    sample_rows: int  # events validated
    seen_rows: int  # events the sampler saw since the previous check
    from_ts: Optional[Millis] = None  # event-time span of the sample
    to_ts: Optional[Millis] = None


class ConsoleAudit(Event, kw_only=True):
    """Something that happened in the console that is not an action on the data: a sign-in, a
    failed one, a lockout, a session ended because its user was removed or changed role, a SQL
    query. ``actor`` is a console user's name, set only when the name is a known user (a name
    typed at sign-in may be a mistyped password: an unknown one is not recorded). Never a
    password."""
    kind: Literal["sign_in", "sign_in_failed", "locked_out", "signed_out", "session_ended",
                  "sql_query"]
    actor: Optional[Actor] = None
    role: Optional[Role] = None
    outcome: ShortText = ""  # why a sign-in failed, a session ended, a query was refused
    sql: Annotated[str, Meta(max_length=10_000)] = ""  # the query, as typed
    rows: Optional[int] = None
    duration_ms: Optional[float] = None


class DeadLetter(Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """An event that failed validation, kept whole with the reason it failed."""
    ts: Millis  # when it was dead-lettered
    reason: str
    topic: str
    partition: int
    offset: int
    original_b64: str  # the original bytes, base64
    original_size: int


AnyEvent = Union[MessageSent, AccountEvent, TransferRequested, AssistantEvent, TransferStatus,
                 Decision, Notification, Label, AnalystAction, RecoveryEvent, ModelUpdate,
                 ConsoleAudit]

ENCODER = msgspec.json.Encoder()


def encode(event: Struct) -> bytes:
    return ENCODER.encode(event)

"""Offline stand-in for the three services: each request a script sends becomes the events
the messaging, payment and assistant services would publish, built by the same functions
(``pipelines.services.requests``) with the same rules, and is buffered into a Parquet lake
(``LakeWriter``). Ids are deterministic (``sim-<n>``, ``sim-t<n>``, ``sim-s<n>``); no wall clock.

Why, and the ids: docs/simulator.md#offline-services
"""
from __future__ import annotations

from typing import Callable, Optional

from msgspec.structs import replace

from pipelines.contracts import schemas as s
from pipelines.contracts.privacy import pseudonymize
from pipelines.lake.writer import FLUSH_ROWS, LakeWriter
from pipelines.services import requests as rq
from pipelines.services.assistant import SUGGESTION_TTL_MS
from pipelines.simulator.world import (AnalystVerdict, AssistantSwitch, Suggestion,
                                       SuggestionResponse, WarningFor)


class EventLog:
    """``handlers`` maps each request or command type to what the services would do with it."""

    def __init__(self, writer: LakeWriter, clock: Callable[[], int], availability_ms: int):
        self.writer = writer
        self.now = clock
        self.availability_ms = availability_ms
        self._n = 0
        self._by_text: dict[str, s.MessageSent] = {}
        self.assistant_on: dict[str, bool] = {}  # raw user id -> switch
        self.open_suggestions: dict[tuple[str, str], s.AssistantEvent] = {}  # (user, conversation)
        self._suggestion_keys: dict[str, tuple[str, str]] = {}  # suggestion id -> its key
        self.card_transfers: dict[str, s.TransferRequested] = {}  # what chargebacks refer to
        self.labels_by_scenario: dict[str, int] = {}
        self.labelled_fraud: set[str] = set()  # transfer ids a fraud label names
        self.cleared = 0  # labels that are not fraud (analysts' verdicts on disputes)
        self.handlers = {
            rq.MessageRequest: self.message, rq.AccountEventRequest: self.account_event,
            rq.TransferRequest: self.transfer, rq.ScamReportRequest: self.scam_report,
            rq.ChargebackRequest: self.chargeback, Suggestion: self.suggestion,
            SuggestionResponse: self.suggestion_response, AssistantSwitch: self.assistant_switch,
            rq.TakeoverReportRequest: self.takeover_report, AnalystVerdict: self.analyst_verdict,
            WarningFor: self.warning,
        }

    def _id(self, prefix: str = "") -> str:
        self._n += 1
        return f"sim-{prefix}{self._n}"

    def _append(self, topic: str, event) -> None:
        buffer = self.writer.buffers[topic]
        buffer.append(event)
        if len(buffer) >= FLUSH_ROWS:
            self.writer.flush(topic)

    # --- messaging service -----------------------------------------------------------------
    def message_event(self, req: rq.MessageRequest, event_id: str, now: int) -> s.MessageSent:
        """``requests.message_event``, with the text's signals derived once per distinct text
        (they depend on the text only; the identifiers are hashed as it hashes them)."""
        known = self._by_text.get(req.text)
        if known is None:
            known = self._by_text[req.text] = rq.message_event(req, event_id, now)
            return known
        return replace(known, id=event_id, ts=now, sender=pseudonymize("account", req.sender),
                       recipient=pseudonymize("account", req.recipient),
                       conversation=pseudonymize("conversation", req.conversation))

    def message(self, req: rq.MessageRequest) -> None:
        now = self.now()
        event = self.message_event(req, self._id(), now)
        self._append("messages", event)
        if event.money_talk and self.assistant_on.get(req.recipient):
            # the assistant service's rule, through the same function it uses; a newer
            # suggestion in a conversation replaces the one left unanswered
            suggested = rq.suggestion_event(event, self._id("s"), now)
            key = (req.recipient, req.conversation)
            replaced = self.open_suggestions.get(key)
            if replaced is not None:
                del self._suggestion_keys[replaced.suggestion_id]
            self.open_suggestions[key] = suggested
            self._suggestion_keys[suggested.suggestion_id] = key
            self._append("assistant-events", suggested)

    def account_event(self, req: rq.AccountEventRequest) -> None:
        self._append("account-events", rq.account_event(req, self._id(), self.now()))

    def scam_report(self, req: rq.ScamReportRequest) -> None:
        self._label(rq.scam_report_label(req, self._id(), self.now()))

    # --- payment service ----------------------------------------------------------------------
    def transfer(self, req: rq.TransferRequest) -> str:
        transfer_id = self._id("t")
        event = rq.transfer_event(req, transfer_id, f"{transfer_id}.r", self.now(), self.availability_ms)
        if event.card is not None:
            self.card_transfers[transfer_id] = event
        self._append("transfer-requests", event)
        return transfer_id

    @staticmethod
    def warning(query: WarningFor) -> None:
        """Nothing decides offline, so no transfer is warned and nobody cancels one (the
        warnings benchmark applies ``reactions`` to the decisions a model makes on the lake)."""
        return None

    def chargeback(self, req: rq.ChargebackRequest) -> None:
        transfer = self.card_transfers.pop(req.transfer_id)
        self._label(rq.chargeback_label(req, transfer, f"{req.transfer_id}.cb", self.now()))

    # --- assistant service ----------------------------------------------------------------------
    def suggestion(self, query: Suggestion) -> Optional[tuple[str, Optional[int]]]:
        suggested = self.open_suggestions.get((query.user, query.conversation))
        if suggested is None or self.now() - suggested.ts > SUGGESTION_TTL_MS:
            return None
        return suggested.suggestion_id, suggested.amount_cents

    def suggestion_response(self, cmd: SuggestionResponse) -> bool:
        key = self._suggestion_keys.get(cmd.suggestion_id)
        suggested = self.open_suggestions.get(key)
        if suggested is None or self.now() - suggested.ts > SUGGESTION_TTL_MS:
            return False  # the assistant answers 404: replaced, expired or already answered
        del self.open_suggestions[key], self._suggestion_keys[cmd.suggestion_id]
        self._append("assistant-events", rq.suggestion_response_event(
            suggested, cmd.request, f"{cmd.suggestion_id}.r", self.now()))
        return True

    def assistant_switch(self, cmd: AssistantSwitch) -> None:
        self.assistant_on[cmd.user] = cmd.enabled
        kind = "assistant_enabled" if cmd.enabled else "assistant_disabled"
        self.account_event(rq.AccountEventRequest(account=cmd.user, kind=kind))

    # --- ground truth -----------------------------------------------------------------------------
    def takeover_report(self, req: rq.TakeoverReportRequest) -> None:
        self._label(rq.takeover_label(req, self._id(), self.now()))

    def analyst_verdict(self, cmd: AnalystVerdict) -> None:
        """The console's verdict label (``dashboards.common``), on the account the dispute
        accused."""
        sender, recipient = pseudonymize("account", cmd.sender), pseudonymize("account", cmd.recipient)
        self._label(s.Label(id=self._id("v"), ts=cmd.occurred_ts, kind="analyst_verdict",
                            account=sender if cmd.party == "sender" else recipient,
                            transfer_id=cmd.transfer_id, is_fraud=cmd.is_fraud,
                            known_at=self.now(), party=cmd.party, sender=sender,
                            recipient=recipient, scenario=cmd.scenario))

    def _label(self, label: s.Label) -> None:
        scenario = label.scenario or "unknown"
        self.labels_by_scenario[scenario] = self.labels_by_scenario.get(scenario, 0) + 1
        if not label.is_fraud:
            self.cleared += 1
        elif label.transfer_id is not None:
            self.labelled_fraud.add(label.transfer_id)
        self._append("labels", label)

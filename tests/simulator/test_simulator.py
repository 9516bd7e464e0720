"""The traffic simulator: deterministic offline lake, every fraud scenario with its labels,
no raw identifier or text in the output, a plausible mix, and a live mode that sends valid
request bodies at the target rate and stops on time."""
from __future__ import annotations

import asyncio
import hashlib
import random
import re
import socket
import time
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp import web

from features.message_signals import derive
from pipelines.lake import parquet as lake
from pipelines.lake.writer import LakeWriter
from pipelines.services import auth, messaging, requests as rq
from pipelines.services.errors import ApiError
from pipelines.simulator import fraud, legit, texts
from pipelines.simulator.offline import EPOCH_MS, run_offline
from pipelines.simulator.offline_services import EventLog

USERS, DAYS = 600, 7.0
MIX = {code: rate * 10 for code, rate in fraud.DEFAULT_MIX.items()}  # a few cases of each


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("sim")
    stats = {name: run_offline(base / name, seed=seed, users=USERS, days=DAYS, mix=MIX)
             for name, seed in (("a", 7), ("b", 7), ("c", 8))}
    return base, stats


def test_same_seed_same_bytes_other_seed_differs(runs):
    base, stats = runs
    a, b, c = (_digests(base / name) for name in "abc")
    assert a and a == b
    assert a != c
    assert stats["a"]["events"] == stats["b"]["events"] > 10_000


def test_every_scenario_has_labels(runs):
    base, stats = runs
    con = lake.connect(base / "a")
    labelled = dict(con.execute("SELECT scenario, count(*) FROM labels GROUP BY 1").fetchall())
    assert set(labelled) - {legit.LEGIT_DISPUTE} == set(fraud.SCENARIOS), labelled
    # labels name transfers that exist, and arrive after the fact
    orphans, early = con.execute("""
        SELECT count(*) FILTER (WHERE l.transfer_id IS NOT NULL AND t.transfer_id IS NULL),
               count(*) FILTER (WHERE l.known_at < l.ts)
        FROM labels l LEFT JOIN transfer_requests t USING (transfer_id)""").fetchone()
    assert orphans == 0 and early == 0
    # ids derived as the services derive them
    assert con.execute("SELECT count(*) FROM transfer_requests WHERE id <> transfer_id || '.r'").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM labels WHERE kind = 'chargeback' "
                       "AND id <> transfer_id || '.cb'").fetchone()[0] == 0
    kinds = {k for (k,) in con.execute("SELECT DISTINCT kind FROM labels").fetchall()}
    assert {"chargeback", "user_scam_report", "ato_confirmed"} <= kinds
    assert kinds <= {"chargeback", "user_scam_report", "ato_confirmed", "analyst_verdict"}
    window = con.execute("SELECT min(compromise_from_ts), min(compromise_to_ts - compromise_from_ts) "
                         "FROM labels WHERE kind = 'ato_confirmed'").fetchone()
    assert window[0] >= EPOCH_MS and window[1] > 0
    for code, counts in stats["a"]["by_scenario"].items():
        assert counts["cases"] >= 1 and counts["labels"] >= 1, (code, counts)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The default mix, on enough users and days for rates to show (a few seconds)."""
    out = tmp_path_factory.mktemp("sim") / "default"
    return out, run_offline(out, seed=11, users=2000, days=21)


def test_fraud_is_rare_and_partly_unlabelled_and_labels_come_late(default_run):
    out, stats = default_run
    fraud_stats = stats["fraud"]
    assert 0.002 <= fraud_stats["share"] <= 0.005, fraud_stats  # of the transfers
    unlabelled = 1 - fraud_stats["labelled"] / fraud_stats["transfers"]
    assert 0.2 <= unlabelled <= 0.45, fraud_stats
    con = lake.connect(out)
    mean_days, median_days = con.execute("""
        SELECT avg(known_at - ts) / 864e5, median(known_at - ts) / 864e5
        FROM labels WHERE is_fraud""").fetchone()
    assert 4 <= mean_days <= 10 and 2 <= median_days <= 8, (mean_days, median_days)


def test_fraud_recipients_keep_receiving_after_their_first_report(default_run):
    """Campaigns and reused collectors: an account keeps receiving fraud for days, and the
    label of an early victim is known before later victims pay it (counterparty risk)."""
    out, _ = default_run
    con = lake.connect(out)
    long_lived, warned = con.execute("""
        WITH fraud AS (
          SELECT t.recipient, t.ts, l.known_at FROM labels l JOIN transfer_requests t USING (transfer_id)
          WHERE l.is_fraud AND l.kind = 'user_scam_report'),
        per AS (SELECT recipient, max(ts) - min(ts) AS span, min(known_at) AS first_known,
                       max(ts) AS last_ts FROM fraud GROUP BY 1)
        SELECT count(*) FILTER (WHERE span > 5 * 864e5),
               count(*) FILTER (WHERE first_known < last_ts) FROM per""").fetchone()
    assert long_lived >= 3 and warned >= 3, (long_lived, warned)


def test_honest_payments_are_sometimes_disputed_and_cleared(default_run, monkeypatch):
    out, stats = default_run
    assert stats["fraud"]["legit_disputes"] >= 1
    con = lake.connect(out)
    cleared = con.execute("""
        SELECT count(*) FROM labels v JOIN labels d USING (transfer_id)
        WHERE v.kind = 'analyst_verdict' AND NOT v.is_fraud AND d.is_fraud
          AND d.known_at < v.known_at AND v.account = d.account""").fetchone()[0]
    assert cleared == stats["fraud"]["cleared_by_analysts"] >= 1


def test_labels_name_the_party_they_accuse(runs):
    """A chargeback accuses the sender (the card was used from there), a scam report the
    recipient, a takeover the sender's (taken-over) account; every label naming a transfer
    names the party's account as its ``account``."""
    base, _ = runs
    con = lake.connect(base / "a")
    rows = con.execute("""
        SELECT l.kind, l.party, count(*),
               count(*) FILTER (WHERE l.account = CASE l.party WHEN 'sender' THEN t.sender
                                                  WHEN 'recipient' THEN t.recipient END)
        FROM labels l JOIN transfer_requests t USING (transfer_id) GROUP BY ALL""").fetchall()
    parties = {(kind, party) for kind, party, _, _ in rows}
    assert {("chargeback", "sender"), ("user_scam_report", "recipient"),
            ("ato_confirmed", "sender")} <= parties, rows
    assert all(kind == "analyst_verdict" for kind, party in parties
               if (kind, party) not in {("chargeback", "sender"), ("user_scam_report", "recipient"),
                                        ("ato_confirmed", "sender")}), rows
    assert all(n == fitting for _, _, n, fitting in rows), rows


def test_assistant_suggestions_lead_to_transfers(runs):
    base, _ = runs
    con = lake.connect(base / "a")
    kinds = dict(con.execute("SELECT kind, count(*) FROM assistant_events GROUP BY 1").fetchall())
    assert set(kinds) == {"suggested", "accepted", "edited", "declined"}
    assert kinds["suggested"] > kinds["accepted"] > kinds["edited"]
    linked, answered = con.execute("""
        SELECT count(*), count(*) FILTER (WHERE a.kind IN ('accepted', 'edited'))
        FROM transfer_requests t JOIN assistant_events a
          ON a.suggestion_id = t.suggestion_id AND a.kind <> 'suggested'""").fetchone()
    assert linked > 0 and linked == answered  # only accepted or edited suggestions are paid
    late = con.execute("""
        SELECT count(*) FROM assistant_events r JOIN assistant_events s
          ON s.suggestion_id = r.suggestion_id AND s.kind = 'suggested'
        WHERE r.kind <> 'suggested' AND r.ts - s.ts > 3600000""").fetchone()[0]
    assert late == 0  # as the assistant service: a suggestion expires after an hour
    # every suggestion follows a money-talk message to its user, in the same conversation
    unexplained = con.execute("""
        SELECT count(*) FROM assistant_events a WHERE a.kind = 'suggested' AND NOT EXISTS (
          SELECT 1 FROM messages m WHERE m.recipient = a.user AND m.sender = a.counterparty
             AND m.conversation = a.conversation AND m.ts = a.ts AND m.money_talk)""").fetchone()[0]
    assert unexplained == 0


RAW = re.compile(r"user-\d{6}|dev-[0-9a-f]{12}|conv-\d{6}|\b10\.\d{1,3}\.\d{1,3}\.\d{1,3}\b"
                 r"|\b\d{16}\b|\bFR\d{25}\b")


def _template_fragments() -> set[str]:
    """The literal pieces of every message template, long enough to be telling."""
    pieces = set()
    for by_lang in texts.TEMPLATES.values():
        for templates in by_lang.values():
            for template in templates:
                pieces |= {p for p in re.split(r"\{\w+\}", template) if len(p.strip()) >= 12}
    return pieces


def test_no_raw_identifier_or_text_in_the_lake(runs):
    base, _ = runs
    values = []
    for path in sorted((base / "a").rglob("*.parquet")):
        table = pq.read_table(path)
        for name, column in zip(table.column_names, table.columns):
            if pa.types.is_string(column.type):
                values += [v for v in column.to_pylist() if v is not None]
    blob = "\n".join(values)
    assert len(values) > 100_000
    assert not RAW.search(blob), RAW.search(blob).group(0)
    leaked = [piece for piece in _template_fragments() if piece in blob]
    assert not leaked
    assert "user-000001" not in blob and "Salut" not in blob


def test_plausible_mix(runs):
    _, stats = runs
    counts = stats["a"]["by_topic"]
    transfers = counts["transfer-requests"]
    assert 8 <= counts["messages"] / transfers <= 13
    assert 2 <= counts["account-events"] / transfers <= 4.5
    assert counts["assistant-events"] > 0.5 * transfers


def test_memoised_message_events_equal_the_request_function():
    """The offline log derives a text's signals once; the events must be what
    ``requests.message_event`` builds, field for field."""
    log = EventLog(LakeWriter(Path("/nonexistent")), lambda: EPOCH_MS, 1000)
    rng = random.Random(1)
    for i in range(300):
        intent = rng.choice(sorted(texts.TEMPLATES))
        lang = rng.choice(("fr", "en"))
        req = rq.MessageRequest(sender=f"user-{rng.randrange(50):06d}", recipient=f"user-{rng.randrange(50):06d}",
                                conversation=f"conv-{rng.randrange(9)}",
                                text=texts.render(rng, intent, lang, rng.choice((None, 2300, 45050)), "Léa"))
        assert log.message_event(req, f"sim-{i}", EPOCH_MS + i) == rq.message_event(req, f"sim-{i}", EPOCH_MS + i)


@pytest.mark.parametrize("intent, signal", [
    ("split", "amount_mentioned_cents"), ("rent", "amount_mentioned_cents"),
    ("lend", "money_request"), ("need", "money_request"), ("need", "urgency"),
    ("romance_ask", "urgency"), ("listing", "has_link"), ("listing_pay", "has_phone"),
    ("listing_pay", "urgency"), ("impersonate_ask", "urgency"), ("spam", "has_link"),
])
def test_texts_carry_their_signals(intent, signal):
    rng = random.Random(3)
    for lang in ("fr", "en"):
        for template in texts.TEMPLATES[intent][lang]:
            text = template.format(amount=texts.format_amount(2350, lang, rng), name="Tom", code="0042")
            sig = derive(text)
            assert getattr(sig, signal), (text, sig)
            assert sig.lang == lang or sig.lang == "other", (text, sig)


def test_greetings_and_chat_are_not_money_talk():
    for intent in ("greet", "chat"):
        for lang in ("fr", "en"):
            for template in texts.TEMPLATES[intent][lang]:
                assert not derive(template.format(name="Tom")).money_talk, template


# --- live mode, against a stub of the three services ---------------------------------------------
@pytest.fixture(autouse=True)
def token_keys(tmp_path, monkeypatch):
    """The live client's tokens are signed with a key of the test's own."""
    monkeypatch.setenv("VIGIE_JWT_DIR", str(tmp_path / "jwt"))


class Stub:
    """Checks every request's bearer token (valid, and the subject the real service wants),
    decodes every body with the request structs (strict), answers as the contract says, and
    misbehaves on purpose: some 500s, some locked senders."""

    SUBJECT = {  # request struct -> the field naming whose token it goes with (None: internal)
        rq.MessageRequest: "sender", rq.AccountEventRequest: "account",
        rq.ScamReportRequest: "reporter", rq.TransferRequest: "sender",
        rq.SuggestionResponseRequest: "user", rq.RecoveryAnswerRequest: "account",
        rq.ChargebackRequest: None, rq.TakeoverReportRequest: None}

    ROUTES = {"/v1/messages": rq.MessageRequest, "/v1/account-events": rq.AccountEventRequest,
              "/v1/reports": rq.ScamReportRequest, "/v1/chargebacks": rq.ChargebackRequest,
              "/v1/takeover-reports": rq.TakeoverReportRequest}

    def __init__(self):
        self.received: list[tuple[float, str]] = []
        self.invalid: list[str] = []
        self.transfers = 0
        self.money_talk: dict[tuple[str, str], int] = {}  # (user, conversation) -> amount
        self.inbox: dict[str, list[dict]] = {}  # raw account -> its notifications
        self.answers: list[tuple[str, rq.RecoveryAnswerRequest]] = []
        self.verifier = auth.Verifier()

    @web.middleware
    async def authenticate(self, request: web.Request, handler):
        try:
            request[auth.CALLER] = self.verifier.caller(request.headers.get("Authorization"))
        except ApiError as exc:
            self.invalid.append(f"{request.path}: {exc.reason}")
            return web.json_response({"error": exc.reason}, status=exc.status)
        return await handler(request)

    def _subject(self, request: web.Request, subject: str | None, backend: bool = False) -> None:
        caller = request[auth.CALLER]
        right = caller.scope == "internal" if subject is None or backend else (
            caller.scope == "user" and caller.user == subject)
        if not right:
            self.invalid.append(f"{request.path}: {caller.scope} token of {caller.user}")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.authenticate])
        for path in self.ROUTES:
            app.router.add_post(path, self.post)
        app.router.add_post("/v1/transfers", self.transfer)
        app.router.add_get("/v1/suggestions", self.suggestions)
        app.router.add_post("/v1/suggestions/{sid}/response", self.response)
        app.router.add_put("/v1/users/{user}/assistant", self.switch)
        app.router.add_get("/v1/notifications/{account}", self.notifications)
        app.router.add_post("/v1/recovery/{case_id}/answer", self.answer)
        return app

    async def _decode(self, request: web.Request, struct):
        self.received.append((time.monotonic(), request.path))
        body = await request.read()
        try:
            req = msgspec.json.decode(body, type=struct)
        except msgspec.DecodeError as exc:
            self.invalid.append(f"{request.path}: {exc}: {body[:200]!r}")
            raise web.HTTPBadRequest()
        field = self.SUBJECT[struct]
        self._subject(request, field and getattr(req, field),
                      backend=getattr(req, "kind", None) in messaging.BACKEND_EVENTS)
        return req

    async def post(self, request):
        req = await self._decode(request, self.ROUTES[request.path])
        if isinstance(req, rq.MessageRequest):
            if len(self.received) % 10 == 0:
                return web.json_response({"error": "boom"}, status=500)
            sig = derive(req.text)
            if sig.money_talk:
                self.money_talk[(req.recipient, req.conversation)] = sig.amount_mentioned_cents
        return web.json_response({"id": f"e{len(self.received)}"}, status=202)

    async def transfer(self, request):
        await self._decode(request, rq.TransferRequest)
        self.transfers += 1
        if self.transfers % 5 == 0:
            return web.json_response({"error": "sender locked"}, status=423)
        return web.json_response({"transfer_id": f"t{self.transfers}", "status": "pending",
                                  "payout_due_ts": EPOCH_MS}, status=201)

    async def suggestions(self, request):
        self.received.append((time.monotonic(), request.path))
        self._subject(request, request.query["user"])
        key = (request.query["user"], request.query["conversation"])
        found = [{"suggestion_id": f"s{len(self.received)}", "amount_cents": self.money_talk.pop(key)}] \
            if key in self.money_talk else []
        return web.json_response({"suggestions": found})

    async def response(self, request):
        await self._decode(request, rq.SuggestionResponseRequest)
        return web.json_response({}, status=202)

    async def notifications(self, request):
        self.received.append((time.monotonic(), request.path))
        self._subject(request, request.match_info["account"])
        return web.json_response({"notifications": self.inbox.get(request.match_info["account"], [])})

    async def answer(self, request):
        self.answers.append((request.match_info["case_id"],
                             await self._decode(request, rq.RecoveryAnswerRequest)))
        return web.json_response({"id": "ans-1"}, status=202)

    async def switch(self, request):
        self.received.append((time.monotonic(), request.path))
        self._subject(request, request.match_info["user"])
        body = msgspec.json.decode(await request.read())
        if set(body) != {"enabled"} or not isinstance(body["enabled"], bool):
            self.invalid.append(f"assistant switch: {body}")
        return web.json_response({}, status=200)


async def _serve(app: web.Application):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}"


def test_live_sends_valid_bodies_at_the_rate_and_stops():
    from pipelines.simulator.live import run_live

    async def scenario():
        stub = Stub()
        runner, url = await _serve(stub.app())
        try:
            rate, duration = 40.0, 6.0
            started = time.monotonic()
            stats = await run_live(seed=3, rate=rate, duration_s=duration, users=120,
                                   urls={"messaging": url, "payment": url, "assistant": url},
                                   fraud_every_s=2.0)
            elapsed = time.monotonic() - started
            count_at_stop = len(stub.received)
            await asyncio.sleep(0.5)
            return stub, stats, elapsed, count_at_stop, rate, duration
        finally:
            await runner.cleanup()

    stub, stats, elapsed, count_at_stop, rate, duration = asyncio.run(scenario())
    assert not stub.invalid, stub.invalid[:3]
    assert duration <= elapsed < duration + 2
    assert len(stub.received) == count_at_stop  # nothing sent after the stop
    assert 0.6 * rate * duration <= len(stub.received) <= 1.1 * rate * duration + 10
    paths = {p for _, p in stub.received}
    assert {"/v1/messages", "/v1/account-events", "/v1/transfers"} <= paths
    assert any(p.endswith("/assistant") for p in paths)
    assert stats["errors"].get("POST /v1/messages 500", 0) > 0  # counted, and it carried on
    assert stats["refused_transfers"] > 0 and stats["script_errors"] == 0
    assert stats["by_scenario"], "a fraud scenario should start within the first seconds"


def test_live_client_speaks_the_assistant_contract():
    """A money talk, the suggestion it leaves, the user's answer: what a payer script does."""
    import aiohttp

    from pipelines.simulator.live import Pacer, ServiceClient
    from pipelines.simulator.world import AssistantSwitch, Suggestion, SuggestionResponse

    async def scenario():
        stub = Stub()
        runner, url = await _serve(stub.app())
        try:
            async with aiohttp.ClientSession() as session:
                client = ServiceClient(session, {"messaging": url, "payment": url, "assistant": url},
                                       Pacer(1000))
                await client.handle(AssistantSwitch("user-000002", True))
                await client.handle(rq.MessageRequest(sender="user-000001", recipient="user-000002",
                                                      conversation="conv-1", text="Tu me dois 23€ pour le resto"))
                found = await client.handle(Suggestion("user-000002", "conv-1"))
                answer = rq.SuggestionResponseRequest(user="user-000002", response="accepted", amount_cents=2300)
                recorded = await client.handle(SuggestionResponse(found[0], answer))
                transfer_id = await client.handle(rq.TransferRequest(
                    sender="user-000002", recipient="user-000001", amount_cents=2300, suggestion_id=found[0]))
                nothing = await client.handle(Suggestion("user-000002", "conv-1"))
                return stub, found, recorded, transfer_id, nothing
        finally:
            await runner.cleanup()

    stub, found, recorded, transfer_id, nothing = asyncio.run(scenario())
    assert not stub.invalid
    assert found[1] == 2300 and recorded is True and transfer_id == "t1" and nothing is None


def test_live_client_speaks_the_recovery_contract():
    """What the owner agent reads and sends, and the takeover ground truth, over HTTP."""
    import aiohttp

    from pipelines.simulator.live import Pacer, ServiceClient
    from pipelines.simulator.world import Challenges, RecoveryAnswer

    challenge = {"id": "rc-1.sc3", "ts": EPOCH_MS, "account": "a_x", "kind": "step_up_challenge",
                 "code": "account_recovery", "case_id": "rc-1", "transfer_id": None}
    warning = {**challenge, "id": "w1", "kind": "transfer_warning", "case_id": None}

    async def scenario():
        stub = Stub()
        stub.inbox["user-000007"] = [warning, challenge]
        runner, url = await _serve(stub.app())
        try:
            async with aiohttp.ClientSession() as session:
                client = ServiceClient(session, {"messaging": url, "payment": url, "assistant": url},
                                       Pacer(1000))
                found = await client.handle(Challenges("user-000007"))
                none = await client.handle(Challenges("user-000008"))
                took = await client.handle(RecoveryAnswer("rc-1", rq.RecoveryAnswerRequest(
                    account="user-000007", answer="it_was_me", actor="simulator-owner")))
                await client.handle(rq.TakeoverReportRequest(
                    account="user-000007", occurred_ts=EPOCH_MS, compromise_from_ts=EPOCH_MS,
                    compromise_to_ts=EPOCH_MS + 60_000))
                return stub, found, none, took, client
        finally:
            await runner.cleanup()

    stub, found, none, took, client = asyncio.run(scenario())
    assert not stub.invalid and not client.errors
    assert found == [challenge] and none == [] and took is True
    assert [(case, a.answer) for case, a in stub.answers] == [("rc-1", "it_was_me")]
    assert client.sent["POST /v1/takeover-reports"] == 1


def test_live_survives_services_that_are_down():
    from pipelines.simulator.live import run_live

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    stats = asyncio.run(run_live(seed=1, rate=30, duration_s=1.5, users=50,
                                 urls={"messaging": dead, "payment": dead, "assistant": dead}))
    assert stats["requests"] > 0 and sum(stats["errors"].values()) == stats["requests"]
    assert stats["script_errors"] == 0


# --- the owners' side of account recovery, live --------------------------------------------------
def _owner_run(seed: int, monkeypatch):
    """Drives the owner agent's scripts by hand: a victim of a takeover and an owner who reset
    their own password are challenged; returns (case -> (user, answer, wait), owners, users)."""
    from pipelines.simulator.owners import POLL_MS, WATCH_MS, Owners
    from pipelines.simulator.timing import LIVE
    from pipelines.simulator.world import Challenges, RecoveryAnswer, World

    monkeypatch.setenv("VIGIE_RECOVERY_SLA_OWNER_VERIFICATION_S", "10")
    now = [EPOCH_MS]
    spawned = []
    world = World(seed, 40, LIVE, lambda: now[0], lambda script, delay=0: spawned.append(script))
    owners = Owners(world, seed, {"correct": 1, "wrong": 1, "late": 1})
    victim, owner = world.members[0], world.members[1]
    victim.taken_over_ts = now[0]
    owners.saw(world.account(world.pop.add("fraudster"), "device_added"))  # no owner to answer
    owners.saw(world.account(owner, "login"))  # at home: nothing to watch
    assert not spawned
    owners.saw(world.account(victim, "device_added", device="dev-attacker", country="NG"))
    owners.saw(world.account(owner, "password_reset"))
    owners.saw(world.account(owner, "email_changed"))  # extends the watch, no second watcher
    watchers = spawned[:]
    assert len(watchers) == 2
    spawned.clear()

    def note(n, case, ts=None):
        return {"id": f"n{n}", "ts": ts or now[0], "case_id": case, "kind": "step_up_challenge"}

    inbox = {victim.id: [note(1, "rc-v1"), note(2, "rc-v2"), note(0, "rc-old", ts=EPOCH_MS - 1)],
             owner.id: [note(3, "rc-o1")]}
    for watcher, user in zip(watchers, (victim, owner)):
        assert next(watcher) == POLL_MS
        assert watcher.send(None) == Challenges(user.id)
        assert watcher.send(inbox[user.id]) == POLL_MS
        assert watcher.send(None) == Challenges(user.id)
        assert watcher.send(inbox[user.id]) == POLL_MS  # the same challenges: answered once
    assert len(spawned) == 3  # the challenge older than the simulator is not its own
    sent = {}
    for script in spawned:
        wait = next(script)
        answer = script.send(None)
        assert isinstance(answer, RecoveryAnswer) and answer.request.actor == "simulator-owner"
        with pytest.raises(StopIteration):
            script.send(True)  # the service took it
        sent[answer.case_id] = (answer.request.account, answer.request.answer, wait)
    now[0] += WATCH_MS
    for watcher, user in zip(watchers, (victim, owner)):  # WATCH_MS after the last change
        assert watcher.send(None) == Challenges(user.id)
        with pytest.raises(StopIteration):
            watcher.send([])
    assert not owners.watching
    return sent, owners, victim, owner


def test_owners_answer_challenges_correctly_wrongly_or_late_as_their_seed_says(monkeypatch):
    sent, owners, victim, owner = _owner_run(5, monkeypatch)
    assert sorted(owners.answered.values()) == ["correct", "late", "wrong"]  # each once first
    for case_id, (account, answer, wait) in sent.items():
        behaviour = owners.answered[case_id]
        truth = "confirm_compromise" if account == victim.id else "it_was_me"
        assert answer == {"wrong": "wrong_code"}.get(behaviour, truth), (behaviour, account)
        if behaviour == "late":  # past the 10 s SLA that runs from the challenge
            assert 12_000 <= wait <= 15_000
        else:
            assert 1000 <= wait <= 4000
    again, owners_again, *_ = _owner_run(5, monkeypatch)
    assert again == sent and owners_again.answered == owners.answered  # the seed's sequence
    with pytest.raises(ValueError, match="owner behaviours"):
        from pipelines.simulator.owners import check_owner_mix
        check_owner_mix({"correct": 1, "forgetful": 1})

"""``vigie simulate --live``: the same agent scripts, in real time, against the three HTTP
services (request bodies are the msgspec structs of ``pipelines.services.requests``, JSON-encoded).
``run_live`` paces requests to a target rate and starts a fraud case every ~``fraud_every_s``;
errors are counted and logged, never fatal. Each request carries the bearer token its
service wants (``Tokens``): the simulated user's own, or an internal one for what back-end
systems send (chargebacks, takeover reports, identity events), minted with the data dir's key.

Live-only choices: docs/simulator.md#live
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from typing import Optional
from urllib.parse import quote

import aiohttp
import msgspec

from pipelines.contracts import settings
from pipelines.services import auth, requests as rq
from pipelines.services.messaging import BACKEND_EVENTS
from pipelines.simulator import fraud, legit
from pipelines.simulator.owners import Owners, VerifiedContact
from pipelines.simulator.timing import LIVE
from pipelines.simulator.world import (AnalystVerdict, AssistantSwitch, CancelTransfer, Challenges,
                                       Deck, RecoveryAnswer, Script, Suggestion, SuggestionResponse,
                                       WarningFor, World)

log = logging.getLogger(__name__)
DEFAULT_USERS = 300
FIRST_FRAUD = (0.2, 0.75)  # the first fraud case starts after this share of fraud_every_s
# A sender looks at the chat this long after paying: the decision (and its warning) comes
# within a second or so, and a warned transfer waits out a cooling-off of 10 s or more.
WARNING_LOOK_S = 3.0
_encode = msgspec.json.Encoder().encode
_JSON = {"Content-Type": "application/json"}


def default_urls() -> dict[str, str]:
    ports = settings.load().service_ports
    return {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}


class Pacer:
    """Hands out send slots at most ``rate`` a second (a small burst allowed)."""

    def __init__(self, rate: float, burst_s: float = 0.2):
        self.interval, self.burst_s = 1.0 / rate, burst_s
        self.next = time.monotonic()

    def backlog(self) -> float:
        """Requests already waiting for a slot."""
        return max(0.0, self.next - time.monotonic()) / self.interval

    async def slot(self) -> None:
        now = time.monotonic()
        at = max(self.next, now - self.burst_s)
        self.next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


class Tokens:
    """Request headers with a bearer token per simulated user (``None``: an internal service's),
    minted on first use and again halfway through their lifetime."""

    TTL_S = 3600

    def __init__(self, issuer: Optional[auth.Issuer] = None):
        self.issuer = issuer or auth.Issuer()
        self.cache: dict[Optional[str], tuple[float, dict]] = {}  # user -> (renew at, headers)

    def headers(self, user: Optional[str]) -> dict:
        renew_at, headers = self.cache.get(user, (0.0, {}))
        if time.monotonic() >= renew_at:
            token = self.issuer.mint("simulator", user=user,
                                     scope="internal" if user is None else "user", ttl_s=self.TTL_S)
            headers = {**_JSON, "Authorization": f"Bearer {token}"}
            self.cache[user] = (time.monotonic() + self.TTL_S / 2, headers)
        return headers


def _subject(request) -> Optional[str]:
    """Whose token a request goes with (``None``: an internal service's)."""
    if isinstance(request, rq.MessageRequest):
        return request.sender
    if isinstance(request, rq.AccountEventRequest):
        return None if request.kind in BACKEND_EVENTS else request.account
    if isinstance(request, rq.ScamReportRequest):
        return request.reporter
    return None  # chargebacks and takeover reports: the bank's back office


class ServiceClient:
    """Sends each request or command to its service; returns what the script gets back."""

    def __init__(self, session: aiohttp.ClientSession, urls: dict[str, str], pacer: Pacer,
                 tokens: Optional[Tokens] = None):
        self.session, self.urls, self.pacer = session, urls, pacer
        self.tokens = tokens or Tokens()
        self.sent: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.refused = 0  # 423: the sender's account is locked
        self.over_limit = 0  # 422: past a hard limit of the payment service
        self.cancelled = 0  # transfers their senders called off after a warning
        self.verdicts_left = 0  # analyst verdicts: live, the analysts give theirs in the console
        m, p = urls["messaging"], urls["payment"]
        self._posts = {  # request type -> (endpoint name, url)
            rq.MessageRequest: ("POST /v1/messages", f"{m}/v1/messages"),
            rq.AccountEventRequest: ("POST /v1/account-events", f"{m}/v1/account-events"),
            rq.ScamReportRequest: ("POST /v1/reports", f"{m}/v1/reports"),
            rq.ChargebackRequest: ("POST /v1/chargebacks", f"{p}/v1/chargebacks"),
            rq.TakeoverReportRequest: ("POST /v1/takeover-reports", f"{m}/v1/takeover-reports"),
        }

    @property
    def total(self) -> int:
        return sum(self.sent.values())

    async def _call(self, endpoint: str, method: str, url: str, ok: tuple[int, ...],
                    read: bool = False, **kwargs):
        """(status, JSON body if ``read``); errors are counted, and give (None, None)."""
        await self.pacer.slot()
        self.sent[endpoint] = self.sent.get(endpoint, 0) + 1
        try:
            async with self.session.request(method, url, **kwargs) as resp:
                if resp.status in ok:
                    return resp.status, (await resp.json(content_type=None) if read else None)
                problem = f"{endpoint} {resp.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            problem = f"{endpoint} {exc.__class__.__name__}"
        self.errors[problem] = self.errors.get(problem, 0) + 1
        return None, None

    async def handle(self, command):
        kind = command.__class__
        if kind in self._posts:
            endpoint, url = self._posts[kind]
            await self._call(endpoint, "POST", url, (200, 201, 202), data=_encode(command),
                             headers=self.tokens.headers(_subject(command)))
            return None
        if kind is rq.TransferRequest:
            return await self._transfer(command)
        if kind is AnalystVerdict:
            self.verdicts_left += 1
            return None
        if kind is Suggestion:
            return await self._suggestion(command)
        if kind is SuggestionResponse:
            url = f"{self.urls['assistant']}/v1/suggestions/{quote(command.suggestion_id, safe='')}/response"
            status, _ = await self._call("POST /v1/suggestions/{id}/response", "POST", url,
                                         (200, 202), data=_encode(command.request),
                                         headers=self.tokens.headers(command.request.user))
            return status is not None
        if kind is AssistantSwitch:
            url = f"{self.urls['assistant']}/v1/users/{quote(command.user, safe='')}/assistant"
            await self._call("PUT /v1/users/{user}/assistant", "PUT", url, (200, 202, 204),
                             data=_encode({"enabled": command.enabled}),
                             headers=self.tokens.headers(command.user))
            return None
        if kind is WarningFor:
            return await self._warning(command)
        if kind is CancelTransfer:
            url = f"{self.urls['payment']}/v1/transfers/{quote(command.transfer_id, safe='')}/cancel"
            # 409: paid out meanwhile (too late) — the sender's answer, not an error
            status, _ = await self._call("POST /v1/transfers/{id}/cancel", "POST", url, (200, 409),
                                         headers={**self.tokens.headers(command.user),
                                                  "Idempotency-Key": uuid.uuid4().hex})
            self.cancelled += status == 200
            return status == 200
        if kind is Challenges:
            return await self._challenges(command.user)
        if kind is RecoveryAnswer:  # from the owner's app (or the attacker in its session)
            url = f"{self.urls['messaging']}/v1/recovery/{quote(command.case_id, safe='')}/answer"
            status, _ = await self._call("POST /v1/recovery/{case_id}/answer", "POST", url, (202,),
                                         data=_encode(command.request),
                                         headers=self.tokens.headers(command.request.account))
            return status is not None
        if kind is VerifiedContact:
            return await self._verified_contact(command)
        raise TypeError(f"no endpoint for {kind.__name__}")

    async def _verified_contact(self, query: VerifiedContact) -> Optional[str]:
        url = f"{self.urls['messaging']}/v1/owner-channel/{quote(query.user, safe='')}/outbox"
        _, body = await self._call("GET /v1/owner-channel/{account}/outbox", "GET", url, (200,),
                                   read=True, headers=self.tokens.headers(None))
        messages = body.get("messages") if isinstance(body, dict) else None
        codes = [m.get("code") for m in messages or ()
                 if isinstance(m, dict) and m.get("case_id") == query.case_id]
        return codes[-1] if codes and isinstance(codes[-1], str) else None

    async def _transfer(self, req: rq.TransferRequest) -> Optional[str]:
        # A key per transfer, as every client must send (a retry would reuse it).
        headers = {**self.tokens.headers(req.sender), "Idempotency-Key": uuid.uuid4().hex}
        status, body = await self._call("POST /v1/transfers", "POST",
                                        f"{self.urls['payment']}/v1/transfers", (201, 422, 423),
                                        read=True, data=_encode(req), headers=headers)
        if status == 423:
            self.refused += 1
            return None
        if status == 422:  # past a hard limit (pipelines/contracts/limits.py)
            self.over_limit += 1
            return None
        return body.get("transfer_id") if isinstance(body, dict) else None

    async def _warning(self, query: WarningFor) -> Optional[str]:
        await asyncio.sleep(WARNING_LOOK_S)
        url = f"{self.urls['messaging']}/v1/notifications/{quote(query.user, safe='')}"
        _, body = await self._call("GET /v1/notifications/{account}", "GET", url, (200,), read=True,
                                   headers=self.tokens.headers(query.user))
        items = body.get("notifications") if isinstance(body, dict) else None
        codes = [n.get("code") for n in items or () if isinstance(n, dict)
                 and n.get("kind") == "transfer_warning" and n.get("transfer_id") == query.transfer_id]
        return codes[-1] if codes and isinstance(codes[-1], str) else None

    async def _challenges(self, user: str) -> list[dict]:
        url = f"{self.urls['messaging']}/v1/notifications/{quote(user, safe='')}"
        _, body = await self._call("GET /v1/notifications/{account}", "GET", url, (200,), read=True,
                                   headers=self.tokens.headers(user))
        items = body.get("notifications") if isinstance(body, dict) else None
        return [n for n in items or () if isinstance(n, dict)
                and n.get("kind") == "step_up_challenge" and n.get("case_id")
                and isinstance(n.get("id"), str) and isinstance(n.get("ts"), int)]

    async def _suggestion(self, query: Suggestion):
        status, body = await self._call(
            "GET /v1/suggestions", "GET", f"{self.urls['assistant']}/v1/suggestions", (200,),
            read=True, params={"user": query.user, "conversation": query.conversation},
            headers=self.tokens.headers(query.user))
        items = body.get("suggestions") if isinstance(body, dict) else None
        items = [item for item in items or () if isinstance(item, dict) and item.get("suggestion_id")]
        if not items:
            return None
        # the newest by "ts" when the service gives it, else the last listed
        latest = max(reversed(items), key=lambda item: item.get("ts", 0))
        return latest["suggestion_id"], latest.get("amount_cents")


class LiveRunner:
    """Runs scripts as asyncio tasks on the wall clock, and keeps the traffic at ``rate``."""

    def __init__(self, client: ServiceClient, seed: int, users: int, rate: float, mix: dict,
                 fraud_every_s: float, owner_mix: Optional[dict] = None):
        self.client, self.rate, self.mix, self.fraud_every_s = client, rate, mix, fraud_every_s
        self.tasks: set[asyncio.Task] = set()
        self.world = World(seed, users, LIVE, lambda: int(time.time() * 1000), self.spawn)
        self.owners = Owners(self.world, seed, owner_mix)
        self.script_errors = 0

    def spawn(self, script: Script, delay_ms: int = 0) -> None:
        task = asyncio.get_running_loop().create_task(self._drive(script, delay_ms))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _drive(self, script: Script, delay_ms: int) -> None:
        if delay_ms:
            await asyncio.sleep(delay_ms / 1000)
        result = None
        try:
            while True:
                command = script.send(result)
                if command.__class__ is int:
                    await asyncio.sleep(command / 1000)
                    result = None
                else:
                    self.owners.saw(command)  # an owner keeps an eye on security changes
                    result = await self.client.handle(command)
        except StopIteration:
            pass
        except Exception:  # a bug in one script must not stop the demo
            self.script_errors += 1
            log.exception("simulator script failed")
        finally:
            script.close()

    async def keep_up(self) -> None:
        """Start everyday episodes whenever the traffic falls behind the target rate."""
        started = time.monotonic()
        while True:
            await asyncio.sleep(0.1)
            behind = self.rate * (time.monotonic() - started) - self.client.total - self.client.pacer.backlog()
            for _ in range(min(int(behind // 3) + 1, 20) if behind > 0 else 0):
                self.spawn(legit.episode(self.world, self.world.member()))

    async def frauds(self) -> None:
        """A fraud case soon after the start, then one every ~``fraud_every_s``; each
        scenario of the mix shows once (shuffled) before any repeats."""
        rng = self.world.rng
        deck = Deck(rng, self.mix)
        if not deck:
            return
        await asyncio.sleep(rng.uniform(*FIRST_FRAUD) * self.fraud_every_s)
        while True:
            code = deck.draw()
            log.info("simulator: fraud scenario %s starts", code)
            self.spawn(fraud.start(self.world, code))
            await asyncio.sleep(rng.expovariate(1.0 / self.fraud_every_s))

    async def report(self, every_s: float = 10.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            log.info("simulator: %d requests, %d errors %s, %d refused transfers (locked), "
                     "%d past a limit", self.client.total, sum(self.client.errors.values()),
                     self.client.errors, self.client.refused, self.client.over_limit)

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def run_live(seed: int = 7, rate: float = 50.0, duration_s: Optional[float] = None,
                   urls: Optional[dict] = None, users: int = DEFAULT_USERS,
                   mix: Optional[dict] = None, fraud_every_s: float = 20.0,
                   owner_mix: Optional[dict] = None) -> dict:
    """Drive the services until ``duration_s`` has passed, or Ctrl-C / SIGTERM.

    - ``rate``: target requests per second. New everyday episodes are started whenever the
      simulation falls behind the target, and a pacer never lets requests go out faster.
    - ``duration_s``: stop after that many seconds (``None``: until Ctrl-C or SIGTERM).
    - ``urls``: ``{"messaging": ..., "payment": ..., "assistant": ...}`` base URLs (defaults:
      the ports of ``pipelines.contracts.settings``, 8081-8083 on 127.0.0.1).
    - ``users``: the population; ``seed`` and ``mix`` as offline (the mix is used as relative
      weights). ``fraud_every_s`` (default 20): a fraud case starts every ~that many seconds,
      the first within 4-15 s by default, each scenario once before any repeats. Delays are
      the compressed ``timing.LIVE`` ones: scam reports 10-30 s after the transfer,
      chargebacks 1-2 min after, takeover reports (the ground truth) 20-60 s after the takeover.
    - ``owner_mix``: how account owners answer step-up challenges (``correct``, ``wrong``,
      ``late``, relative weights; see ``pipelines.simulator.owners``).
    """
    if rate <= 0 or users < 2:
        raise ValueError("the simulation needs a positive rate and at least 2 users")
    urls = {**default_urls(), **(urls or {})}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:  # the supervisor stops us with SIGTERM: finish cleanly and print the stats
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        handles_sigterm = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
        handles_sigterm = False
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        client = ServiceClient(session, urls, Pacer(rate))
        runner = LiveRunner(client, seed, users, rate, fraud.check_mix(mix), fraud_every_s,
                            owner_mix)
        drivers = [loop.create_task(c) for c in (runner.keep_up(), runner.frauds(), runner.report())]
        try:
            await asyncio.wait_for(stop.wait(), duration_s)
        except asyncio.TimeoutError:
            pass
        finally:
            for task in drivers:
                task.cancel()
            await asyncio.gather(*drivers, return_exceptions=True)
            await runner.stop()
            if handles_sigterm:
                loop.remove_signal_handler(signal.SIGTERM)
            stats = _stats(client, runner, time.monotonic() - started)
            log.info("simulator stopped: %s", stats)
    return stats


def _stats(client: ServiceClient, runner: LiveRunner, seconds: float) -> dict:
    return {"requests": client.total, "seconds": round(seconds, 3),
            "requests_per_s": round(client.total / seconds, 1) if seconds else None,
            "by_endpoint": client.sent, "errors": client.errors,
            "refused_transfers": client.refused, "over_limit_transfers": client.over_limit,
            "cancelled_after_warning": client.cancelled, "owner_answers": runner.owners.answered,
            "attacker_answers": runner.owners.attacked,
            "verdicts_left_to_analysts": client.verdicts_left,
            "script_errors": runner.script_errors, "by_scenario": runner.world.by_scenario,
            "users": len(runner.world.pop)}

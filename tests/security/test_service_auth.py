"""Service authentication (issue 11, item 1): every endpoint of the three services, served
in-process against the session's broker, refuses a call without a valid token (401, with
WWW-Authenticate and a reason), a valid token for another user or of the wrong scope (403,
with a reason), and takes the right one (2xx).

A forged token is each of: signed by another key under the real ``kid``, expired, for another
audience, ``alg: none``, HS256 keyed with the service's public key (the classic confusion), an
unknown ``kid``, a user token without its user, and plain garbage."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Optional

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from service_support import acc, aio, as_internal, as_user, eventually, publisher, rid, serving

from pipelines.services import assistant, auth, messaging, payment, requests as rq
from pipelines.services.common import now_ms
from pipelines.services.errors import ApiError

pytestmark = pytest.mark.kafka


@dataclass
class Endpoint:
    method: str
    path: str
    body: Optional[dict]
    owner: Optional[str]  # the raw account whose app may call it; None: internal only
    ok: int  # the right caller's status
    also_internal: bool = False  # a back-end service may call it too

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _signed(claims: dict, key=None, kid: Optional[str] = None, algorithm: str = "EdDSA") -> str:
    issuer = auth.Issuer()
    return jwt.encode(claims, key if key is not None else issuer.key, algorithm=algorithm,
                      headers={"kid": kid or issuer.kid})


def forged_tokens(user: str) -> dict[str, str]:
    """Tokens a service must refuse with a 401, by what is wrong with them."""
    now = int(time.time())
    claims = {"sub": "attacker", "scope": "user", "user": user, "aud": auth.AUDIENCE,
              "iat": now, "exp": now + 600}
    public_pem = (auth.keys_dir() / f"{auth.Issuer().kid}.pub").read_bytes()
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": auth.Issuer().kid})
    return {
        "another key, the real kid": _signed(claims, key=Ed25519PrivateKey.generate()),
        "expired": _signed({**claims, "iat": now - 7200, "exp": now - 3600}),
        "another audience": _signed({**claims, "aud": "someone-else"}),
        "alg none": unsigned,
        "HS256 keyed with the public key": _hs256(claims, public_pem),
        "unknown kid": _signed(claims, key=Ed25519PrivateKey.generate(), kid="k-nobody"),
        "user scope without a user": _signed({k: v for k, v in claims.items() if k != "user"}),
        "unknown scope": _signed({**claims, "scope": "admin"}),
        "not a JWT": "not-a-token",
    }


def _hs256(claims: dict, secret: bytes) -> str:
    """PyJWT refuses to sign HS256 with a PEM key; an attacker builds the token by hand."""
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": auth.Issuer().kid}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


async def refused(client, ep: Endpoint, headers: dict, status: int, reason: str) -> None:
    resp = await client.request(ep.method, ep.path, json=ep.body, headers=headers)
    assert resp.status == status, (str(ep), headers, await resp.text())
    error = (await resp.json())["error"]
    assert reason in error, (str(ep), error)
    if status == 401:
        assert resp.headers["WWW-Authenticate"].startswith("Bearer"), str(ep)


async def check(client, ep: Endpoint) -> dict:
    """Every refusal, then the right caller; the right caller's answer."""
    await refused(client, ep, {}, 401, "missing bearer token")
    await refused(client, ep, {"Authorization": "Basic dXNlcjpwYXNz"}, 401, "missing bearer token")
    for what, token in forged_tokens(ep.owner or rid()).items():
        await refused(client, ep, {"Authorization": f"Bearer {token}"}, 401, "invalid token")
    if ep.owner is None:
        await refused(client, ep, as_user(rid()), 403, "internal endpoint")
        right = as_internal()
    else:
        await refused(client, ep, as_user(rid()), 403, "the token is for another user")
        if not ep.also_internal:
            await refused(client, ep, as_internal(), 403, "an end user's token is required")
        right = as_user(ep.owner)
    resp = await client.request(ep.method, ep.path, json=ep.body, headers=right)
    assert resp.status == ep.ok, (str(ep), await resp.text())
    return await resp.json()


# --- messaging -------------------------------------------------------------------------------
@aio
async def test_messaging_endpoints_want_their_callers_token(kafka):
    user, case_id, start = rid(), rid("case"), now_ms() - 60_000
    endpoints = [
        Endpoint("POST", "/v1/messages", {"sender": user, "recipient": rid(),
                                          "conversation": rid("conv"), "text": "salut"}, user, 202),
        Endpoint("POST", "/v1/account-events", {"account": user, "kind": "card_registered",
                                                "card_number": "4111111111111111"}, user, 202,
                 also_internal=True),
        Endpoint("POST", "/v1/reports", {"reporter": user, "reported": rid()}, user, 202),
        Endpoint("POST", "/v1/takeover-reports", {
            "account": user, "occurred_ts": start, "compromise_from_ts": start,
            "compromise_to_ts": start + 1000}, None, 202),
        Endpoint("GET", f"/v1/notifications/{user}", None, user, 200),
        Endpoint("POST", f"/v1/recovery/{case_id}/answer",
                 {"account": user, "answer": "it_was_me", "code": "123456"}, user, 202),
        Endpoint("GET", f"/v1/owner-channel/{user}/outbox", None, None, 200),
    ]
    async with serving(messaging) as client:
        for ep in endpoints:
            await check(client, ep)
        assert (await client.get("/healthz")).status == 200  # open: health
        assert (await client.get("/openapi.json")).status == 200  # open: the API, no data
        assert (await client.get("/metrics")).status == 401  # an internal token (security.md)


@aio
async def test_identity_back_end_account_events_take_internal_tokens_only(kafka):
    """A sign-up, a login, a failed login or a password reset happens before or without the
    user's session: the owner's own token cannot vouch for one (the issue's probe posted
    ``password_reset`` events for any account)."""
    user = rid()
    async with serving(messaging) as client:
        for kind in sorted(messaging.BACKEND_EVENTS):
            body = {"account": user, "kind": kind}
            resp = await client.post("/v1/account-events", json=body, headers=as_user(user))
            assert resp.status == 403, (kind, await resp.text())
            assert "internal" in (await resp.json())["error"]
            resp = await client.post("/v1/account-events", json=body, headers=as_internal())
            assert resp.status == 202, (kind, await resp.text())


# --- assistant -------------------------------------------------------------------------------
@aio
async def test_assistant_endpoints_want_their_users_token(kafka):
    bob, alice, conv = rid(), rid(), rid("conv")
    async with serving(assistant) as client, publisher() as pub:
        await check(client, Endpoint("PUT", f"/v1/users/{bob}/assistant", {"enabled": True},
                                     bob, 200))
        req = rq.MessageRequest(sender=alice, recipient=bob, conversation=conv,
                                text="tu me dois 25€ pour le resto")
        await pub.publish("messages", rq.message_event(req, uuid.uuid4().hex, now_ms()))

        async def listed():
            resp = await client.get("/v1/suggestions", params={"user": bob, "conversation": conv},
                                    headers=as_user(bob))
            return (await resp.json())["suggestions"]
        [suggestion] = await eventually(listed)
        query = f"/v1/suggestions?user={bob}&conversation={conv}"
        found = await check(client, Endpoint("GET", query, None, bob, 200))
        assert found["suggestions"] == [suggestion]
        await check(client, Endpoint("POST", f"/v1/suggestions/{suggestion['suggestion_id']}"
                                     "/response", {"user": bob, "response": "declined"}, bob, 202))


# --- payment ---------------------------------------------------------------------------------
@aio
async def test_payment_endpoints_want_their_callers_token(kafka):
    sender, recipient = rid(), rid()
    async with serving(payment) as client:
        created = await check(client, Endpoint("POST", "/v1/transfers", {
            "sender": sender, "recipient": recipient, "amount_cents": 1000}, sender, 201))
        tid = created["transfer_id"]
        view = await check(client, Endpoint("GET", f"/v1/transfers/{tid}", None, sender, 200))
        assert view["sender"] == acc(sender)
        # the recipient may not read it either: the history carries the scoring's reasons
        resp = await client.get(f"/v1/transfers/{tid}", headers=as_user(recipient))
        assert resp.status == 403
        await check(client, Endpoint("POST", "/v1/chargebacks", {"transfer_id": tid}, None, 202))
        await check(client, Endpoint("POST", f"/v1/transfers/{tid}/cancel", None, sender, 200))


# --- keys ------------------------------------------------------------------------------------
def test_a_rotated_key_signs_from_then_on_and_a_removed_one_stops_verifying(tmp_path):
    first = auth.rotate(tmp_path)
    old = auth.Issuer(tmp_path).mint("app", user="u1")
    verifier = auth.Verifier(tmp_path)  # a running service, started before the rotation
    second = auth.rotate(tmp_path)
    new = auth.Issuer(tmp_path).mint("app", user="u1")
    assert jwt.get_unverified_header(new)["kid"] == second != first
    verifier.loaded_at -= 2  # the unknown kid is looked up (at most once a second)
    assert verifier.caller(f"Bearer {new}") == verifier.caller(f"Bearer {old}") == auth.Caller(
        client="app", scope="user", user="u1")
    (tmp_path / f"{first}.pub").unlink()  # retired
    verifier.loaded_at -= auth.Verifier.RELOAD_S  # as after the reload period
    with pytest.raises(ApiError) as refused:
        verifier.caller(f"Bearer {old}")
    assert (refused.value.status, refused.value.reason) == (
        401, "invalid token: unknown signing key")
    assert verifier.caller(f"Bearer {new}").user == "u1"


def test_vigie_tokens_mints_what_the_services_accept_and_rotates(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from pipelines.cli.tokens import tokens

    monkeypatch.setenv("VIGIE_JWT_DIR", str(tmp_path))
    run = CliRunner().invoke
    user = run(tokens, ["mint", "--client", "ops", "--user", "alice", "--ttl", "60"])
    internal = run(tokens, ["mint", "--client", "backoffice", "--internal"])
    verifier = auth.Verifier(tmp_path)
    assert verifier.caller(f"Bearer {user.output.strip()}") == auth.Caller("ops", "user", "alice")
    assert verifier.caller(f"Bearer {internal.output.strip()}") == auth.Caller(
        "backoffice", "internal")
    assert jwt.decode(user.output.strip(), options={"verify_signature": False})["exp"] - \
        jwt.decode(user.output.strip(), options={"verify_signature": False})["iat"] == 60
    for wrong in (["--client", "x"], ["--client", "x", "--user", "a", "--internal"]):
        result = run(tokens, ["mint", *wrong])
        assert result.exit_code == 2 and "either --user U or --internal" in result.output
    rotated = run(tokens, ["rotate"])
    assert rotated.exit_code == 0 and len(list(tmp_path.glob("*.key"))) == 2

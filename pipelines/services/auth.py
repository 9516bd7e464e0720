"""Who is calling a service: signed bearer tokens (JWT, EdDSA/Ed25519, PyJWT).

Every endpoint but ``/healthz`` wants ``Authorization: Bearer <token>``. A token names

- ``sub``: the calling client (``messenger-app``, ``simulator``, ``bank-backoffice``…);
- ``scope``: ``user`` for an end user's app, which may act only for ``user`` (the raw account id
  the app signed in: a transfer's sender, a notification's owner, an assistant switch's owner),
  or ``internal`` for another back-end service (chargebacks, labels, takeover reports);
- ``aud`` (``vigie``), ``iat``, ``exp``, and in its header the ``kid`` of the key that signed it.

Keys are Ed25519 pairs under ``<data dir>/secrets/jwt/`` (``<kid>.key`` private, 0600;
``<kid>.pub`` public), made by ``ensure_keys`` on first use, never constants in the code.
Services only verify, with the public keys, so a service cannot mint tokens. Rotation: a new
kid signs from then on; tokens signed by an older kid verify until its ``.pub`` is removed.
``VIGIE_JWT_DIR`` points elsewhere (a deployment's issuer publishes only the ``.pub`` files).

Refusals: 401 (no token, malformed, bad signature, expired, unknown kid) and 403 (a valid token
for another user, or the wrong scope), each with its reason.
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pipelines.contracts import keyfiles, settings as settings_mod
from pipelines.contracts.privacy import pseudonymize
from pipelines.services.errors import ApiError

log = logging.getLogger(__name__)
AUDIENCE = "vigie"
SCOPES = ("user", "internal")
ALGORITHM = "EdDSA"
LEEWAY_S = 30  # clocks of issuer and service may differ a little


def keys_dir(conf: Optional[settings_mod.Settings] = None) -> Path:
    override = settings_mod.environment().deployment.jwt_dir
    return Path(override) if override else (conf or settings_mod.load()).data_dir / "secrets" / "jwt"


def ensure_keys(directory: Optional[Path] = None) -> str:
    """The newest signing key's kid, making a first key pair if there is none."""
    directory = directory or keys_dir()
    kids = sorted(p.stem for p in directory.glob("*.key"))
    return kids[-1] if kids else rotate(directory)


def rotate(directory: Optional[Path] = None) -> str:
    """Make a new key pair; it signs from now on (kids sort by creation time)."""
    directory = directory or keys_dir()
    keyfiles.private_dir(directory)
    now = time.time()  # microseconds in the kid: two rotations in one second still sort
    kid = (time.strftime("k%Y%m%dT%H%M%S", time.gmtime(now))
           + f"{int(now % 1 * 1e6):06d}-{os.urandom(3).hex()}")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    keyfiles.write_private(directory / f"{kid}.pub", public.decode())
    keyfiles.write_private(directory / f"{kid}.key", private.decode())  # last: a .key has its .pub
    return kid


class Issuer:
    """Mints tokens with the newest private key (the demo's stand-in for an identity provider)."""

    def __init__(self, directory: Optional[Path] = None):
        directory = directory or keys_dir()
        self.kid = ensure_keys(directory)
        self.key = serialization.load_pem_private_key((directory / f"{self.kid}.key").read_bytes(),
                                                      password=None)

    def mint(self, client: str, user: Optional[str] = None, scope: str = "user",
             ttl_s: int = 3600) -> str:
        if ttl_s <= 0:
            raise ValueError("a token's lifetime is positive")
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        if (scope == "user") != (user is not None):
            raise ValueError("a user token names its user; an internal token names none")
        now = int(time.time())
        claims = {"sub": client, "scope": scope, "aud": AUDIENCE, "iat": now, "exp": now + ttl_s}
        if user is not None:
            claims["user"] = user
        return jwt.encode(claims, self.key, algorithm=ALGORITHM, headers={"kid": self.kid})


@dataclass(frozen=True)
class Caller:
    client: str
    scope: str
    user: Optional[str] = None  # raw account id; never logged

    @property
    def account(self) -> Optional[str]:
        """The user's account as the topics know it (keyed hash)."""
        return pseudonymize("account", self.user) if self.user is not None else None


class Verifier:
    """Checks tokens against the public keys in the keys directory, re-read every
    ``RELOAD_S`` (a removed key stops verifying, a new one starts, with no restart) and at once
    for an unknown kid (at most once a second: a new kid right after ``rotate``)."""

    RELOAD_S = 10.0

    def __init__(self, directory: Optional[Path] = None):
        self.directory = directory or keys_dir()
        self.keys: dict = {}
        self.loaded_at = float("-inf")
        self._load()
        if not self.keys:
            log.warning("no token signing keys in %s yet: every request will get a 401 until "
                        "there are (vigie run or vigie tokens rotate makes them)", self.directory)

    def _load(self) -> None:
        self.keys = {p.stem: serialization.load_pem_public_key(p.read_bytes())
                     for p in self.directory.glob("*.pub")}
        self.loaded_at = time.monotonic()

    def _key(self, kid) -> object:
        age = time.monotonic() - self.loaded_at
        if age > self.RELOAD_S or (kid not in self.keys and (age > 1.0 or not self.keys)):
            self._load()
        if kid not in self.keys:
            raise ApiError(401, "invalid token: unknown signing key", BEARER)
        return self.keys[kid]

    def caller(self, authorization: Optional[str]) -> Caller:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)", BEARER)
        try:
            kid = jwt.get_unverified_header(token.strip()).get("kid")
            claims = jwt.decode(token.strip(), self._key(kid), algorithms=[ALGORITHM],
                                audience=AUDIENCE, leeway=LEEWAY_S,
                                options={"require": ["sub", "scope", "exp", "iat", "aud"]})
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "invalid token: expired", BEARER) from None
        except jwt.InvalidTokenError as exc:
            raise ApiError(401, f"invalid token: {exc}", BEARER) from None
        scope, user = claims.get("scope"), claims.get("user")
        if scope not in SCOPES or (scope == "user") != isinstance(user, str):
            raise ApiError(401, "invalid token: bad scope or user claim", BEARER)
        return Caller(client=str(claims["sub"]), scope=scope, user=user)


BEARER = {"WWW-Authenticate": 'Bearer realm="vigie"'}
CALLER = web.RequestKey("caller", Caller)  # where the middleware leaves the request's caller
OPEN_PATHS = frozenset({"/healthz", "/openapi.json"})  # health; the API reference (no data)


def middleware(verifier: Verifier):
    """Authenticates every request but ``OPEN_PATHS``; the caller is ``request[CALLER]``."""
    @web.middleware
    async def authenticate(request: web.Request, handler):
        if request.path not in OPEN_PATHS:
            request[CALLER] = verifier.caller(request.headers.get("Authorization"))
        return await handler(request)
    return authenticate


# --- what a handler asks of its caller ----------------------------------------------------
def acting_for(request: web.Request, raw_account: str) -> Caller:
    """The caller, if it is this end user's app; 403 otherwise."""
    return acting_for_account(request, pseudonymize("account", raw_account))


def acting_for_account(request: web.Request, account: str) -> Caller:
    """The same, with the account as a keyed hash (as stored with a transfer)."""
    caller: Caller = request[CALLER]
    if caller.scope != "user":
        raise ApiError(403, "an end user's token is required here")
    if caller.account != account:
        raise ApiError(403, "the token is for another user")
    return caller


def internal(request: web.Request) -> Caller:
    """The caller, if it is an internal service; 403 for an end user's token."""
    caller: Caller = request[CALLER]
    if caller.scope != "internal":
        raise ApiError(403, "internal endpoint: an internal service token is required")
    return caller

"""The console's signature on what it writes (analyst actions): Ed25519, so the console alone
holds the signing key and the stream workers, which verify, hold only the public key and cannot
sign one themselves.

The signed payload is every field of the event but ``signature`` (actor and role included), as
JSON with sorted keys, after a fixed prefix that names what it is (a signature made for something
else never verifies here). Changing any field, even one character of a reason, breaks it.

Keys, raw 32 bytes in base64:

- ``VIGIE_CONSOLE_SIGNING_KEY``: the private key (the console only);
- ``VIGIE_CONSOLE_VERIFY_KEY``: the public key, or several separated by commas while a new key is
  rolled out (the workers).

Without them (the demo, the tests), the pair is generated once per data dir, in
``<data dir>/secrets/console-signing.key`` (0600) and ``console-verify.key``: by the first
process that signs. A verifier never generates anything: until the console has signed once, it
refuses every action ("no verify key").

>>> import msgspec
>>> class Note(msgspec.Struct, frozen=True):
...     text: str
...     signature: str = ""
>>> private, public = new_key_pair()
>>> signed = sign(Note("hello"), private)
>>> verify(signed, [public]) is None
True
>>> verify(msgspec.structs.replace(signed, text="hullo"), [public])
'bad signature: not signed by the console'
>>> verify(Note("hello"), [public])
'unsigned: no console signature'
"""
from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Optional, Sequence

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pipelines.contracts import keyfiles, settings

SIGNING_KEY_ENV = "VIGIE_CONSOLE_SIGNING_KEY"
VERIFY_KEY_ENV = "VIGIE_CONSOLE_VERIFY_KEY"
PREFIX = b"vigie console signature v1\n"  # what the signature is for
_RAW = dict(encoding=serialization.Encoding.Raw)


class BadKey(ValueError):
    """A key in the environment or the data dir that is not a base64 Ed25519 key."""


def payload(event: msgspec.Struct) -> bytes:
    """The bytes signed for ``event``: every field but ``signature``, keys sorted."""
    fields = msgspec.to_builtins(event)
    fields.pop("signature", None)
    return PREFIX + msgspec.json.encode(fields, order="sorted")


def sign(event: msgspec.Struct, key: Optional[Ed25519PrivateKey] = None):
    """``event`` with its ``signature`` set (base64url, no padding)."""
    key = key or signing_key()
    signature = base64.urlsafe_b64encode(key.sign(payload(event))).rstrip(b"=").decode()
    return msgspec.structs.replace(event, signature=signature)


def verify(event: msgspec.Struct, keys: Optional[Sequence[Ed25519PublicKey]] = None) -> Optional[str]:
    """None if one of ``keys`` (default: ``verify_keys()``) signed ``event``, else why not."""
    if not event.signature:
        return "unsigned: no console signature"
    try:
        keys = verify_keys() if keys is None else keys
    except BadKey as exc:  # a misconfigured worker refuses, with the reason, and keeps running
        return f"no usable verify key: {exc}"
    if not keys:
        return f"no verify key: set {VERIFY_KEY_ENV} or let the console sign once"
    try:
        raw = base64.urlsafe_b64decode(event.signature + "=" * (-len(event.signature) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    data = payload(event)
    for key in keys:
        try:
            key.verify(raw, data)
            return None
        except InvalidSignature:
            continue
    return "bad signature: not signed by the console"


# --- keys -------------------------------------------------------------------------------------
def new_key_pair() -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    private = Ed25519PrivateKey.generate()
    return private, private.public_key()


def _b64(key) -> str:
    if isinstance(key, Ed25519PrivateKey):
        raw = key.private_bytes(format=serialization.PrivateFormat.Raw,
                                encryption_algorithm=serialization.NoEncryption(), **_RAW)
    else:
        raw = key.public_bytes(format=serialization.PublicFormat.Raw, **_RAW)
    return base64.b64encode(raw).decode()


def _load(text: str, cls, where: str):
    load = cls.from_private_bytes if cls is Ed25519PrivateKey else cls.from_public_bytes
    try:
        return load(base64.b64decode(text.strip(), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise BadKey(f"{where} is not a base64 Ed25519 key ({exc})") from None


def secrets_dir() -> Path:
    return settings.load().data_dir / "secrets"


def signing_key() -> Ed25519PrivateKey:
    """The console's private key: the environment's, else the data dir's (made on first use)."""
    given = settings.environment().console.console_signing_key
    if given is not None:
        return _load(given.get_secret_value(), Ed25519PrivateKey, SIGNING_KEY_ENV)
    folder = secrets_dir()
    path = folder / "console-signing.key"
    # made once, atomically: two consoles starting together agree on the one that won
    private = _load(keyfiles.read_or_create(path, lambda: _b64(new_key_pair()[0])),
                    Ed25519PrivateKey, str(path))
    public = folder / "console-verify.key"
    if not public.exists():  # derived from the key that won, whoever writes it
        keyfiles.write_private(public, _b64(private.public_key()) + "\n")
    return private


def verify_keys() -> list[Ed25519PublicKey]:
    """The public keys a worker accepts: the environment's, else the data dir's (none yet: [])."""
    given = settings.environment().console.console_verify_key
    if given:
        return [_load(k, Ed25519PublicKey, VERIFY_KEY_ENV) for k in given.split(",") if k.strip()]
    path = secrets_dir() / "console-verify.key"
    return [_load(path.read_text(), Ed25519PublicKey, str(path))] if path.exists() else []

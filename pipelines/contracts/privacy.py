"""Keyed hashes for every identifier that leaves a service.

Raw account, device, IP, card, bank-account and conversation identifiers never
enter Kafka or the lake: the services replace them with an HMAC-SHA256 under a
key from the environment (``VIGIE_HASH_KEY``; a demo's is generated once in its secrets dir). The prefix says what kind of
identifier it was, so a device hash can never be joined to an account by mistake,
and the schemas accept only this shape.

>>> device = pseudonymize("device", "ios-8F2A")
>>> device[:2], len(device), is_pseudonym(device)
('d_', 22, True)
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
from functools import lru_cache

from pipelines.contracts import settings

log = logging.getLogger(__name__)

PREFIXES = {
    "account": "a_",
    "device": "d_",
    "ip": "i_",
    "card": "k_",
    "bank_account": "b_",
    "conversation": "c_",
}
HEX_CHARS = 20  # 80 bits: collision-free at messenger scale, short in logs and Parquet
PATTERNS = {kind: f"^{prefix}[0-9a-f]{{{HEX_CHARS}}}$" for kind, prefix in PREFIXES.items()}
CODE_DIGEST = f"^v_[0-9a-f]{{{HEX_CHARS}}}$"  # the shape of ``code_digest``
_ANY_HASH = re.compile(r"^[adikbc]_[0-9a-f]{%d}$" % HEX_CHARS)


@lru_cache(maxsize=1)
def hash_key() -> bytes:
    """The deployment's HMAC key (read once: every keyed hash of the process uses it)."""
    conf = settings.load()  # outside a demo, fails without VIGIE_HASH_KEY
    if conf.hash_key_is_demo:
        log.warning("VIGIE_HASH_KEY is not set: a demo, keyed with the key generated in %s. "
                    "Never run production traffic with it.", conf.secrets_dir)
    return conf.hash_key


def forget_key() -> None:
    """Forget the cached key and every hash made with it. Only for a process that moves from
    one deployment to another: the tests' and benchmarks' fresh environments
    (``pipelines.bench.harness``), whose processes hash with another key."""
    hash_key.cache_clear()
    pseudonymize.cache_clear()


@lru_cache(maxsize=1_000_000)
def pseudonymize(kind: str, raw: str) -> str:
    """The keyed hash of one raw identifier, e.g. ``pseudonymize("device", "ios-8F2A…")``."""
    digest = hmac.new(hash_key(), f"{kind}:{raw}".encode(), hashlib.sha256).hexdigest()
    return PREFIXES[kind] + digest[:HEX_CHARS]


def is_pseudonym(value: str) -> bool:
    return bool(_ANY_HASH.match(value))


def code_digest(scope: str, code: str) -> str:
    """The keyed hash of a one-time code, bound to ``scope`` (a recovery case), e.g. what a
    topic carries for a verification code sent to an account's owner. Not cached, unlike
    ``pseudonymize``: a code is a secret and does not stay in memory once hashed."""
    digest = hmac.new(hash_key(), f"code:{scope}:{code}".encode(), hashlib.sha256).hexdigest()
    return "v_" + digest[:HEX_CHARS]

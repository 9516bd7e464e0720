"""Every setting Vigie reads from the environment, in one place.

The same code talks to a production cluster or to the embedded broker: only
``KAFKA_BOOTSTRAP_SERVERS`` (and the optional SASL/TLS variables) change. On the embedded broker
a process names its principal (``VIGIE_KAFKA_PRINCIPAL``: worker, sink, payment…) and its
password is read from the secrets dir, where the broker's start generated it (docs/security.md).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pipelines.contracts import keyfiles

REPO_ROOT = Path(__file__).resolve().parents[2]


def env_seconds(name: str, default: float) -> float:
    """A duration in seconds from the environment (unset or empty: the default)."""
    return float(os.environ.get(name) or default)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


class MissingSecret(RuntimeError):
    """A key or credential Vigie needs is not configured; the message says what to set."""


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None
    # The principal's password file in the secrets dir (the embedded broker's principals), read
    # when a client starts: the broker writes it on its first start, after this was loaded.
    sasl_password_file: Path | None = None
    ssl_cafile: str | None = None

    def password(self) -> str | None:
        if self.sasl_password is not None or self.sasl_password_file is None:
            return self.sasl_password
        try:
            return self.sasl_password_file.read_text().strip()
        except FileNotFoundError:
            raise MissingSecret(
                f"no Kafka password for {self.sasl_username!r} at {self.sasl_password_file}: the "
                "embedded broker writes it when it starts (vigie run, vigie broker); for another "
                "cluster set KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD") from None

    def aiokafka_kwargs(self) -> dict:
        """Connection arguments for aiokafka producers, consumers and admin clients."""
        kwargs: dict = {"bootstrap_servers": self.bootstrap_servers,
                        "security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = self._ssl_context()
        if self.sasl_mechanism:
            kwargs.update(sasl_mechanism=self.sasl_mechanism,
                          sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.password())
        return kwargs

    def faust_broker_credentials(self):
        """The same settings in Faust's terms (None on a plaintext cluster)."""
        import faust  # why: only the Faust apps ask; contracts stay light for every other part

        ssl_context = self._ssl_context() if self.security_protocol in ("SSL", "SASL_SSL") else None
        if self.sasl_mechanism:
            return faust.SASLCredentials(username=self.sasl_username, password=self.password(),
                                         mechanism=self.sasl_mechanism, ssl_context=ssl_context)
        if ssl_context is not None:
            return faust.SSLCredentials(ssl_context)
        return None

    def _ssl_context(self):
        from aiokafka.helpers import create_ssl_context  # why: TLS clusters only; see faust above

        return create_ssl_context(cafile=self.ssl_cafile)


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    kafka: KafkaSettings
    partitions: int
    hash_key: bytes
    hash_key_is_demo: bool  # the secrets dir's generated key (VIGIE_DEMO), not VIGIE_HASH_KEY
    secrets_dir: Path
    service_ports: dict = field(default_factory=dict)

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"


DEFAULT_BROKER_PORT = 19092
# SCRAM for every principal on the embedded broker's client listener (pipelines/kafka/broker.py).
EMBEDDED_MECHANISM = "SCRAM-SHA-256"


def data_dir() -> Path:
    return Path(_env("VIGIE_DATA_DIR", str(REPO_ROOT / "data" / "local"))).resolve()


def secrets_dir() -> Path:
    """Where generated secrets live: ``VIGIE_SECRETS_DIR``, or ``<data dir>/secrets``."""
    return Path(_env("VIGIE_SECRETS_DIR") or data_dir() / "secrets").resolve()


def kafka_password_file(secrets: Path, principal: str) -> Path:
    return secrets / "kafka" / principal


def is_demo() -> bool:
    """A demo (``VIGIE_DEMO=1``: set by vigie run, the tests and the benchmarks) may use keys
    generated in its secrets dir; anything else must be given its HMAC key."""
    return _env("VIGIE_DEMO") == "1"


@lru_cache(maxsize=8)
def _demo_hash_key(path: Path) -> bytes:
    return keyfiles.read_or_create(path).encode()


def _hash_key() -> tuple[bytes, bool]:
    key = _env("VIGIE_HASH_KEY")
    if key is not None:
        return key.encode(), False
    if not is_demo():
        raise MissingSecret(
            "VIGIE_HASH_KEY is not set: it is the HMAC key that turns raw identifiers into keyed "
            "hashes, and every process of one deployment needs the same one. Set it, or set "
            "VIGIE_DEMO=1 for a demo that uses a key generated once in its secrets dir.")
    return _demo_hash_key(secrets_dir() / "hash.key"), True


def _kafka() -> KafkaSettings:
    principal = _env("VIGIE_KAFKA_PRINCIPAL")
    username = _env("KAFKA_SASL_USERNAME")
    # A principal of the embedded broker: its password from the secrets dir, over SCRAM.
    from_secrets = username is None and principal is not None
    return KafkaSettings(
        # Unset: the embedded broker, on VIGIE_BROKER_PORT.
        bootstrap_servers=_env("KAFKA_BOOTSTRAP_SERVERS",
                               f"127.0.0.1:{_env('VIGIE_BROKER_PORT', str(DEFAULT_BROKER_PORT))}"),
        security_protocol=_env("KAFKA_SECURITY_PROTOCOL",
                               "SASL_PLAINTEXT" if from_secrets else "PLAINTEXT"),
        sasl_mechanism=_env("KAFKA_SASL_MECHANISM", EMBEDDED_MECHANISM if from_secrets else None),
        sasl_username=principal if from_secrets else username,
        sasl_password=_env("KAFKA_SASL_PASSWORD"),
        sasl_password_file=kafka_password_file(secrets_dir(), principal) if from_secrets else None,
        ssl_cafile=_env("KAFKA_SSL_CAFILE"),
    )


def load() -> Settings:
    """Read the settings from the environment (cheap; call it where you need it). Outside a
    demo, fails (MissingSecret) without VIGIE_HASH_KEY."""
    hash_key, demo_key = _hash_key()
    return Settings(
        data_dir=data_dir(),
        kafka=_kafka(),
        partitions=int(_env("VIGIE_PARTITIONS", "4")),
        hash_key=hash_key,
        hash_key_is_demo=demo_key,
        secrets_dir=secrets_dir(),
        service_ports={
            "messaging": int(_env("VIGIE_MESSAGING_PORT", "8081")),
            "payment": int(_env("VIGIE_PAYMENT_PORT", "8082")),
            "assistant": int(_env("VIGIE_ASSISTANT_PORT", "8083")),
        },
    )

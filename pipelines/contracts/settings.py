"""Every setting Vigie reads from the environment, in one place.

The same code talks to a production cluster or to the embedded broker: only
``KAFKA_BOOTSTRAP_SERVERS`` (and the optional SASL/TLS variables) change.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def env_seconds(name: str, default: float) -> float:
    """A duration in seconds from the environment (unset or empty: the default)."""
    return float(os.environ.get(name) or default)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None

    def aiokafka_kwargs(self) -> dict:
        """Connection arguments for aiokafka producers, consumers and admin clients."""
        kwargs: dict = {"bootstrap_servers": self.bootstrap_servers,
                        "security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            kwargs["ssl_context"] = self._ssl_context()
        if self.sasl_mechanism:
            kwargs.update(sasl_mechanism=self.sasl_mechanism,
                          sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password)
        return kwargs

    def faust_broker_credentials(self):
        """The same settings in Faust's terms (None on a plaintext cluster)."""
        import faust  # why: only the Faust apps ask; contracts stay light for every other part

        ssl_context = self._ssl_context() if self.security_protocol in ("SSL", "SASL_SSL") else None
        if self.sasl_mechanism:
            if self.sasl_mechanism.startswith("SCRAM"):
                return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                             mechanism=self.sasl_mechanism, ssl_context=ssl_context)
            return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password,
                                         ssl_context=ssl_context)
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
    hash_key_is_dev_default: bool
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


DEV_HASH_KEY = "vigie-dev-only-key-do-not-use-in-production"
DEFAULT_BROKER_PORT = 19092


def load() -> Settings:
    """Read the settings from the environment (cheap; call it where you need it)."""
    data_dir = Path(_env("VIGIE_DATA_DIR", str(REPO_ROOT / "data" / "local"))).resolve()
    key = _env("VIGIE_HASH_KEY")
    return Settings(
        data_dir=data_dir,
        kafka=KafkaSettings(
            # Unset: the embedded broker, on VIGIE_BROKER_PORT.
            bootstrap_servers=_env("KAFKA_BOOTSTRAP_SERVERS",
                                   f"127.0.0.1:{_env('VIGIE_BROKER_PORT', str(DEFAULT_BROKER_PORT))}"),
            security_protocol=_env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            sasl_mechanism=_env("KAFKA_SASL_MECHANISM"),
            sasl_username=_env("KAFKA_SASL_USERNAME"),
            sasl_password=_env("KAFKA_SASL_PASSWORD"),
            ssl_cafile=_env("KAFKA_SSL_CAFILE"),
        ),
        partitions=int(_env("VIGIE_PARTITIONS", "4")),
        hash_key=(key or DEV_HASH_KEY).encode(),
        hash_key_is_dev_default=key is None,
        service_ports={
            "messaging": int(_env("VIGIE_MESSAGING_PORT", "8081")),
            "payment": int(_env("VIGIE_PAYMENT_PORT", "8082")),
            "assistant": int(_env("VIGIE_ASSISTANT_PORT", "8083")),
        },
    )

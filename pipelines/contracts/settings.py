"""Every setting Vigie reads from the environment, in one place.

``environment()`` is the typed settings object: every ``VIGIE_*`` and ``KAFKA_*`` variable the
code reads is a field of one of the groups below, with its type, default and meaning (the
README's configuration table says the same for people; tests/docs checks they agree). A value
that does not parse (``VIGIE_PARTITIONS=abc``) fails with ``InvalidSetting``, naming the
variable. ``load()`` adds what needs secrets (the HMAC key; outside a demo, ``MissingSecret``).

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
from typing import Annotated, Literal, Optional

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.contracts import keyfiles

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BROKER_PORT = 19092
# SCRAM for every principal on the embedded broker's client listener (pipelines/kafka/broker.py).
EMBEDDED_MECHANISM = "SCRAM-SHA-256"


class SettingError(RuntimeError):
    """A setting is missing or wrong; the message says which variable and what to set."""


class MissingSecret(SettingError):
    """A key or credential Vigie needs is not configured; the message says what to set."""


class InvalidSetting(SettingError, ValueError):
    """A variable's value does not parse (``VIGIE_PARTITIONS=abc``); the message names it."""


PortNumber = Annotated[int, Field(ge=0, le=65535)]
Seconds = Annotated[float, Field(ge=0)]


class _Group(BaseSettings):
    """A group of settings: ``VIGIE_<FIELD>`` unless a field names its variable (an alias).
    Empty counts as unset, as ``VAR= command`` always did."""
    model_config = SettingsConfigDict(env_prefix="VIGIE_", env_ignore_empty=True, frozen=True)


class DeploymentEnv(_Group):
    data_dir: Path = Field(
        REPO_ROOT / "data" / "local", validate_default=True,
        description="broker log, worker state (RocksDB), lake, logs, secrets (git-ignored)")
    secrets_dir_setting: Optional[Path] = Field(
        None, validation_alias="VIGIE_SECRETS_DIR",
        description="generated secrets, files mode 0600: the embedded broker's passwords, the "
                    "demo's HMAC key (unset: <data dir>/secrets)")
    hash_key: Optional[SecretStr] = Field(
        None, description="the HMAC key that turns raw identifiers into keyed hashes; without "
                          "it, and outside a demo, every Vigie process refuses to start")
    demo: bool = Field(
        False, description="a demo (`1`): without VIGIE_HASH_KEY, identifiers are keyed with "
                           "<secrets dir>/hash.key, generated once per data dir")
    bind_host: str = Field("127.0.0.1", description="the address the services bind to")
    jwt_dir: Optional[Path] = Field(
        None, description="the services' token keys (Ed25519, by kid); unset: "
                          "<data dir>/secrets/jwt")

    @field_validator("data_dir", "secrets_dir_setting")
    @classmethod
    def _absolute(cls, path: Optional[Path]) -> Optional[Path]:
        return None if path is None else path.resolve()

    @field_validator("demo", mode="before")
    @classmethod
    def _demo_is_one(cls, value) -> bool:
        return value is True or value == "1"  # only `1` is a demo, as it always was

    @property
    def secrets_dir(self) -> Path:
        return self.secrets_dir_setting or self.data_dir / "secrets"


class KafkaEnv(_Group):
    model_config = SettingsConfigDict(env_prefix="KAFKA_")
    bootstrap_servers: Optional[str] = Field(
        None, description="an existing cluster instead of the embedded broker; then `make run` "
                          "starts no broker")
    security_protocol: Optional[Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]] = Field(
        None, description="unset: SASL_PLAINTEXT with a principal, else PLAINTEXT")
    sasl_mechanism: Optional[Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]] = Field(
        None, description="SASL mechanism of a secured cluster (SCRAM-SHA-256 with a principal)")
    sasl_username: Optional[str] = Field(
        None, description="credentials for a secured cluster; a username set here wins over "
                          "VIGIE_KAFKA_PRINCIPAL")
    sasl_password: Optional[SecretStr] = Field(
        None, description="the password of KAFKA_SASL_USERNAME")
    ssl_cafile: Optional[Path] = Field(None, description="the CA file of a TLS cluster")
    principal: Optional[str] = Field(
        None, validation_alias="VIGIE_KAFKA_PRINCIPAL",
        description="which component this process is on the embedded broker: its password is "
                    "read from <secrets dir>/kafka/<principal>, its rights are its own")
    broker_port: PortNumber = Field(
        DEFAULT_BROKER_PORT, validation_alias="VIGIE_BROKER_PORT",
        description="the embedded broker's port (SASL/SCRAM and ACLs)")
    partitions: int = Field(
        4, ge=1, validation_alias="VIGIE_PARTITIONS",
        description="partitions per topic when Vigie creates them: the ceiling on workers per "
                    "group")
    replication_factor: int = Field(
        1, ge=1, validation_alias="VIGIE_REPLICATION_FACTOR",
        description="replicas of every topic Vigie creates and of the Faust apps' own topics")
    retention_hours: int = Field(
        -1, ge=-1, validation_alias="VIGIE_RETENTION_HOURS",
        description="how long event topics keep their records when Vigie creates them (-1: for "
                    "ever)")


class StreamEnv(_Group):
    worker_name: str = Field(
        "w1", description="the worker's name: its RocksDB state directory, "
                          "<data dir>/state/<app>/<name>")
    standby_replicas: int = Field(
        0, ge=0, description="standby copies of each table partition the workers keep warm "
                             "from the changelog")
    profile: Optional[Path] = Field(
        None, description="a file: vigie worker/sink runs under cProfile and writes its stats "
                          "there on exit")
    metrics_port: Optional[PortNumber] = Field(
        None, description="the port a Faust process serves its Prometheus metrics on; unset or "
                          "0: none (vigie run: 9400 for the worker, the next for the sink)")
    metrics_host: str = Field(
        "127.0.0.1", description="the address a Faust process's metrics are served on")
    sink_flush_s: Seconds = Field(2, description="how often the lake sink writes a Parquet batch")
    sink_compact_every_s: Seconds = Field(
        600, description="how often the lake sink merges the small files of closed hours")
    max_clock_ahead_s: Seconds = Field(
        600, description="how far ahead of the worker's clock an input event's times may be; "
                         "beyond, it is dead-lettered; 0: no check")
    ingest_window_ms: int = Field(
        20, ge=0, description="how long the batch ingest waits for input records when traffic "
                              "is sparse, and the broker holds a fetch of the worker's Faust "
                              "stages when their partitions are quiet")
    stage_window_ms: float = Field(
        20, gt=0, description="how often the entity and decide stages take the records their "
                              "Faust consumer fetched, to handle them together: a wider window "
                              "gives fewer, fuller batches, at up to that much latency per hop")
    fetch_min_bytes: int = Field(
        64 * 1024, ge=1, description="how much new data the decision worker's fetches wait for "
                                     "(at most the ingest window) before the broker answers: "
                                     "fewer, fuller batches under load")
    state_flush_ms: float = Field(
        500, ge=0, description="how often the entity stage writes a partition's changed entity "
                               "states")
    state_cache_entities: int = Field(
        20_000, ge=0, description="how many entity states the entity stage keeps decoded after "
                                  "writing them, all partitions of the worker together (0: none); "
                                  "~5 KB an account, ~1.4 KB another entity")
    test_crash_after_produce: Optional[int] = Field(
        None, ge=0, description="a test hook, never for production: the worker kills itself "
                                "(SIGKILL) once the produces of the input batches of its "
                                "Nth commit were acknowledged, before that commit (unset: never)")
    rocksdb_memory_mb: int = Field(
        32, ge=8, description="the RocksDB memory of one Faust process, all its tables and "
                              "partitions: one block cache holding data, index and filter "
                              "blocks and the memtables (half of it at most)")
    test_crash_stage: Literal["ingest", "decide", "entities"] = Field(
        "ingest", description="a test hook, never for production: whose batches "
                              "VIGIE_TEST_CRASH_AFTER_PRODUCE counts, the ingest's (input "
                              "batches), the decide stage's (batches of decisions) or the "
                              "entity stage's (state writes)")
    producer_linger_ms: int = Field(
        5, ge=0, description="how long the worker's produce batches wait for more records")
    quality_every_s: Seconds = Field(
        60, description="how often the lake sink validates a sample of each input topic (GX)")


class ServicesEnv(_Group):
    messaging_port: PortNumber = Field(8081, description="the messaging service's port")
    payment_port: PortNumber = Field(8082, description="the payment service's port")
    assistant_port: PortNumber = Field(8083, description="the assistant service's port")
    availability_delay_s: Seconds = Field(
        30, description="how long a transfer waits before payout: the decision window")
    no_decision_fallback: Literal["hold", "block"] = Field(
        "hold", description="what the payment service does when no decision arrives in time")
    warn_cooling_off_s: Seconds = Field(
        10, description="cooling-off delay after an in-chat warning")
    publish_deadline_s: Seconds = Field(
        5, description="how long a keyed POST waits for the broker before answering 503 with "
                       "Retry-After")
    payment_keep_s: Seconds = Field(
        86_400, description="how long the payment service keeps a finished transfer")
    payment_url: Optional[str] = Field(
        None, description="where other payment instances forward this instance's senders "
                          "(unset: http://<bind host>:<port>)")

    @property
    def ports(self) -> dict[str, int]:
        return {"messaging": self.messaging_port, "payment": self.payment_port,
                "assistant": self.assistant_port}


class LimitsEnv(_Group):
    max_transfer_cents: int = Field(
        1_000_000, description="hard limit: the largest transfer; over it, 422 and nothing "
                               "published")
    currencies: str = Field(
        "EUR", description="hard limit: the currencies allowed, comma-separated (ISO 4217)")
    new_account_days: int = Field(
        7, description="hard limit: an account is new until this many days after its first "
                       "transfer")
    new_account_daily_cents: int = Field(
        500_000, description="hard limit: what a new account may send in any 24 h")


class RecoveryEnv(_Group):
    """``VIGIE_RECOVERY_SLA_<STATE>_S``: how long a recovery case may stay in a state before
    the worker times it out (docs/recovery.md); 0: no limit."""
    model_config = SettingsConfigDict(env_prefix="VIGIE_RECOVERY_")
    sla_opened_s: Seconds = Field(2, description="the SLA of an opened case")
    sla_contained_s: Seconds = Field(60, description="the SLA of a contained case")
    sla_owner_verification_s: Seconds = Field(
        1800, description="the SLA of a case waiting for its owner's verification")
    sla_secured_s: Seconds = Field(300, description="the SLA of a secured case")
    sla_transfers_review_s: Seconds = Field(
        86_400, description="the SLA of a case whose transfers are under review")
    sla_escalated_s: Seconds = Field(0, description="the SLA of an escalated case")
    reopen_after_s: Seconds = Field(
        86_400, description="how long a closed recovery case absorbs new suspicions of its "
                            "account before a new case may open")

    def sla_s(self, state: str) -> float:
        """A state's SLA (a state without one: 0, no limit)."""
        return getattr(self, f"sla_{state}_s", 0.0)


class ConsoleEnv(_Group):
    console_port: PortNumber = Field(8501, description="the analyst console's port")
    console_demo_password: Optional[SecretStr] = Field(
        None, description="the demo console users' password (unset: random, printed)")
    console_signing_key: Optional[SecretStr] = Field(
        None, description="the console's Ed25519 private key (raw 32 bytes, base64) that signs "
                          "every analyst action (unset: generated once per data dir)")
    console_verify_key: Optional[str] = Field(
        None, description="the public key(s), base64, comma-separated while rotating, the "
                          "workers verify analyst actions with (unset: the data dir's)")
    console_max_failures: int = Field(
        5, ge=1, description="failed sign-ins in a row that lock a console name out")
    console_lockout_s: Seconds = Field(300, description="how long a locked-out name stays locked")
    console_session_s: Seconds = Field(
        8 * 3600, description="how long a console sign-in lasts")
    review_sla_s: Seconds = Field(
        3600, description="how long after a hold an analyst's review of a held transfer is due")
    backtest_table_max_age_s: Seconds = Field(
        3600, description="how long the console reuses the replayed feature table a backtest "
                          "runs on")
    sql_memory_limit: str = Field(
        "256MB", description="the most one query of the console's SQL page may hold in memory")


class OfflineEnv(_Group):
    """The benchmarks' and the notebooks' settings."""
    notebook_lake: Optional[Path] = Field(
        None, description="the lake the notebooks read (unset: each notebook simulates one)")
    bench_train_users: int = Field(
        10_000, ge=1, description="vigie bench --only train: the simulated population")
    bench_train_days: float = Field(14, gt=0, description="vigie bench --only train: its days")
    bench_soak_minutes: float = Field(
        60, gt=0, description="vigie bench --only soak: how long the soak runs")
    bench_soak_burst_minutes: float = Field(
        10, ge=0, description="vigie bench --only soak: how long its burst lasts")
    bench_replay_users: int = Field(
        100_000, ge=1, description="vigie bench --only replay: the simulated population")
    bench_replay_days: float = Field(15, gt=0, description="vigie bench --only replay: its days")
    bench_replay_workers: int = Field(
        1, ge=1, description="vigie bench --only replay: the replay's --workers")
    bench_replay_lake: Optional[Path] = Field(
        None, description="vigie bench --only replay: an existing lake to replay instead of "
                          "simulating one")


GROUPS: dict[str, type[_Group]] = {
    "deployment": DeploymentEnv, "kafka": KafkaEnv, "stream": StreamEnv,
    "services": ServicesEnv, "limits": LimitsEnv, "recovery": RecoveryEnv,
    "console": ConsoleEnv, "offline": OfflineEnv}


@dataclass(frozen=True)
class Environment:
    """Every setting, typed, by group (``environment().stream.ingest_window_ms``)."""
    deployment: DeploymentEnv
    kafka: KafkaEnv
    stream: StreamEnv
    services: ServicesEnv
    limits: LimitsEnv
    recovery: RecoveryEnv
    console: ConsoleEnv
    offline: OfflineEnv


def variable(group: type[_Group], name: str) -> str:
    """The environment variable of a group's field."""
    alias = group.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else group.model_config["env_prefix"] + name.upper()


def variables() -> dict[str, FieldInfo]:
    """Every variable the settings read -> its field (type, default, description)."""
    return {variable(group, name): info for group in GROUPS.values()
            for name, info in group.model_fields.items()}


def _problems(group: type[_Group], exc: ValidationError) -> list[str]:
    """Each error as ``VARIABLE='value': what is wrong`` (pydantic names the field)."""
    problems = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        var = variable(group, name) if name in group.model_fields else name.upper()
        problems.append(f"{var}={error['input']!r}: {error['msg']}")
    return problems


def _read() -> Environment:
    groups, problems = {}, []
    for name, group in GROUPS.items():
        try:
            groups[name] = group()
        except ValidationError as exc:
            problems += _problems(group, exc)
    if problems:
        raise InvalidSetting("invalid settings: " + "; ".join(problems))
    return Environment(**groups)


# The environment's VIGIE_/KAFKA_ items (and the working directory, which a relative
# VIGIE_DATA_DIR depends on) -> the settings read from them: reading costs a few ms of
# pydantic, the key a few µs, so per-call readers stay cheap and a changed variable is seen at
# once (the tests change them between calls).
_PREFIXES = frozenset(os.environ.encodekey(p) for p in ("VIGIE_", "KAFKA_"))
_cached: tuple[tuple, Environment] | None = None


def _environment_key() -> tuple:
    # os.environ's raw mapping: ten times cheaper to scan than decoding every item
    raw = getattr(os.environ, "_data", None) or {os.environ.encodekey(k): v
                                                 for k, v in os.environ.items()}
    try:
        cwd = os.getcwd()
    except OSError:  # a working directory since removed: only a relative path would care
        cwd = None
    return (cwd, *((k, v) for k, v in raw.items() if k[:6] in _PREFIXES))


def environment() -> Environment:
    """The settings, typed, from the environment as it is now (no secret needed: ``load()``
    resolves those). Raises ``InvalidSetting`` naming a variable that does not parse."""
    global _cached
    key = _environment_key()
    if _cached is None or _cached[0] != key:
        _cached = key, _read()
    return _cached[1]


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
    env: Optional[Environment] = None  # every other setting, typed

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"


def data_dir() -> Path:
    return environment().deployment.data_dir


def secrets_dir() -> Path:
    """Where generated secrets live: ``VIGIE_SECRETS_DIR``, or ``<data dir>/secrets``."""
    return environment().deployment.secrets_dir


def kafka_password_file(secrets: Path, principal: str) -> Path:
    return secrets / "kafka" / principal


def is_demo() -> bool:
    """A demo (``VIGIE_DEMO=1``: set by vigie run, the tests and the benchmarks) may use keys
    generated in its secrets dir; anything else must be given its HMAC key."""
    return environment().deployment.demo


@lru_cache(maxsize=8)
def _demo_hash_key(path: Path) -> bytes:
    return keyfiles.read_or_create(path).encode()


def _hash_key(deployment: DeploymentEnv) -> tuple[bytes, bool]:
    if deployment.hash_key is not None:
        return deployment.hash_key.get_secret_value().encode(), False
    if not deployment.demo:
        raise MissingSecret(
            "VIGIE_HASH_KEY is not set: it is the HMAC key that turns raw identifiers into keyed "
            "hashes, and every process of one deployment needs the same one. Set it, or set "
            "VIGIE_DEMO=1 for a demo that uses a key generated once in its secrets dir.")
    return _demo_hash_key(deployment.secrets_dir / "hash.key"), True


def _kafka(kafka: KafkaEnv, secrets: Path) -> KafkaSettings:
    principal = kafka.principal
    # A principal of the embedded broker: its password from the secrets dir, over SCRAM.
    from_secrets = kafka.sasl_username is None and principal is not None
    return KafkaSettings(
        # Unset: the embedded broker, on VIGIE_BROKER_PORT.
        bootstrap_servers=kafka.bootstrap_servers or f"127.0.0.1:{kafka.broker_port}",
        security_protocol=kafka.security_protocol or (
            "SASL_PLAINTEXT" if from_secrets else "PLAINTEXT"),
        sasl_mechanism=kafka.sasl_mechanism or (EMBEDDED_MECHANISM if from_secrets else None),
        sasl_username=principal if from_secrets else kafka.sasl_username,
        sasl_password=(kafka.sasl_password.get_secret_value()
                       if kafka.sasl_password is not None else None),
        sasl_password_file=kafka_password_file(secrets, principal) if from_secrets else None,
        ssl_cafile=str(kafka.ssl_cafile) if kafka.ssl_cafile is not None else None,
    )


def load() -> Settings:
    """The settings with the secrets resolved (cheap; call it where you need it). Outside a
    demo, fails (MissingSecret) without VIGIE_HASH_KEY."""
    env = environment()
    hash_key, demo_key = _hash_key(env.deployment)
    return Settings(
        data_dir=env.deployment.data_dir,
        kafka=_kafka(env.kafka, env.deployment.secrets_dir),
        partitions=env.kafka.partitions,
        hash_key=hash_key,
        hash_key_is_demo=demo_key,
        secrets_dir=env.deployment.secrets_dir,
        service_ports=env.services.ports,
        env=env,
    )

"""The embedded broker: a real single-node Apache Kafka (KRaft), fetched from Maven Central.

``EmbeddedKafka(port, log_dir, secrets_dir).start()`` fetches the jars once (with the machine's
Maven), formats the KRaft log directory on first use (it survives restarts), starts the JVM
with a small heap, provisions every component's principal (``pipelines.kafka.acls``) and
returns once the broker enforces them.

Every listener authenticates, all on 127.0.0.1 (docs/security.md#kafka):
- CLIENT (the port given): SASL/SCRAM-SHA-256, one principal per component, ACLs enforced;
- INTERNAL: SASL/PLAIN for ``admin`` only, whose password the broker's own config holds: the
  broker's inter-broker login, and how ``provision`` logs in before any SCRAM user exists;
- CONTROLLER: SASL/PLAIN for ``admin`` only (the broker's login to its KRaft controller).
"""
from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from pipelines.contracts import keyfiles, settings as settings_mod
from pipelines.contracts.settings import REPO_ROOT
from pipelines.kafka import acls

log = logging.getLogger(__name__)
KAFKA_DIR = Path(__file__).resolve().parent
POM = KAFKA_DIR / "pom.xml"
JARS_DIR = REPO_ROOT / "build" / "kafka-jars"


def fetch_jars() -> Path:
    """Copy Kafka's runtime jars from Maven Central (or ~/.m2) into build/kafka-jars once."""
    marker = JARS_DIR / f".fetched-{POM.stat().st_mtime_ns}"
    if marker.exists():
        return JARS_DIR
    if JARS_DIR.exists():
        shutil.rmtree(JARS_DIR)
    log.info("fetching Apache Kafka from Maven Central (first run only)…")
    subprocess.run(
        ["mvn", "-q", "-B", "-Dstyle.color=never", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={JARS_DIR}", "-DincludeScope=runtime"],
        check=True,
    )
    marker.touch()
    return JARS_DIR


def free_port(besides: tuple[int, ...] = ()) -> int:
    """A port nothing listens on now, and none of ``besides``: a port is free again once its
    probe closes, so two calls can give the same one (seen: the broker's client and controller
    listeners on one port, and the broker refused to start)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in besides:
            return port


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


def _plain_login(password: str) -> str:
    """JAAS for a PLAIN listener whose one user is the admin (also the broker's own login)."""
    return ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            f'username="{acls.ADMIN}" password="{password}" user_{acls.ADMIN}="{password}";')


class EmbeddedKafka:
    def __init__(self, port: int, log_dir: Path, secrets_dir: Path, heap_mb: int = 512):
        self.port = port
        self.internal_port = free_port(besides=(port,))
        self.controller_port = free_port(besides=(port, self.internal_port))
        self.log_dir = Path(log_dir)
        self.secrets_dir = Path(secrets_dir)  # its principals' passwords: <secrets_dir>/kafka/
        self.heap_mb = heap_mb
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def internal_bootstrap(self) -> str:
        return f"127.0.0.1:{self.internal_port}"

    def login(self, principal: str) -> settings_mod.KafkaSettings:
        """How ``principal`` connects to this broker's client listener."""
        return settings_mod.KafkaSettings(
            self.bootstrap, "SASL_PLAINTEXT", settings_mod.EMBEDDED_MECHANISM, principal,
            sasl_password_file=settings_mod.kafka_password_file(self.secrets_dir, principal))

    def _write_config(self, admin_password: str) -> Path:
        config = self.log_dir / "server.properties"
        login = _plain_login(admin_password)
        keyfiles.write_private(config, "\n".join([  # it holds the admin's password
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=CLIENT://127.0.0.1:{self.port},INTERNAL://127.0.0.1:{self.internal_port},"
            f"CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=CLIENT://127.0.0.1:{self.port},"
            f"INTERNAL://127.0.0.1:{self.internal_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CLIENT:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT,"
            "CONTROLLER:SASL_PLAINTEXT",
            f"listener.name.client.sasl.enabled.mechanisms={settings_mod.EMBEDDED_MECHANISM}",
            "listener.name.client.scram-sha-256.sasl.jaas.config="
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.internal.sasl.enabled.mechanisms=PLAIN",
            f"listener.name.internal.plain.sasl.jaas.config={login}",
            "listener.name.controller.sasl.enabled.mechanisms=PLAIN",
            f"listener.name.controller.plain.sasl.jaas.config={login}",
            "inter.broker.listener.name=INTERNAL",
            "sasl.mechanism.inter.broker.protocol=PLAIN",
            "sasl.mechanism.controller.protocol=PLAIN",
            # ACLs in the KRaft metadata log; no ACL, no access; one super user.
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found=false",
            f"super.users=User:{acls.ADMIN}",
            f"log.dirs={self.log_dir / 'log'}",
            "num.partitions=4",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            # A single worker should not wait 3 s for others to join before consuming.
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "log.retention.hours=-1",  # the log is the source of truth; the demo keeps it all
            "log.flush.interval.ms=1000",
            "",
        ]))
        return config

    def start(self, timeout_s: float = 60.0) -> "EmbeddedKafka":
        jars = fetch_jars()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        passwords = acls.passwords(self.secrets_dir)
        config = self._write_config(passwords[acls.ADMIN])
        classpath = f"{jars}/*"
        if not (self.log_dir / "log" / "meta.properties").exists():
            subprocess.run(
                [_java(), "-cp", classpath, "kafka.tools.StorageTool", "format",
                 "-t", uuid.uuid4().hex[:22], "-c", str(config)],
                check=True, stdout=subprocess.DEVNULL,
            )
        out = open(self.log_dir / "broker.out", "ab")
        self.proc = subprocess.Popen(
            # A fixed, pre-touched heap (Kafka's own scripts fix -Xms at -Xmx): the broker's
            # memory is what it will stay at, not a climb to -Xmx over the first hour.
            [_java(), f"-Xmx{self.heap_mb}m", f"-Xms{self.heap_mb}m", "-XX:+AlwaysPreTouch",
             "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             f"-Dlog4j2.configurationFile={KAFKA_DIR / 'log4j2.yaml'}",
             "-cp", classpath, "kafka.Kafka", str(config)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        admin_login = settings_mod.KafkaSettings(
            self.internal_bootstrap, "SASL_PLAINTEXT", "PLAIN", acls.ADMIN, passwords[acls.ADMIN])
        asyncio.run(wait_ready(admin_login, timeout_s, self.proc))
        acls.provision(acls.admin_client(self.internal_bootstrap, passwords[acls.ADMIN]), passwords)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop cleanly (SIGTERM: Kafka flushes and closes its log), or kill if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


async def wait_ready(login: settings_mod.KafkaSettings, timeout_s: float,
                     proc: subprocess.Popen | None = None) -> float:
    """Wait until the broker answers ``login``'s metadata request; returns the seconds it took."""
    started = time.monotonic()
    # aiokafka logs every refused connection at ERROR; while waiting, those are expected.
    aiokafka_log = logging.getLogger("aiokafka")
    previous_level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        return await _poll_metadata(login, timeout_s, proc, started)
    finally:
        aiokafka_log.setLevel(previous_level)


async def _poll_metadata(login, timeout_s, proc, started) -> float:
    from aiokafka.admin import AIOKafkaAdminClient  # why: only while starting a broker

    last_error: Exception | None = None
    while time.monotonic() - started < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the broker exited with code {proc.returncode}; see its broker.out")
        admin = AIOKafkaAdminClient(**login.aiokafka_kwargs(), request_timeout_ms=2000)
        try:
            await admin.start()
            cluster = await admin.describe_cluster()
            if cluster.get("brokers"):
                return time.monotonic() - started
        except Exception as exc:  # not up yet
            last_error = exc
        finally:
            await admin.close()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"no broker answered at {login.bootstrap_servers} within {timeout_s}s: "
                       f"{last_error}")

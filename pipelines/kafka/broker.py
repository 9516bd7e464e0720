"""The embedded broker: a real single-node Apache Kafka (KRaft), fetched from Maven Central.

``EmbeddedKafka(port, log_dir).start()`` fetches the jars once (with the machine's Maven),
formats the KRaft log directory on first use (it survives restarts), starts the JVM with
a small heap, and returns once the broker answers a metadata request.
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

from pipelines.contracts.settings import REPO_ROOT

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _java() -> str:
    home = os.environ.get("JAVA_HOME")
    return str(Path(home) / "bin" / "java") if home else "java"


class EmbeddedKafka:
    def __init__(self, port: int, log_dir: Path, heap_mb: int = 512):
        self.port = port
        self.controller_port = free_port()
        self.log_dir = Path(log_dir)
        self.heap_mb = heap_mb
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        config = self.log_dir / "server.properties"
        config.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
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
        config = self._write_config()
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
        asyncio.run(wait_ready(self.bootstrap, timeout_s, self.proc))
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


async def wait_ready(bootstrap: str, timeout_s: float, proc: subprocess.Popen | None = None) -> float:
    """Wait until the broker answers a metadata request; returns the seconds it took."""
    started = time.monotonic()
    # aiokafka logs every refused connection at ERROR; while waiting, those are expected.
    aiokafka_log = logging.getLogger("aiokafka")
    previous_level = aiokafka_log.level
    aiokafka_log.setLevel(logging.CRITICAL)
    try:
        return await _poll_metadata(bootstrap, timeout_s, proc, started)
    finally:
        aiokafka_log.setLevel(previous_level)


async def _poll_metadata(bootstrap, timeout_s, proc, started) -> float:
    from aiokafka.admin import AIOKafkaAdminClient  # why: only while starting a broker

    last_error: Exception | None = None
    while time.monotonic() - started < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the broker exited with code {proc.returncode}; see its broker.out")
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
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
    raise TimeoutError(f"no broker answered at {bootstrap} within {timeout_s}s: {last_error}")

"""Apache Kafka in KRaft mode on the machine's JDK: one node (broker and
controller), or several such nodes forming one cluster (``tidings up
--kafka-brokers 3``), optionally with a SASL_SSL client listener beside the
plaintext one.

The data folder is formatted once with a cluster id we keep beside it; a data
folder whose ``meta.properties`` names another cluster (or cannot be read) is
refused, never reformatted, because formatting would silently drop its events.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from infra.errors import StackError
from infra.install import JAVA_HINT, require_tool
from infra.layout import Layout
from infra.ports import exchange
from infra.services.base import Port, Service

# ApiVersions v0 (key 18) is answered by every Kafka version, and only once the broker
# accepts client requests: KRaft opens the client listener after the broker is unfenced.
_API_VERSIONS = struct.pack(">hhih", 18, 0, 1, 7) + b"tidings"
_PROBE = struct.pack(">i", len(_API_VERSIONS)) + _API_VERSIONS


def new_cluster_id() -> str:
    """Kafka's own format (base64url of 16 random bytes), so no JVM start is needed for it."""
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):  # Kafka rejects ids that look like a CLI flag
            return cluster_id


def read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


@dataclass(frozen=True)
class SecureListener:
    """A SASL_SSL client listener (SCRAM-SHA-256 and -512) on ``port``; with
    ``unsecured_oauth`` it also takes OAUTHBEARER with Kafka's unsecured
    (unsigned) tokens, to exercise a client's token provider: never in
    production.

    ``keystore`` is a PEM file holding the broker's unencrypted PKCS#8 key and
    its certificate chain. ``scram_users`` (name, password) are written into
    the metadata when the data folder is formatted, the way KRaft bootstraps
    credentials before any client can reach the admin API.
    """

    port: int
    keystore: Path
    scram_users: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    unsecured_oauth: bool = False

    MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


def cluster_ports(
    first_port: int, first_controller_port: int, brokers: int
) -> list[tuple[int, int]]:
    """(client port, controller port) of each node: every other port from the
    configured ones, so the defaults give 9092/9093, 9094/9095, 9096/9097."""
    return [(first_port + 2 * i, first_controller_port + 2 * i) for i in range(brokers)]


class Kafka(Service):
    stop_grace = 30.0  # a clean shutdown closes segments; a kill means log recovery next start

    def __init__(
        self,
        layout: Layout,
        host: str,
        port: int,
        controller_port: int,
        heap: str,
        lib: Path | None,
        *,
        node_id: int = 1,
        voters: dict[int, int] | None = None,
        secure: SecureListener | None = None,
    ) -> None:
        """``voters``: node id -> controller port of every node of a cluster;
        ``None`` is the single node of the default stack (named ``kafka``)."""
        super().__init__(layout, host)
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.lib = lib
        self.node_id = node_id
        self.voters = voters if voters is not None else {node_id: controller_port}
        self.secure = secure
        if voters is None:
            self.name = "kafka"
            self.cluster_home = self.home = layout.data(self.name)
        else:
            self.name = f"kafka-{node_id}"
            # The nodes share one cluster id, kept beside their data folders.
            self.cluster_home = layout.data("kafka-cluster")
            self.home = self.cluster_home / f"node-{node_id}"
        self.log_dirs = self.home / "logs"

    @property
    def ports(self) -> list[Port]:
        found = [
            Port(self.port, "TIDINGS_STACK_KAFKA_PORT"),
            Port(self.controller_port, "TIDINGS_STACK_KAFKA_CONTROLLER_PORT"),
        ]
        if self.secure is not None:
            found.append(Port(self.secure.port, "the SASL_SSL listener's port"))
        return found

    @property
    def secure_bootstrap(self) -> str:
        if self.secure is None:
            raise StackError(f"{self.name} has no SASL_SSL listener")
        return f"{self.host}:{self.secure.port}"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def check(self) -> None:
        require_tool("java", JAVA_HINT)
        if self.lib is None:
            raise StackError("Kafka's jars are not fetched yet; run `tidings deps`")
        meta = self.log_dirs / "meta.properties"
        if not self.log_dirs.exists():
            return
        ours = self.cluster_home / "cluster-id"
        fix = (
            f"remove {self.cluster_home} to start with an empty Kafka, "
            "or set TIDINGS_STACK_STATE_DIR"
        )
        try:
            found = read_properties(meta).get("cluster.id") if meta.exists() else None
            expected = ours.read_text().strip() if ours.exists() else None
        except (OSError, UnicodeDecodeError) as exc:
            problem = f"cannot read Kafka's data in {self.log_dirs} ({exc})"
            raise StackError(f"{problem}; {fix}") from None
        if found is None and any(self.log_dirs.iterdir()):
            raise StackError(f"{self.log_dirs} holds data but no valid meta.properties; {fix}")
        if found is not None and found != expected:
            raise StackError(
                f"Kafka data in {self.log_dirs} belongs to cluster {found}, not to this stack "
                f"({expected or 'no cluster id recorded'}); {fix}"
            )

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "server.properties").write_text(self._server_properties())
        (self.home / "log4j2.properties").write_text(self._log4j())
        if (self.log_dirs / "meta.properties").exists():
            return
        shared = self.cluster_home / "cluster-id"
        if shared.exists() and self.cluster_home != self.home:
            cluster_id = shared.read_text().strip()  # another node of the cluster made it
        else:
            cluster_id = new_cluster_id()
            shared.write_text(cluster_id)
        java = require_tool("java", JAVA_HINT)
        argv = [java, "-XX:TieredStopAtLevel=1", *self._jvm_common(), "kafka.tools.StorageTool"]
        argv.append("format")
        argv += ["-t", cluster_id, "-c", str(self.home / "server.properties"), "--ignore-formatted"]
        if self.secure is not None:
            for name, password in self.secure.scram_users:
                for mechanism in SecureListener.MECHANISMS:
                    argv += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        log = self.layout.log(f"{self.name}-format")
        with log.open("a") as out:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            shutil.rmtree(self.log_dirs, ignore_errors=True)
            raise StackError(
                f"Kafka could not format {self.log_dirs} (exit {done.returncode}); see {log}"
            )

    def _jvm_common(self) -> list[str]:
        assert self.lib is not None
        log4j = self.home / "log4j2.properties"
        # The classpath wildcard is expanded by the JVM itself, not by a shell.
        return [f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{self.lib}/*"]

    def command(self) -> list[str]:
        java = require_tool("java", JAVA_HINT)
        return [
            java,
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            # C1 only: healthy sooner and smaller; a local broker never runs long
            # enough to profit from C2 (docs/decisions/0009).
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            *self._jvm_common(),
            "kafka.Kafka",
            str(self.home / "server.properties"),
        ]

    def healthy(self) -> bool:
        answer = exchange(self.host, self.port, _PROBE)
        # size (4) + correlation id (4) + error code (2); 0 = no error
        return len(answer) >= 10 and struct.unpack(">ih", answer[4:10]) == (1, 0)

    def url(self) -> str:
        return self.bootstrap

    def _server_properties(self) -> str:
        h, p, c = self.host, self.port, self.controller_port
        cores = os.cpu_count() or 2
        # A cluster keeps three copies of its internal topics and refuses a
        # write that fewer than two hold (acks=all), so losing one node loses
        # nothing acknowledged; one node can only keep one.
        replicas = str(min(3, len(self.voters)))
        min_isr = str(min(2, len(self.voters)))
        voters = ",".join(f"{node}@{h}:{port}" for node, port in sorted(self.voters.items()))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            "advertised.listeners": f"PLAINTEXT://{h}:{p}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "offsets.topic.replication.factor": replicas,
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            # Tenant topics come from our template (partitions, retention), never by accident.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            # Kafka's defaults (3 network, 8 request threads) are for a server of
            # its own. Every request passes from a network thread to a request
            # thread and back; on a small box more threads only add hand-offs
            # (docs/decisions/0009).
            "num.network.threads": str(max(1, cores // 4)),
            "num.io.threads": str(max(2, cores)),
            # The log cleaner's offset map is allocated whole on the heap at
            # start and kept; Kafka's default size dominates a local broker's
            # live heap and keeps G1 pausing, while a local broker's compacted
            # topics need far less (docs/decisions/0009).
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        }
        if len(self.voters) > 1:
            # A SIGKILLed node is fenced, and its partitions get new leaders,
            # once it misses its session: 4 s instead of Kafka's 9 s, so the
            # pause clients see is a few seconds (docs/reliability.md).
            props["broker.session.timeout.ms"] = "4000"
            props["broker.heartbeat.interval.ms"] = "1000"
        if self.secure is not None:
            props.update(self._secure_properties())
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def _secure_properties(self) -> dict[str, str]:
        """The SASL_SSL listener, named SECURE; brokers and the health probe
        keep using the plaintext one."""
        assert self.secure is not None
        h, s = self.host, self.secure.port
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        mechanisms = list(SecureListener.MECHANISMS)
        if self.secure.unsecured_oauth:
            mechanisms.append("OAUTHBEARER")
        props = {
            "listeners": f"PLAINTEXT://{h}:{self.port},CONTROLLER://{h}:{self.controller_port},"
            f"SECURE://{h}:{s}",
            "advertised.listeners": f"PLAINTEXT://{h}:{self.port},SECURE://{h}:{s}",
            "listener.security.protocol.map": (
                "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL"
            ),
            "listener.name.secure.sasl.enabled.mechanisms": ",".join(mechanisms),
            "listener.name.secure.ssl.keystore.type": "PEM",
            "listener.name.secure.ssl.keystore.location": str(self.secure.keystore),
        }
        for mechanism in SecureListener.MECHANISMS:
            props[f"listener.name.secure.{mechanism.lower()}.sasl.jaas.config"] = scram
        if self.secure.unsecured_oauth:
            # Kafka's default OAUTHBEARER validator accepts unsigned tokens.
            props["listener.name.secure.oauthbearer.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
            )
        return props

    def _log4j(self) -> str:
        log = self.layout.logs_dir / f"{self.name}-server.log"
        return (
            "status = warn\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {log}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
        )

"""Apache Kafka in KRaft mode (one node: broker and controller), on the machine's JDK.

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


class Kafka(Service):
    name = "kafka"
    stop_grace = 30.0  # a clean shutdown closes segments; a kill means log recovery next start

    def __init__(
        self,
        layout: Layout,
        host: str,
        port: int,
        controller_port: int,
        heap: str,
        lib: Path | None,
    ) -> None:
        super().__init__(layout, host)
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.lib = lib
        self.home = layout.data(self.name)
        self.log_dirs = self.home / "logs"

    @property
    def ports(self) -> list[Port]:
        return [
            Port(self.port, "TIDINGS_STACK_KAFKA_PORT"),
            Port(self.controller_port, "TIDINGS_STACK_KAFKA_CONTROLLER_PORT"),
        ]

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
        ours = self.home / "cluster-id"
        fix = f"remove {self.home} to start with an empty Kafka, or set TIDINGS_STACK_STATE_DIR"
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
        cluster_id = new_cluster_id()
        (self.home / "cluster-id").write_text(cluster_id)
        java = require_tool("java", JAVA_HINT)
        argv = [java, "-XX:TieredStopAtLevel=1", *self._jvm_common(), "kafka.tools.StorageTool"]
        argv.append("format")
        argv += ["-t", cluster_id, "-c", str(self.home / "server.properties"), "--ignore-formatted"]
        with self.layout.log("kafka-format").open("a") as out:
            done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            shutil.rmtree(self.log_dirs, ignore_errors=True)
            raise StackError(
                f"Kafka could not format {self.log_dirs} (exit {done.returncode}); "
                f"see {self.layout.log('kafka-format')}"
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
            # C1 only: the broker is healthy in ~60% of the time with ~15% less memory (measured
            # on 2 cores); a local broker never runs long enough to profit from C2.
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
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{h}:{c}",
            "listeners": f"PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            "advertised.listeners": f"PLAINTEXT://{h}:{p}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.log_dirs),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Tenant topics come from our template (partitions, retention), never by accident.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            # Kafka's defaults (3 network, 8 request threads) are for a server of
            # its own. Every request passes from a network thread to a request
            # thread and back; on a box this size more threads only add
            # hand-offs: with 1 and 2 on 2 cores, the broker measured ~10% less
            # CPU per record and ~0.3 ms less p50 latency (docs/benchmarks.md).
            "num.network.threads": str(max(1, cores // 4)),
            "num.io.threads": str(max(2, cores)),
            # The log cleaner's offset map is allocated whole on the heap at
            # start and kept (Kafka's default: 128 MiB). It was four fifths of
            # the broker's live heap (~160 of ~200 MiB), enough to keep G1
            # starting concurrent cycles, each with a remark pause of 4-5 ms,
            # every few seconds under load. 8 MiB maps some 350,000 keys a
            # pass, ample for a local broker's compacted topics (consumer
            # offsets, transactions); live heap is then ~45 MiB, no remarks.
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
        }
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def _log4j(self) -> str:
        log = self.layout.logs_dir / "kafka-server.log"
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

"""What the local stack needs on the machine: a JDK, Maven, Kafka's jars, redis-server
(and nginx for the tests' TLS proxy).

Kafka's jars come from Maven Central through Maven into a cache folder outside the
repo, keyed by version; a ``.complete`` stamp is written only after Maven finished,
so an interrupted download is never mistaken for a usable install.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from infra.errors import StackError
from infra.settings import StackSettings

JAVA_HINT = "install JDK 17: apt-get install -y openjdk-17-jdk-headless"
MAVEN_HINT = "install Maven: apt-get install -y maven"

# Logging: without slf4j 2 on the path Maven picks Kafka's slf4j 1.7 and the broker logs nothing.
_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.tidings.local</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId>
      <version>2.24.3</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>2.24.3</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>2.0.16</version></dependency>
  </dependencies>
</project>
"""


def require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"{name} not found on PATH; {hint}")
    return path


def kafka_home(settings: StackSettings) -> Path:
    return settings.cache_dir / f"kafka-{settings.kafka_version}"


def kafka_lib(settings: StackSettings) -> Path | None:
    """The folder of Kafka's jars, or ``None`` until they were fetched completely."""
    home = kafka_home(settings)
    return home / "lib" if (home / ".complete").is_file() else None


def ensure_kafka_jars(settings: StackSettings, say: Callable[[str], None]) -> Path:
    ready = kafka_lib(settings)
    if ready is not None:
        return ready
    home = kafka_home(settings)
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StackError(
            f"cannot create the cache folder {home} ({exc.strerror}); set TIDINGS_STACK_CACHE_DIR"
        ) from None
    # Two `up`s (or a test session and an `up`) may race to fetch: the second waits here.
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = kafka_lib(settings)
        if ready is not None:
            return ready
        _fetch(settings, home, say)
    return home / "lib"


def _fetch(settings: StackSettings, home: Path, say: Callable[[str], None]) -> None:
    require_tool("java", JAVA_HINT)
    mvn = require_tool("mvn", MAVEN_HINT)
    say(f"fetching Kafka {settings.kafka_version} jars with Maven into {home} (once)")
    (home / "pom.xml").write_text(_POM.format(kafka=settings.kafka_version))
    partial = home / "lib.partial"
    shutil.rmtree(partial, ignore_errors=True)
    log = home / "maven.log"
    argv = [mvn, "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies"]
    argv += ["-DincludeScope=runtime", f"-DoutputDirectory={partial}"]
    with log.open("w") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0 or not any(partial.glob("kafka_2.13-*.jar")):
        errors = [line for line in log.read_text(errors="replace").splitlines() if "ERROR" in line]
        reason = errors[0].strip()[:200] if errors else f"exit code {done.returncode}"
        raise StackError(
            f"Maven could not fetch Kafka {settings.kafka_version} from Maven Central ({reason}); "
            f"check network/proxy (~/.m2/settings.xml), then retry `tidings deps`; log: {log}"
        )
    shutil.rmtree(home / "lib", ignore_errors=True)
    partial.rename(home / "lib")
    (home / ".complete").write_text(settings.kafka_version)


def ensure_redis(say: Callable[[str], None]) -> str:
    return ensure_apt("redis-server", "redis-server", say)


def ensure_apt(
    binary: str, package: str, say: Callable[[str], None], *, recommends: bool = True
) -> str:
    """``binary`` from PATH (or /usr/sbin), installing Debian's ``package`` first if missing.

    redis-server for the stack (its ``--sentinel`` mode is Sentinel); the
    tests' TLS-terminating gRPC proxy uses nginx (``nginx-light``); the
    dashboard tests' chromium, without its recommended packages.
    """
    found = _which(binary)
    if found is not None:
        return found
    apt = require_tool("apt-get", f"install {package} with your system's package manager")
    say(f"installing {package} with apt-get")
    install = [apt, "install", "-y", "-q", package]
    if not recommends:
        install.insert(-1, "--no-install-recommends")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    # A fresh machine has no package lists yet: update once, then retry.
    for attempt in ([install], [[apt, "update", "-q"], install]):
        if all(_quiet(argv, env) for argv in attempt) and _which(binary):
            break
    found = _which(binary)
    if found is None:
        raise StackError(
            f"apt-get could not install {package}; check the Debian package source "
            "(`apt-get update` must succeed), then retry `tidings deps`"
        )
    return found


def _which(binary: str) -> str | None:
    return shutil.which(binary) or shutil.which(binary, path="/usr/sbin:/sbin")


def _quiet(argv: list[str], env: dict[str, str]) -> bool:
    done = subprocess.run(argv, capture_output=True, env=env, check=False)
    return done.returncode == 0

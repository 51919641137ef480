"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) for tests and benchmarks.

The broker runs from the Maven Central jars listed in ``deploy/kafka/pom.xml``, fetched once
into ``.brokers/kafka/lib`` by Maven, on loopback with free ports and a small heap:

    with KafkaBroker(tmp_path) as broker:
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)

or from the repository root: ``python -m deploy.kafka start|stop|fetch [--workdir DIR]``.

Errors:

    BrokerError
     ├── BrokerUnavailable   this machine cannot run a broker: no Java 17+, no Maven when the
     │                       jars are missing, or the jars cannot be downloaded
     └── BrokerStartError    the broker was launched but exited or was not ready in time;
                             carries an excerpt of its log (first error, last lines)

Contract for callers: ``BrokerUnavailable`` means "skip" on a developer machine, but when the
environment has ``CI=true`` callers must turn it into a failure, so that a CI machine that lost
its Java never passes by skipping every broker test. ``BrokerStartError`` is always a failure.

Each ``start()`` formats an empty data directory, so every run begins with no topics.
Topics are not auto-created (``auto.create.topics.enable=false``): code under test must create
what it uses, as it must on a production cluster, and a misspelt topic fails instead of
appearing with default settings. Pass ``config={"auto.create.topics.enable": "true"}`` to change it.

Docker's ``apache/kafka`` image is not used: no engine on the machines this project runs on,
and the jars start in 2-4 s.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from typing import NamedTuple
from pathlib import Path

from deploy.gateway_env import gateway_env

__all__ = [
    "FAST_START",
    "JVM_PROFILES",
    "BrokerError",
    "BrokerStartError",
    "BrokerUnavailable",
    "KafkaBroker",
    "ensure_jars",
    "find_java",
]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
POM = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
HOME = REPO_ROOT / ".brokers" / "kafka"
LIB_DIR = HOME / "lib"
DEFAULT_WORKDIR = HOME / "run"

MIN_JAVA = 17
READY_LINE = b"Kafka Server started"
# SerialGC: fewer threads on 2 cores and a smaller footprint than G1 at this heap size.
JVM_FLAGS = (
    "-XX:+UseSerialGC",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)
# For tests: C1 only needs about 40% less CPU to reach "started" (much faster on a busy machine),
# but caps the broker's steady-state throughput, so it is not the default.
FAST_START = ("-XX:TieredStopAtLevel=1",)
# JVM profiles by name: KafkaBroker(jvm_options=JVM_PROFILES[name]); `start --jvm NAME`.
# "full" (tiered C1+C2) suits a broker that runs for hours on cores of its own. On a 2-core
# machine a broker a few minutes old is still C2-compiling its hot paths, so a benchmark pays
# for the compiler: bench.backend_roundtrip at 64 in flight, two brokers side by side, alternating
# rounds (issue 17): broker CPU per round trip, medians of 4, ~1 min old 980 us (full) vs 390 us
# (fast), ~3 min old 1010 vs 530 us, round trips/s 383 vs 592 and 217 vs 279; the bench as is
# (a broker started per run), 3 alternating runs: 1815 vs 865 us, 0.16x vs 0.38x the embedded
# engine's round trips/s.
JVM_PROFILES = {"fast": FAST_START, "full": ()}
MAVEN_TIMEOUT = 900.0
STOP_TIMEOUT = 30.0
_PORT_ATTEMPTS = 3


class BrokerError(Exception):
    """Base class of this module's errors."""


class BrokerUnavailable(BrokerError):
    """This machine cannot run a broker (see the module docstring for what callers do)."""


class BrokerStartError(BrokerError):
    """The broker process exited, or was not ready in time."""

    def __init__(self, message: str, log_file: Path, log_excerpt: str) -> None:
        super().__init__(f"{message}\n--- from {log_file} ---\n{log_excerpt}")
        self.log_file = log_file
        self.log_excerpt = log_excerpt


class _PortTaken(Exception):
    """A free port we picked was taken before the broker bound it; pick again."""


class KafkaBroker:
    """One broker process rooted at ``workdir`` (config, logs and data all live there).

    ``heap`` is the JVM's -Xmx; ``config`` adds to or overrides ``server.properties``;
    ``jvm_options`` are appended after the defaults, so they win. ``sasl_users`` (name ->
    password) makes the client listener SASL_PLAINTEXT, accepting those users with PLAIN and
    SCRAM-SHA-512 (SCRAM credentials are written into the metadata log when it is formatted).
    ``tls`` (a ``Tls``: the broker's PEM certificate and unencrypted PKCS#8 key, and the CA that
    signed it) makes the client listener speak TLS: SSL, or SASL_SSL with ``sasl_users``.
    """

    def __init__(
        self,
        workdir: Path | str,
        *,
        heap: str = "256m",
        config: Mapping[str, str] | None = None,
        jvm_options: Sequence[str] = (),
        sasl_users: Mapping[str, str] | None = None,
        tls: Tls | None = None,
    ) -> None:
        if not re.fullmatch(r"[1-9]\d*[kKmMgG]", heap):
            raise ValueError(f"heap must look like '256m' or '1g', got {heap!r}")
        for key, value in (config or {}).items():
            if "\n" in f"{key}{value}" or not key:
                raise ValueError(f"bad server.properties entry {key!r}={value!r}")
        self.workdir = Path(workdir).resolve()
        self.heap = heap
        self.config = dict(config or {})
        self.jvm_options = tuple(jvm_options)
        for name, password in (sasl_users or {}).items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or not re.fullmatch(r"[A-Za-z0-9_.-]+", password):
                raise ValueError(f"SASL user names and passwords must match [A-Za-z0-9_.-]+, got user {name!r}")
        self.sasl_users = dict(sasl_users or {})
        self.tls = tls
        self.bootstrap: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.workdir / "server.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 120.0) -> str:
        """Launch the broker and return its bootstrap address once it serves clients.

        ``timeout`` bounds the wait for readiness; the one-time jar download is bounded by
        ``MAVEN_TIMEOUT`` instead.
        """
        if self._proc is not None:
            raise BrokerError(f"broker in {self.workdir} is already started")
        running = _running_pid(self.workdir)
        if running is not None:
            raise BrokerError(f"a broker (pid {running}) already runs in {self.workdir}")
        java = find_java()
        lib = ensure_jars()
        deadline = time.monotonic() + timeout
        for _ in range(_PORT_ATTEMPTS):
            port, controller_port = _free_ports(2)
            self._prepare(java, lib, port, controller_port)
            self._launch(java, lib)
            try:
                self._wait_ready(port, deadline)
            except _PortTaken:
                self._reap()
                continue
            except BaseException:
                self.stop()
                raise
            self.bootstrap = f"127.0.0.1:{port}"
            _write_state(self.workdir, self._proc.pid, self.bootstrap)
            return self.bootstrap
        raise BrokerStartError("ports kept being taken", self.log_file, _log_excerpt(self.log_file))

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (clean shutdown), wait up to ``timeout`` seconds, then SIGKILL."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("Kafka broker %d ignored SIGTERM for %ss; killing it", self._proc.pid, timeout)
                self._proc.kill()
        self._reap()
        (self.workdir / "broker.json").unlink(missing_ok=True)
        self.bootstrap = None

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _prepare(self, java: Path, lib: Path, port: int, controller_port: int) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        _clear_data_dir(data)
        # The readiness scan starts at offset 0 of a file the new JVM creates, not an old one.
        self.log_file.unlink(missing_ok=True)
        properties = {**_server_properties(data, port, controller_port),
                      **_client_listener_properties(port, controller_port, self.sasl_users, self.tls),
                      **_tls_properties(self.workdir, self.tls), **self.config}
        server_properties = self.workdir / "server.properties"
        server_properties.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (self.workdir / "log4j2.properties").write_text(_log4j2_properties(self.log_file))
        _format_storage(java, lib, server_properties, self.sasl_users)

    def _launch(self, java: Path, lib: Path) -> None:
        command = [
            str(java),
            f"-Xmx{self.heap}",
            *JVM_FLAGS,
            *self.jvm_options,
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp",
            f"{lib}/*",
            "kafka.Kafka",
            str(self.workdir / "server.properties"),
        ]
        # Only JVM crashes and log4j's own complaints reach stdout/stderr; keep them beside the log.
        with open(self.workdir / "jvm.out", "wb") as out:
            self._proc = subprocess.Popen(
                command,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the terminal's signals; `stop` owns its end
            )

    def _wait_ready(self, port: int, deadline: float) -> None:
        """Caller: start. Polls the log for READY_LINE, then the port, until the deadline."""
        scanner = _LineScanner(self.log_file, READY_LINE)
        while True:
            if scanner.found() and _can_connect(port):
                return
            code = self._proc.poll()
            if code is not None:
                excerpt = _log_excerpt(self.log_file)
                if "Address already in use" in excerpt:
                    raise _PortTaken
                message = f"Kafka broker exited with code {code} before it was ready"
                raise BrokerStartError(message + _jvm_output(self.workdir), self.log_file, excerpt)
            if time.monotonic() > deadline:
                message = f"Kafka broker was not ready on 127.0.0.1:{port} in time"
                raise BrokerStartError(message, self.log_file, _log_excerpt(self.log_file))
            time.sleep(0.05)

    def _reap(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None


def find_java() -> Path:
    """The ``java`` of ``JAVA_HOME``, else the one on PATH; it must be Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        java = Path(java_home) / "bin" / "java"
        if not os.access(java, os.X_OK):
            raise BrokerUnavailable(f"JAVA_HOME={java_home!r} has no bin/java")
    else:
        found = shutil.which("java")
        if found is None:
            raise BrokerUnavailable("no java on PATH and JAVA_HOME is not set (Kafka needs Java 17+)")
        java = Path(found)
    major = _java_major(java)
    if major < MIN_JAVA:
        raise BrokerUnavailable(f"{java} is Java {major}; Kafka 4 needs Java {MIN_JAVA} or newer")
    return java


def ensure_jars(lib_dir: Path = LIB_DIR) -> Path:
    """Copy the pom's runtime jars into ``lib_dir`` unless they are there for this very pom.

    Safe to call from several processes at once: they serialise on a lock file and Maven writes
    into a scratch directory that is renamed into place only when complete.
    """
    stamp = hashlib.sha256(POM.read_bytes()).hexdigest()
    if _read(lib_dir / ".pom-sha256") == stamp:
        return lib_dir
    lib_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(lib_dir.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _read(lib_dir / ".pom-sha256") == stamp:
            return lib_dir
        scratch = lib_dir.with_name(f"{lib_dir.name}.partial")
        shutil.rmtree(scratch, ignore_errors=True)
        _copy_dependencies(scratch)
        (scratch / ".pom-sha256").write_text(stamp)
        shutil.rmtree(lib_dir, ignore_errors=True)
        scratch.rename(lib_dir)
    return lib_dir


def _copy_dependencies(target: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerUnavailable(f"no mvn on PATH to fetch the Kafka jars into {target.parent}")
    command = [
        mvn, "-B", "-q", "-f", str(POM),
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={target}",
    ]  # fmt: skip
    log.info("fetching the Kafka jars with Maven (once) into %s", target.parent)
    started = time.monotonic()
    try:
        done = subprocess.run(command, capture_output=True, timeout=MAVEN_TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BrokerUnavailable(f"Maven did not fetch the Kafka jars in {MAVEN_TIMEOUT:.0f}s") from exc
    if done.returncode != 0 or not any(target.glob("kafka_2.13-*.jar")):
        output = (done.stdout + done.stderr).decode(errors="replace").strip().splitlines()
        raise BrokerUnavailable(
            f"Maven could not fetch the Kafka jars (exit {done.returncode}):\n" + "\n".join(output[-20:])
        )
    log.info("fetched the Kafka jars in %.1fs", time.monotonic() - started)


def _java_major(java: Path) -> int:
    try:
        done = subprocess.run([str(java), "-version"], capture_output=True, timeout=60, check=False)
    except OSError as exc:
        raise BrokerUnavailable(f"cannot run {java}: {exc}") from exc
    # `openjdk version "17.0.15" 2025-04-15`, or `"1.8.0_292"` before Java 9.
    match = re.search(rb'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        raise BrokerUnavailable(f"cannot tell the version of {java}: {done.stderr[:200]!r}")
    major = int(match[1])
    return int(match[2] or 0) if major == 1 else major


def _server_properties(data: Path, port: int, controller_port: int) -> dict[str, str]:
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # Internal topics: one replica, one partition, so the first group join is quick.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Threads sized for a 2-core machine (Kafka's defaults: 3 network, 8 I/O, 10 background):
        # a request then wakes fewer threads on its way (issue 17, bench.backend_roundtrip c64:
        # broker CPU per round trip, medians of 4 alternating runs on two warm brokers, ~490 us
        # against ~520 us, within the noise of a loaded machine).
        "num.network.threads": "1",
        "num.io.threads": "2",
        "background.threads": "2",
        # Small segments (1 MiB is Kafka 4's minimum) so compaction and retention act on test data.
        "log.segment.bytes": "1048576",
        # The cleaner's dedupe map is allocated on the heap at startup: 128 MiB by default.
        "log.cleaner.dedupe.buffer.size": "16777216",
    }


def _log4j2_properties(log_file: Path) -> str:
    return f"""\
status = warn
shutdownHook = disable
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log_file}
appender.file.append = false
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def _client_listener_properties(port: int, controller_port: int, users: Mapping[str, str],
                                tls: Tls | None) -> dict[str, str]:
    """The client listener's protocol (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL), which the
    broker also talks to itself on; with users, SASL (PLAIN and SCRAM-SHA-512), the broker
    logging in with PLAIN as a user of its own."""
    if not users and tls is None:
        return {}
    protocol = ("SASL_" if users else "") + ("SSL" if tls is not None else "PLAINTEXT")
    properties = {
        "listeners": f"{protocol}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"{protocol}://127.0.0.1:{port}",
        "listener.security.protocol.map": f"{protocol}:{protocol},CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": protocol,
    }
    if users:
        broker_password = uuid.uuid4().hex
        plain_users = " ".join(f'user_{name}="{password}"'
                               for name, password in {"tb-broker": broker_password, **users}.items())
        listener = protocol.lower()
        properties.update({
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            f"listener.name.{listener}.plain.sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule "
            f'required username="tb-broker" password="{broker_password}" {plain_users};',
            f"listener.name.{listener}.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        })
    return properties


class Tls(NamedTuple):
    """PEM files for a TLS client listener: the broker's certificate, its unencrypted PKCS#8
    key, and the CA that signed the certificate (the broker trusts it when it calls itself)."""

    cert: Path
    key: Path
    ca: Path


def _tls_properties(workdir: Path, tls: Tls | None) -> dict[str, str]:
    """A PEM key store (key, then certificate, in one file in the workdir) and a PEM trust store.
    The listener asks for no client certificate."""
    if tls is None:
        return {}
    keystore = workdir / "keystore.pem"
    keystore.write_bytes(Path(tls.key).read_bytes() + Path(tls.cert).read_bytes())
    keystore.chmod(0o600)
    return {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(Path(tls.ca).resolve()),
        "ssl.client.auth": "none",
    }


def _format_storage(java: Path, lib: Path, server_properties: Path, sasl_users: Mapping[str, str] | None = None) -> None:
    scram = [arg for name, password in (sasl_users or {}).items()
             for arg in ("--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]")]
    command = [
        str(java), "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:-UsePerfData",
        "-cp", f"{lib}/*", "kafka.tools.StorageTool", "format",
        "-t", _cluster_id(), "-c", str(server_properties), *scram,
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BrokerStartError("kafka.tools.StorageTool format hung", server_properties, "") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        raise BrokerStartError(
            f"kafka.tools.StorageTool format failed (exit {done.returncode})",
            server_properties,
            "\n".join(output.splitlines()[-30:]),
        )


def _cluster_id() -> str:
    """A random Kafka Uuid string (URL-safe base64 of 16 bytes) that argparse won't take for a flag."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _clear_data_dir(data: Path) -> None:
    """Remove a previous run's log dir, and nothing that does not look like one."""
    if not data.exists():
        return
    if (data / "meta.properties").exists() or not any(data.iterdir()):
        shutil.rmtree(data)
    else:
        raise BrokerError(f"{data} exists but is not a Kafka log dir; refusing to delete it")


def _free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _can_connect(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class _LineScanner:
    """Reads a growing file from where it stopped and remembers whether a marker was seen."""

    def __init__(self, path: Path, marker: bytes) -> None:
        self._path, self._marker = path, marker
        self._offset, self._seen = 0, False

    def found(self) -> bool:
        if not self._seen:
            with contextlib.suppress(FileNotFoundError), open(self._path, "rb") as file:
                file.seek(self._offset)
                chunk = file.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]  # a partial last line is read again
                self._offset += len(complete)
                self._seen = self._marker in complete
        return self._seen


def _log_excerpt(path: Path, lines: int = 20) -> str:
    """The first ERROR record without its stack frames (the cause; shutdown noise follows it),
    then the last lines."""
    try:
        with open(path, errors="replace") as file:
            text = file.read().splitlines()
    except FileNotFoundError:
        return "(no log file was written)"
    first_error = next((i for i, line in enumerate(text) if "] ERROR " in line), None)
    if first_error is None or first_error >= len(text) - lines:
        return "\n".join(text[-lines:])
    cause = [line for line in text[first_error : first_error + 200] if not line.startswith("\tat ")][:lines]
    return "\n".join([*cause, "...", *text[-lines:]])


def _jvm_output(workdir: Path) -> str:
    with contextlib.suppress(FileNotFoundError), open(workdir / "jvm.out", errors="replace") as file:
        text = "".join(deque(file, maxlen=20)).strip()
        return f"; JVM output:\n{text}" if text else ""
    return ""


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return None


# broker.json records a started broker, so `python -m deploy.kafka stop` can find it.


def _write_state(workdir: Path, pid: int, bootstrap: str) -> None:
    (workdir / "broker.json").write_text(json.dumps({"pid": pid, "bootstrap": bootstrap}) + "\n")


def _running_pid(workdir: Path) -> int | None:
    """The pid in ``workdir/broker.json`` if that process is alive and is this workdir's broker."""
    try:
        pid = int(json.loads(_read(workdir / "broker.json") or "null")["pid"])
    except (TypeError, ValueError, KeyError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    zombie = status.rsplit(")", 1)[1].split()[0] == "Z"
    ours = b"kafka.Kafka" in cmdline and str(workdir / "server.properties").encode() in cmdline
    return pid if ours and not zombie else None


def _stop_pid(workdir: Path, timeout: float = STOP_TIMEOUT) -> int | None:
    """Stop the broker recorded in ``workdir`` that this process did not start."""
    pid = _running_pid(workdir)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _running_pid(workdir) == pid and time.monotonic() < deadline:
            time.sleep(0.1)
        if _running_pid(workdir) == pid:
            os.kill(pid, signal.SIGKILL)
    (workdir / "broker.json").unlink(missing_ok=True)
    return pid


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.kafka", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop", "fetch"])
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--heap", default="256m")
    parser.add_argument("--jvm", choices=sorted(JVM_PROFILES), default="full",
                        help="JIT profile: full (C1+C2, default) or fast (C1 only, as the tests and benchmarks)")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    workdir = args.workdir.resolve()
    try:
        if args.command == "fetch":
            print(ensure_jars())
        elif args.command == "start":
            broker = KafkaBroker(workdir, heap=args.heap, jvm_options=JVM_PROFILES[args.jvm])
            started = time.monotonic()
            address = broker.start(timeout=args.timeout)
            print(gateway_env("kafka", kafka__bootstrap_servers=address))
            log.info("pid %d, ready in %.1fs; logs in %s", broker.pid, time.monotonic() - started, broker.log_file)
        else:
            pid = _stop_pid(workdir)
            log.info(f"stopped pid {pid}" if pid else f"no broker running in {workdir}")
    except BrokerUnavailable as exc:
        print(f"Kafka broker unavailable: {exc}", file=sys.stderr)
        return 2
    except BrokerError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A throwaway Apache RocketMQ 5 cluster (name server, broker, proxy) for tests and local runs.

The jars come from Maven Central through ``deploy/rocketmq/pom.xml`` into ``.brokers/rocketmq/lib``
(fetched once). Every process keeps its config, logs and store under one work directory
(``conf/``, ``logs/<component>.log|.out``, ``store/``) and listens on 127.0.0.1 ports picked at
start. Findings about the cluster and its gRPC protocol: deploy/ROCKETMQ.md.

Errors::

    RuntimeError
    ├── BrokerUnavailable     Java or Maven is missing, or the jars cannot be fetched
    │                         (callers skip; under CI=true they fail)
    └── ClusterError          a component did not come up, or an admin command failed
                              (``component``, ``log_tail``)

Usage::

    with RocketMQCluster(tmp_path) as cluster:
        endpoint = cluster.endpoint          # "127.0.0.1:PORT", the proxy's gRPC port
        cluster.create_topic("agents", message_type="LITE", lite_expiration_minutes=60)
        cluster.create_group("agents-gw", lite_bind_topic="agents")

    python -m deploy.rocketmq start|stop|status [--workdir DIR] [--jvm fast|perf]   (from the repo root)

The JVMs run the "fast" profile unless asked otherwise (``jvm="perf"``, ``--jvm perf``): quick
to start, slower per request than "perf" once that one is warm (``JVM_PROFILES``).

Start order: name server, broker (ready once registered with the name server: nudged, since
on its own it may register only 10 s after boot), proxy in cluster mode (local mode in 5.5.0
has no lite subscription service: ``LocalServiceManager.getLiteSubscriptionService()`` is null).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.gateway_env import gateway_env

# 5.5.1 is only partly on Maven Central (proxy, namesrv, tools, client and the parent pom are
# missing there), so the newest complete release is used. See deploy/ROCKETMQ.md.
ROCKETMQ_VERSION = "5.5.0"

REPO_ROOT = Path(__file__).resolve().parent.parent
POM = REPO_ROOT / "deploy" / "rocketmq" / "pom.xml"
LIB_DIR = REPO_ROOT / ".brokers" / "rocketmq" / "lib"
DEFAULT_WORKDIR = REPO_ROOT / ".brokers" / "rocketmq" / "run"

CLUSTER_NAME = "DefaultCluster"
BROKER_NAME = "broker-a"
MESSAGE_TYPES = ("NORMAL", "LITE", "FIFO", "DELAY", "TRANSACTION", "PRIORITY")

_MAIN_CLASSES = {
    "namesrv": "org.apache.rocketmq.namesrv.NamesrvStartup",
    "broker": "org.apache.rocketmq.broker.BrokerStartup",
    "proxy": "org.apache.rocketmq.proxy.ProxyStartup",
}
# (file, line) pairs that must all appear before a component counts as ready. The broker
# registers with the name server only from a timer 10 s after boot (at boot its list of
# reachable name servers is still empty), and the proxy exits if the cluster is not routable.
_REGISTERED = "Registering current broker to name server completed"
_READY_LINES = {
    "namesrv": (("out", "The Name Server boot success"),),
    "broker": (("out", "boot success"), ("log", _REGISTERED)),
    "proxy": (("out", "rocketmq-proxy startup successfully"),),
}

@dataclass(frozen=True)
class JvmProfile:
    """How the cluster's JVMs run: heap and direct memory per component, and the VM flags."""

    heaps: Mapping[str, str]
    direct_memory: Mapping[str, str]
    flags: tuple[str, ...]
    initial_heap: str | None = None   # -Xms; None: -Xms equals -Xmx


# "fast" (the default, for tests): small heaps and C1 only, which reaches "started" with about
# 40% less CPU (much sooner on a busy machine). "perf" (a long-running broker): the full tiered
# JIT (C2), heaps fixed at their size so they never resize, and G1 with a short pause goal as
# RocketMQ's own runbroker.sh, with GC threads sized for a 2-core machine: ~25% less CPU per
# request once warm, but C2 spends ~18 s of CPU per JVM getting there (deploy/ROCKETMQ.md).
# `mqadmin` is a short-lived JVM: it always runs "fast".
JVM_PROFILES = {
    "fast": JvmProfile(
        heaps={"namesrv": "128m", "broker": "384m", "proxy": "256m", "admin": "128m"},
        direct_memory={"namesrv": "64m", "broker": "256m", "proxy": "128m", "admin": "64m"},
        flags=("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"), initial_heap="32m"),
    "perf": JvmProfile(
        heaps={"namesrv": "256m", "broker": "2g", "proxy": "1g"},
        direct_memory={"namesrv": "128m", "broker": "1g", "proxy": "512m"},
        flags=("-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:ParallelGCThreads=2",
               "-XX:ConcGCThreads=1", "-XX:SoftRefLRUPolicyMSPerMB=0", "-XX:+PerfDisableSharedMem")),
}
_STOP_GRACE_SECONDS = 30.0

# One file per process; the periodic watermark/traffic/pop-buffer lines are muted.
_QUIET_LOGGERS = ("RocketmqWaterMark", "RocketmqNamesrvWaterMark", "RocketmqProxyWatermark",
                  "RocketmqTraffic", "RocketmqPop", "RocketmqStats", "RocketmqRemoting")
_LOGBACK = """<?xml version="1.0" encoding="UTF-8"?>
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{path}</file>
    <append>true</append>
    <encoder>
      <pattern>%d{{yyyy-MM-dd HH:mm:ss.SSS}} %p %t %c{{0}} - %m%n</pattern>
      <charset class="java.nio.charset.Charset">UTF-8</charset>
    </encoder>
  </appender>
{quiet}
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
"""


class BrokerUnavailable(RuntimeError):
    """Java or Maven is missing (or the jars cannot be fetched): callers skip, or fail under CI."""


class ClusterError(RuntimeError):
    def __init__(self, component: str, message: str, log_tail: str = "") -> None:
        self.component = component
        self.log_tail = log_tail
        detail = f"\n--- tail of {component} log ---\n{log_tail}" if log_tail else ""
        super().__init__(f"rocketmq {component}: {message}{detail}")


@dataclass
class Ports:
    namesrv: int
    broker: int
    broker_ha: int
    proxy_grpc: int
    proxy_remoting: int


# ---------------------------------------------------------------------------------------------
# tools and jars


def java_executable() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    if candidate is not None and candidate.is_file():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise BrokerUnavailable("no `java` on PATH and no JAVA_HOME: install a JDK 17")
    return found


def _jars_complete(lib_dir: Path) -> bool:
    marker = lib_dir / ".complete"
    return marker.is_file() and marker.read_text().strip() == ROCKETMQ_VERSION


def ensure_jars(lib_dir: Path = LIB_DIR) -> Path:
    """Fetch the RocketMQ jars with Maven unless ``lib_dir`` already holds a complete copy.

    The copy lands in a private staging folder first, so a half-done or concurrent fetch never
    looks complete.
    """
    if _jars_complete(lib_dir):
        return lib_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerUnavailable(f"no `mvn` on PATH and {lib_dir} holds no RocketMQ jars")
    staging = lib_dir.with_name(f"{lib_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn, "-B", "-q", "-f", str(POM),
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={staging}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-4000:]
        raise BrokerUnavailable(f"maven could not fetch the RocketMQ jars:\n{output}")
    (staging / ".complete").write_text(ROCKETMQ_VERSION)
    if _jars_complete(lib_dir):  # another process won the race
        shutil.rmtree(staging, ignore_errors=True)
        return lib_dir
    shutil.rmtree(lib_dir, ignore_errors=True)
    staging.rename(lib_dir)
    return lib_dir


# ---------------------------------------------------------------------------------------------
# ports and waiting


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _broker_port() -> int:
    """A free port P whose P-2 is free too: the broker opens its "fast" server on P-2."""
    for _ in range(100):
        port = _free_port()
        if port > 1026 and _port_is_free(port - 2):
            return port
    raise ClusterError("broker", "found no free port pair for the broker")


def pick_ports() -> Ports:
    chosen: list[int] = []
    broker = _broker_port()
    chosen += [broker, broker - 2]
    others = []
    while len(others) < 4:
        port = _free_port()
        if port not in chosen:
            chosen.append(port)
            others.append(port)
    return Ports(namesrv=others[0], broker=broker, broker_ha=others[1],
                 proxy_grpc=others[2], proxy_remoting=others[3])


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_until(check: Callable[[], bool], deadline: float, interval: float = 0.1) -> bool:
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(_read(path).splitlines()[-lines:])


def _rss_bytes(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------------------------------------
# the cluster


class RocketMQCluster:
    """Name server + broker + proxy (cluster mode) under ``workdir``.

    ``start()`` returns the proxy's gRPC endpoint; ``stop()`` ends the three JVMs. The store
    survives a restart with the same workdir; topics and groups created through the admin
    methods are kept there.
    """

    def __init__(self, workdir: Path, *, lib_dir: Path = LIB_DIR,
                 broker_overrides: Mapping[str, object] | None = None,
                 proxy_overrides: Mapping[str, object] | None = None,
                 auth: tuple[str, str] | None = None,
                 tls: tuple[Path, Path] | None = None, jvm: str = "fast") -> None:
        """``*_overrides`` replace or add keys of the generated broker.conf / rmq-proxy.json,
        e.g. ``proxy_overrides={"grpcClientConsumerMinLongPollingTimeoutMillis": 1000}``.

        ``auth=(user, password)``: authentication and authorization on (ACL 2.0) in broker and
        proxy, ``user`` the initial super user, also used by the cluster's own clients and by
        ``mqadmin`` (``conf/tools.yml``). ``tls=(cert, key)``: the proxy serves these PEM files
        and requires TLS on its gRPC port (plaintext is refused). ``jvm``: a key of
        ``JVM_PROFILES``, "fast" (tests: quick start) or "perf" (full JIT, for long runs)."""
        if jvm not in JVM_PROFILES:
            raise ValueError(f"jvm must be one of {sorted(JVM_PROFILES)}, got {jvm!r}")
        self.jvm = jvm
        self.workdir = Path(workdir).resolve()
        self.lib_dir = lib_dir
        self.auth = auth
        self.tls = tls
        self.broker_overrides = {**(auth_config(*auth) if auth else {}), **dict(broker_overrides or {})}
        self.proxy_overrides = {**(proxy_auth_config(*auth) if auth else {}),
                                **(proxy_tls_config(*tls) if tls else {}), **dict(proxy_overrides or {})}
        self.ports: Ports | None = None
        self.start_seconds: float | None = None
        self._procs: dict[str, subprocess.Popen] = {}
        self._java: str | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 180.0) -> str:
        """Start name server, broker and proxy, waiting for each; return ``127.0.0.1:<grpc port>``."""
        if self._procs:
            raise ClusterError("cluster", "already started")
        self._java = java_executable()
        ensure_jars(self.lib_dir)
        began = time.monotonic()
        deadline = began + timeout
        self.ports = pick_ports()
        self._write_config()
        try:
            self._launch("namesrv")
            self._wait_ready("namesrv", self.ports.namesrv, deadline)
            self._launch("broker")
            self._wait_ready("broker", self.ports.broker, deadline, registered=False)
            self._ensure_registered(deadline)
            self._launch("proxy")
            self._wait_ready("proxy", self.ports.proxy_grpc, deadline)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self.endpoint

    def stop(self, graceful: bool = False, timeout: float = 30.0) -> None:
        """End the three JVMs: killed at once, or with ``graceful`` TERM first (about 15 s).

        A killed broker recovers its store on the next start; tests throw theirs away.
        """
        procs = [self._procs.pop(name) for name in ("proxy", "broker", "namesrv") if name in self._procs]
        for proc in procs:
            if proc.poll() is not None:
                continue
            if graceful:
                proc.terminate()
            else:
                proc.kill()
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> RocketMQCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def detach(self) -> dict[str, int]:
        """Forget the processes (they keep running) and return their pids: for the CLI."""
        pids = self.pids()
        self._procs.clear()
        return pids

    def __del__(self) -> None:
        # A test that forgot stop() must not leave three JVMs behind.
        if getattr(self, "_procs", None):
            self.stop()

    # -- facts ----------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self._ports().proxy_grpc}"

    @property
    def namesrv_addr(self) -> str:
        return f"127.0.0.1:{self._ports().namesrv}"

    @property
    def broker_addr(self) -> str:
        return f"127.0.0.1:{self._ports().broker}"

    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each running JVM, from /proc."""
        return {name: _rss_bytes(pid) for name, pid in self.pids().items()}

    def log_path(self, component: str) -> Path:
        return self.workdir / "logs" / f"{component}.log"

    # -- admin ----------------------------------------------------------------------------------

    def create_topic(self, name: str, message_type: str = "NORMAL", *,
                     lite_expiration_minutes: int | None = None, queues: int = 4) -> None:
        """``mqadmin updateTopic -c CLUSTER -t NAME -a +message.type=TYPE[,+lite.topic.expiration=M]``."""
        _check_name("topic", name)
        if message_type not in MESSAGE_TYPES:
            raise ValueError(f"message_type must be one of {MESSAGE_TYPES}, got {message_type!r}")
        if lite_expiration_minutes is not None and message_type != "LITE":
            raise ValueError(f"lite_expiration_minutes only applies to LITE topics, got {message_type!r}")
        attributes = [f"+message.type={message_type}"]
        if lite_expiration_minutes is not None:
            attributes.append(f"+lite.topic.expiration={int(lite_expiration_minutes)}")
        args = ["updateTopic", "-c", CLUSTER_NAME, "-t", name, "-r", str(queues), "-w", str(queues),
                "-a", ",".join(attributes)]
        if message_type == "FIFO":
            args += ["-o", "true"]
        self.admin(*args, expect="create topic to")

    def create_group(self, name: str, *, lite_bind_topic: str | None = None,
                     max_retry: int | None = None, fifo: bool = False,
                     attributes: dict[str, str] | None = None) -> None:
        """``mqadmin updateSubGroup -c CLUSTER -g NAME [-r N] [-o true] [--attributes +k=v,...]``.

        ``lite_bind_topic`` sets ``lite.bind.topic``; ``attributes`` adds any other group
        attribute, e.g. ``{"lite.sub.client.quota": "100"}``.
        """
        _check_name("group", name)
        merged = dict(attributes or {})
        if lite_bind_topic is not None:
            merged["lite.bind.topic"] = lite_bind_topic
        args = ["updateSubGroup", "-c", CLUSTER_NAME, "-g", name]
        if max_retry is not None:
            args += ["-r", str(int(max_retry))]
        if fifo:
            args += ["-o", "true"]
        if merged:
            args += ["--attributes", ",".join(f"+{key}={value}" for key, value in merged.items())]
        self.admin(*args, expect="create subscription group to")

    def admin(self, *args: str, expect: str | None = None, timeout: float = 60.0) -> str:
        """Run one ``mqadmin`` sub-command against this cluster; return what it printed.

        ``mqadmin`` exits 0 even when the command failed (it prints the stack trace), so the
        output is checked for ``expect`` and for exceptions. Once ``expect`` is printed the
        work is done and the JVM is killed: its client shutdown would idle for another 3 s.
        """
        command = [*self._java_command("admin"), "org.apache.rocketmq.tools.command.MQAdminStartup",
                   *args, "-n", self.namesrv_addr]
        output, finished = _run_until(command, expect, timeout, cwd=self.workdir)
        if not finished or "Exception" in output or (expect is not None and expect not in output):
            raise ClusterError("admin", f"`mqadmin {' '.join(args)}` failed", output[-4000:])
        return output

    # -- internals ------------------------------------------------------------------------------

    def _ports(self) -> Ports:
        if self.ports is None:
            raise ClusterError("cluster", "not started")
        return self.ports

    def _write_config(self) -> None:
        ports = self._ports()
        for sub in ("conf", "logs", "store"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        # Readiness is read from these files: lines of a previous run must not count.
        for log in (self.workdir / "logs").glob("*.*"):
            if log.suffix in (".log", ".out"):
                log.replace(log.with_name(log.name + ".prev"))
        for component in ("namesrv", "broker", "proxy", "admin"):
            (self.workdir / "conf" / f"logback-{component}.xml").write_text(
                _LOGBACK.format(path=self.log_path(component), quiet=_quiet_loggers_xml()))
        _write_properties(self.workdir / "conf" / "namesrv.properties", namesrv_config(ports))
        broker = {**broker_config(ports, self.workdir), **self.broker_overrides}
        proxy = {**proxy_config(ports), **_proxy_tls_files(self.workdir / "conf"), **self.proxy_overrides}
        _write_properties(self.workdir / "conf" / "broker.conf", broker)
        (self.workdir / "conf" / "rmq-proxy.json").write_text(json.dumps(proxy, indent=2))
        if self.auth is not None:   # mqadmin signs its requests with these (MixAll.ACL_CONF_TOOLS_FILE)
            user, password = self.auth
            (self.workdir / "conf" / "tools.yml").write_text(f"accessKey: {user}\nsecretKey: {password}\n")

    def _java_command(self, component: str) -> list[str]:
        home = self.workdir
        profile = JVM_PROFILES["fast" if component == "admin" else self.jvm]
        heap = profile.heaps[component]
        return [
            self._java or java_executable(),
            "-server", f"-Xms{profile.initial_heap or heap}", f"-Xmx{heap}", "-Xss512k",
            f"-XX:MaxDirectMemorySize={profile.direct_memory[component]}",
            *profile.flags, "-XX:-OmitStackTraceInFastThrow",
            "-Djava.net.preferIPv4Stack=true",
            # Plaintext only: otherwise broker and proxy each generate a self-signed RSA
            # certificate at start (1-2 s idle, >10 s measured on a loaded machine). The proxy's
            # gRPC port still makes one; it accepts plaintext either way.
            *self._tls_properties(component), "-Djava.security.egd=file:/dev/./urandom",
            f"-Duser.home={home}",
            f"-Drocketmq.home.dir={home}",
            f"-Drmq.logback.configurationFile={home / 'conf' / f'logback-{component}.xml'}",
            "--add-opens=java.base/java.nio=ALL-UNNAMED",
            "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
            "--add-opens=java.base/java.lang=ALL-UNNAMED",
            "-cp", f"{self.lib_dir}/*",
        ]

    def _tls_properties(self, component: str) -> list[str]:
        if self.tls is None or component != "proxy":
            return ["-Dtls.server.mode=disabled"]
        # The proxy's gRPC port follows tls.server.mode too: "enforcing" refuses plaintext. Its
        # own clients (to name server and broker) would follow it as well unless tls.enable says no.
        cert, key = self.tls
        return ["-Dtls.server.mode=enforcing", "-Dtls.enable=false",
                f"-Dtls.server.certPath={cert}", f"-Dtls.server.keyPath={key}"]

    def _launch(self, component: str) -> None:
        conf = self.workdir / "conf"
        args = {
            "namesrv": ["-c", str(conf / "namesrv.properties")],
            "broker": ["-c", str(conf / "broker.conf")],
            "proxy": ["-pm", "cluster", "-pc", str(conf / "rmq-proxy.json"), "-n", self.namesrv_addr],
        }[component]
        out = self.workdir / "logs" / f"{component}.out"
        with out.open("ab") as sink:
            self._procs[component] = subprocess.Popen(
                [*self._java_command(component), _MAIN_CLASSES[component], *args],
                cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                env={**os.environ, "ROCKETMQ_HOME": str(self.workdir)}, start_new_session=True,
            )

    def _wait_ready(self, component: str, port: int, deadline: float,
                    registered: bool = True) -> None:
        proc = self._procs[component]
        needed = _READY_LINES[component] if registered else _READY_LINES[component][:1]

        def ready() -> bool:
            return proc.poll() is not None or (
                _tcp_open(port) and all(self._logged(kind, component, line) for kind, line in needed))

        came_up = _wait_until(ready, deadline)
        if proc.poll() is not None:
            raise self._start_error(component, f"exited with code {proc.returncode} during start")
        if not came_up:
            raise self._start_error(component, f"not ready on port {port} before the deadline")

    def _ensure_registered(self, deadline: float) -> None:
        """Make the broker register with the name server now instead of 10 s after boot.

        Changing ``brokerPermission`` (to its default, 6 = read+write) re-registers the broker.
        """
        if not self._logged("log", "broker", _REGISTERED):
            self.admin("updateBrokerConfig", "-b", self.broker_addr, "-k", "brokerPermission",
                       "-v", "6", expect="update broker config success")
        self._wait_ready("broker", self._ports().broker, deadline)

    def _logged(self, kind: str, component: str, line: str) -> bool:
        path = self.workdir / "logs" / f"{component}.{kind}"
        return line in _read(path)

    def _start_error(self, component: str, message: str) -> ClusterError:
        out = self.workdir / "logs" / f"{component}.out"
        return ClusterError(component, message, _tail(out) + "\n" + _tail(self.log_path(component)))


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-%|")


def _check_name(kind: str, name: str) -> None:
    # RocketMQ's own rule for topic and group names: ^[%|a-zA-Z0-9_-]+$, at most 127 chars.
    if not name or len(name) > 127 or not set(name) <= _NAME_CHARS:
        raise ValueError(f"illegal RocketMQ {kind} name {name!r}: use [A-Za-z0-9_-%|], 1..127 chars")


def namesrv_config(ports: Ports) -> dict[str, object]:
    return {"listenPort": ports.namesrv, "bindAddress": "127.0.0.1"}


def broker_config(ports: Ports, workdir: Path) -> dict[str, object]:
    store = workdir / "store"
    return {
        "brokerClusterName": CLUSTER_NAME,
        "brokerName": BROKER_NAME,
        "brokerId": 0,
        "brokerRole": "ASYNC_MASTER",
        "flushDiskType": "ASYNC_FLUSH",
        "namesrvAddr": f"127.0.0.1:{ports.namesrv}",
        "brokerIP1": "127.0.0.1",
        "bindAddress": "127.0.0.1",
        "listenPort": ports.broker,
        "haListenPort": ports.broker_ha,
        "storePathRootDir": store,
        "storePathCommitLog": store / "commitlog",
        # LiteTopic: lite topics are LMQ queues fed by multi-dispatch.
        "enableLmq": "true",
        "enableMultiDispatch": "true",
        "autoCreateTopicEnable": "true",
        "autoCreateSubscriptionGroup": "true",
        # Small files: a test store stays a few MB on disk and in page cache.
        "mappedFileSizeCommitLog": 64 * 1024 * 1024,
        "mappedFileSizeConsumeQueue": 30_000 * 20,
        "mappedFileSizeTimerLog": 16 * 1024 * 1024,
        "maxHashSlotNum": 50_000,
        "maxIndexNum": 200_000,
        # Every flush, the timer store compares its whole 38.7 MB wheel file byte by byte with
        # its copy in memory (TimerWheel.flush in 5.5.0): once a second by default, which kept an
        # idle broker at 19% (C2) to 38% (C1) of a core. Only crash recovery reads what it
        # flushes, from the timer log since the last checkpoint; topicbridge sends no timer messages.
        "timerFlushIntervalMs": 60_000,
        # Every lite topic is a consume queue of its own, and the flush service walks all of
        # them each interval (1 s by default: ~10% of a core on an idle broker that had served
        # a few thousand reply channels). A killed broker rebuilds them from the commit log.
        "flushIntervalConsumeQueue": 10_000,
        # Consume queues in RocksDB, not one mapped file per queue: every lite topic is a queue,
        # and a file consume queue holds a file descriptor until the topic expires (>= 15 min).
        # At the JVM's 20,000-descriptor limit here, ~19,500 lite topics in, the broker could no
        # longer create one ("Too many open files") and its ReputMessageService retried that
        # dispatch forever, stalling every topic: a gateway at 22 tasks/s gets there in 15 min.
        "storeType": "defaultRocksDB",
        # The broker refuses writes when the disk is fuller than these (defaults 75/90/85 %).
        "diskMaxUsedSpaceRatio": 95,
        "diskSpaceWarningLevelRatio": 98,
        "diskSpaceCleanForciblyRatio": 97,
    }


def proxy_config(ports: Ports) -> dict[str, object]:
    return {
        "rocketMQClusterName": CLUSTER_NAME,
        "namesrvAddr": f"127.0.0.1:{ports.namesrv}",
        "proxyMode": "cluster",
        "grpcServerPort": ports.proxy_grpc,
        "remotingListenPort": ports.proxy_remoting,
        "enablePrintJstack": False,
    }


def auth_config(user: str, password: str) -> dict[str, object]:
    """Broker settings of RocketMQ 5 ACL 2.0: users and ACLs kept in the broker's own store,
    `user` created at first start as the super user, and used by the broker's inner clients."""
    auth, authz = "org.apache.rocketmq.auth.authentication", "org.apache.rocketmq.auth.authorization"
    return {
        "authenticationEnabled": "true",
        "authenticationProvider": f"{auth}.provider.DefaultAuthenticationProvider",
        "authenticationMetadataProvider": f"{auth}.provider.LocalAuthenticationMetadataProvider",
        "authorizationEnabled": "true",
        "authorizationProvider": f"{authz}.provider.DefaultAuthorizationProvider",
        "authorizationMetadataProvider": f"{authz}.provider.LocalAuthorizationMetadataProvider",
        "initAuthenticationUser": json.dumps({"username": user, "password": password}),
        "innerClientAuthenticationCredentials": json.dumps({"accessKey": user, "secretKey": password}),
    }


def proxy_auth_config(user: str, password: str) -> dict[str, object]:
    """Proxy settings of ACL 2.0: it checks gRPC clients itself, reading users and ACLs from the
    brokers (as `user`)."""
    auth, authz = "org.apache.rocketmq.auth.authentication", "org.apache.rocketmq.auth.authorization"
    return {
        "authenticationEnabled": True,
        "authenticationProvider": f"{auth}.provider.DefaultAuthenticationProvider",
        "authenticationMetadataProvider": "org.apache.rocketmq.proxy.auth.ProxyAuthenticationMetadataProvider",
        "authorizationEnabled": True,
        "authorizationProvider": f"{authz}.provider.DefaultAuthorizationProvider",
        "authorizationMetadataProvider": "org.apache.rocketmq.proxy.auth.ProxyAuthorizationMetadataProvider",
        "innerClientAuthenticationCredentials": json.dumps({"accessKey": user, "secretKey": password}),
        # Without it the proxy's own remoting clients send no credentials ("username cannot be null").
        "enableAclRpcHookForClusterMode": True,
    }


def proxy_tls_config(cert: Path, key: Path) -> dict[str, object]:
    return {"tlsTestModeEnable": False, "tlsCertPath": str(cert), "tlsKeyPath": str(key)}


def _quiet_loggers_xml() -> str:
    return "\n".join(f'  <logger name="{name}" level="WARN"/>' for name in _QUIET_LOGGERS)


def _proxy_tls_files(conf: Path) -> dict[str, object]:
    """A ready-made certificate for the proxy's gRPC port (which always sets up TLS besides
    plaintext): saves generating a self-signed RSA key at every start. Without openssl the
    proxy keeps its test mode and generates one itself."""
    openssl = shutil.which("openssl")
    cert, key = conf / "tls" / "proxy.crt", conf / "tls" / "proxy.key"
    if not (cert.is_file() and key.is_file()):
        if openssl is None:
            return {}
        cert.parent.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(key), "-out", str(cert), "-days", "3650", "-subj", "/CN=localhost"],
            capture_output=True, timeout=60)
        if done.returncode != 0:
            return {}
    return {"tlsTestModeEnable": False, "tlsCertPath": str(cert), "tlsKeyPath": str(key)}


def _write_properties(path: Path, values: dict[str, object]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


def _run_until(command: list[str], expect: str | None, timeout: float,
               cwd: Path) -> tuple[str, bool]:
    """Run ``command``; stop reading (and kill it) once a line contains ``expect``.

    Returns the output and whether the command finished (``expect`` seen, or exit before the
    timeout).
    """
    proc = subprocess.Popen(command, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    watchdog = threading.Timer(timeout, proc.kill)
    watchdog.start()
    lines: list[str] = []
    seen = False
    try:
        for line in proc.stdout:
            lines.append(line)
            if expect is not None and expect in line:
                seen = True
                break
    finally:
        watchdog.cancel()
        if proc.poll() is None and seen:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    return "".join(lines), seen or proc.returncode >= 0


# ---------------------------------------------------------------------------------------------
# command line: a cluster that outlives the command, remembered in <workdir>/cluster.json


def _state_path(workdir: Path) -> Path:
    return workdir / "cluster.json"


def _pid_is_ours(pid: int, workdir: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return f"-Duser.home={workdir}" in cmdline.split("\0")


def _cli_start(workdir: Path, timeout: float, auth: tuple[str, str] | None = None,
               tls: tuple[Path, Path] | None = None, jvm: str = "fast") -> int:
    if _state_path(workdir).is_file():
        print(f"a cluster is already recorded in {_state_path(workdir)}; stop it first", file=sys.stderr)
        return 1
    cluster = RocketMQCluster(workdir, auth=auth, tls=tls, jvm=jvm)
    endpoint = cluster.start(timeout=timeout)
    state = {"endpoint": endpoint, "namesrv": cluster.namesrv_addr, "pids": cluster.detach(),
             "ports": asdict(cluster.ports), "start_seconds": round(cluster.start_seconds or 0, 1),
             "auth": auth is not None, "tls": tls is not None, "jvm": jvm}
    _state_path(workdir).write_text(json.dumps(state, indent=2))
    extra = {"rocketmq__access_key": auth[0], "rocketmq__secret_key": auth[1]} if auth else {}
    if tls is not None:   # right for a self-signed certificate; else point tls_ca at its CA instead
        extra["rocketmq__tls_ca"] = str(tls[0])
    print(gateway_env("rocketmq", rocketmq__endpoint=endpoint, rocketmq__admin=cluster.namesrv_addr, **extra))
    return 0


def _auth_option(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


def _cli_stop(workdir: Path) -> int:
    path = _state_path(workdir)
    if not path.is_file():
        print(f"no cluster recorded in {path}", file=sys.stderr)
        return 0
    pids = [pid for pid in json.loads(path.read_text())["pids"].values() if _pid_is_ours(pid, workdir)]
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_SECONDS
    for pid in pids:
        if not _wait_until(lambda: not _pid_is_ours(pid, workdir), deadline):
            os.kill(pid, signal.SIGKILL)
    path.unlink()
    return 0


def _cli_status(workdir: Path) -> int:
    path = _state_path(workdir)
    if not path.is_file():
        print("stopped")
        return 1
    state = json.loads(path.read_text())
    alive = {name: _pid_is_ours(pid, workdir) for name, pid in state["pids"].items()}
    print(json.dumps({**state, "alive": alive}, indent=2))
    return 0 if all(alive.values()) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.rocketmq", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--auth", type=_auth_option, metavar="USER:PASSWORD",
                        help="start: authentication and authorization on, USER the initial super user")
    parser.add_argument("--tls-cert", type=Path, help="start: the proxy's PEM certificate; TLS is then required")
    parser.add_argument("--tls-key", type=Path, help="start: the PKCS#8 PEM key of --tls-cert")
    parser.add_argument("--jvm", choices=sorted(JVM_PROFILES), default="fast",
                        help="start: fast = small heaps, C1 only (quick start, for tests); "
                             "perf = full JIT, bigger heaps, G1 (cheaper per request once warm)")
    options = parser.parse_args(argv)
    if (options.tls_cert is None) != (options.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    workdir = options.workdir.resolve()
    tls = (options.tls_cert.resolve(), options.tls_key.resolve()) if options.tls_cert else None
    try:
        if options.command == "start":
            return _cli_start(workdir, options.timeout, options.auth, tls, options.jvm)
        if options.command == "stop":
            return _cli_stop(workdir)
        return _cli_status(workdir)
    except (BrokerUnavailable, ClusterError) as exc:
        print(exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""One real RocketMQ cluster (name server, broker, proxy) for the whole test session.

Started on first use by `shared_cluster()` (about 5-10 s), stopped when the interpreter exits
(its work directory is deleted then, unless TOPICBRIDGE_KEEP_ROCKETMQ is set).
The contract suite's `rocketmq` harness and tests/rocketmq/ share it. Without Java (or Maven,
before the jars are fetched) or without the gRPC stubs the tests that need it skip with the
reason; under CI=true they fail instead. A component that does not come up always fails.

`restart(cluster, component)` restarts one JVM on its old ports: `deploy/rocketmq.py` has no
public way to do that yet, so this reaches into `RocketMQCluster`'s internals (`_procs`,
`_launch`, `_wait_ready`, `_ensure_registered`).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from deploy.rocketmq import BrokerUnavailable, ClusterError, RocketMQCluster

_state: dict[str, object] = {}


def skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"RocketMQ test prerequisite missing under CI=true: {reason}")
    pytest.skip(reason)


def shared_cluster() -> RocketMQCluster:
    """The session's cluster, started on the first call; skips (or fails under CI) without Java."""
    if "cluster" in _state:
        return _state["cluster"]
    if "unavailable" in _state:
        skip_or_fail(_state["unavailable"])
    if "broken" in _state:
        pytest.fail(_state["broken"])
    if importlib.util.find_spec("rocketmq") is None:
        _state["unavailable"] = "pip install rocketmq-python-client (the RocketMQ gRPC stubs)"
        skip_or_fail(_state["unavailable"])
    workdir = Path(tempfile.mkdtemp(prefix="tb-rocketmq-"))
    cluster = RocketMQCluster(workdir)
    try:
        cluster.start()
    except BrokerUnavailable as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        _state["unavailable"] = f"RocketMQ cannot run here: {exc}"
        skip_or_fail(_state["unavailable"])
    except ClusterError as exc:
        _state["broken"] = f"the RocketMQ cluster did not start: {exc}"
        pytest.fail(_state["broken"])
    atexit.register(_stop, cluster, workdir)
    _state["cluster"] = cluster
    return cluster


def _stop(cluster: RocketMQCluster, workdir: Path) -> None:
    cluster.stop()
    if os.environ.get("TOPICBRIDGE_KEEP_ROCKETMQ"):   # keep logs and store for a post-mortem
        print(f"RocketMQ test cluster kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def restart(cluster: RocketMQCluster, *components: str, timeout: float = 120.0) -> None:
    """Restart `components` ("broker", "proxy") on their old ports; blocks until they serve.

    The broker gets a graceful TERM: it persists consumer offsets on the way down (killed, it
    would lose up to `flushConsumerOffsetInterval`, 5 s, of acknowledgements and redeliver
    them). The proxy holds no state of its own and is killed. Restart the proxy along with the
    broker: a broker stopping gracefully unregisters from the name server, and the proxy then
    caches "cluster not routable" for 20 s or more, during which it reports new groups as
    "group not found".
    """
    order = [c for c in ("namesrv", "broker", "proxy") if c in components]
    procs = {c: cluster._procs.pop(c) for c in order}
    for component, proc in procs.items():
        proc.kill() if component == "proxy" else proc.terminate()
    for proc in procs.values():
        proc.wait(timeout)
    deadline = time.monotonic() + timeout
    ports = {"namesrv": cluster.ports.namesrv, "broker": cluster.ports.broker, "proxy": cluster.ports.proxy_grpc}
    for component in order:
        logs = cluster.workdir / "logs"
        for suffix in (".out", ".log"):   # readiness is read from these: the old run's lines must go
            path = logs / f"{component}{suffix}"
            if path.exists():
                path.replace(path.with_name(path.name + ".prev"))
        cluster._launch(component)
        if component == "broker":
            cluster._wait_ready("broker", ports["broker"], deadline, registered=False)
            cluster._ensure_registered(deadline)
        else:
            cluster._wait_ready(component, ports[component], deadline)

"""The broker kinds: SIGKILL of the Kafka broker, of the RocketMQ broker and of the RocketMQ
proxy, with the gateway (in process, demo agents) on that backend. The broker comes back on the
same ports and store; tasks sent before, during and after must all end.

gateway-sigkill-adopt: a second gateway, a `topicbridge serve` process on the same broker, takes
`n` slow tasks and is SIGKILLed for good while the in-process gateway's worker runs them; the
in-process gateway must adopt them (its lease table says the other is dead) and show every one
COMPLETED through GetTask. recovery_s counts from the kill: the bound is lease_seconds +
adoption_interval (12 s by default), plus the reply partitions' hand-over on Kafka.

The restart reaches into deploy/'s broker objects (their process handle and launch step), as
tests/rocketmq/cluster.py does: their public start() picks new ports, which a gateway holding
the old address would never find."""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from .client import Caller, state
from .kinds import reach, send_all
from .procs import Proc, free_port
from .rigs import SLOW, InProc, clean
from .runner import judge
from .tally import Tally

ADOPT = "gateway-sigkill-adopt"
BROKER_KINDS = {"kafka-broker-sigkill": ("kafka",), "rocketmq-broker-sigkill": ("rocketmq",),
                "rocketmq-proxy-sigkill": ("rocketmq",), ADOPT: ("kafka", "rocketmq")}
ADOPT_WORK = 12.0           # seconds each task works: the kill lands while they all still run


def _kill_kafka(kafka) -> None:
    from deploy.kafka import ensure_jars, find_java
    port = int(kafka.bootstrap.rsplit(":", 1)[1])
    kafka._proc.kill()
    kafka._proc.wait()
    kafka._launch(find_java(), ensure_jars())
    kafka._wait_ready(port, time.monotonic() + 120)


def _kill_rocketmq(cluster, component: str) -> None:
    proc = cluster._procs.pop(component)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 120
    cluster._launch(component)
    if component == "broker":
        cluster._wait_ready("broker", cluster.ports.broker, deadline, registered=False)
        cluster._ensure_registered(deadline)
    else:
        cluster._wait_ready("proxy", cluster.ports.proxy_grpc, deadline)


async def _sigkill_the_other(rig: InProc, backend: str, address: str, tally: Tally, n: int) -> float:
    """Send `n` slow tasks through another gateway process, kill it once they all run; the kill's time."""
    rig.slow_delay = ADOPT_WORK
    port = free_port()
    flags = ["--bootstrap", address] if backend == "kafka" else \
        ["--endpoint", address.split("|")[0], "--namesrv", address.split("|")[1]]
    other = Proc([sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--backend", backend, *flags],
                 r"Uvicorn running on", name="doomed-gateway")
    await asyncio.to_thread(other.start)
    caller = Caller(f"http://127.0.0.1:{port}")
    try:
        await caller.until_ready()
        await send_all(SimpleNamespace(caller=caller), tally, n)
        for task_id in tally.accepted:      # every one taken by the worker: the kill lands mid-work
            await reach(rig, SLOW, task_id, "TASK_STATE_WORKING", "TASK_STATE_COMPLETED")
        await asyncio.to_thread(other.kill)
        tally.notes["running"] = sum([state(t) == "TASK_STATE_WORKING" for t in
                                      await asyncio.gather(*(rig.caller.get(SLOW, i) for i in tally.accepted))
                                      if isinstance(t, dict)])
        return time.monotonic()
    finally:
        await caller.aclose()
        await asyncio.to_thread(other.kill)


async def run_broker_kind(name: str, backend: str, n: int = 20, bound: float = 60.0) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix=f"faults-{name}-"))
    result: dict = {"kind": name, "backend": backend}
    tally = Tally("echo")
    ended = settled = None
    try:
        if backend == "kafka":
            from deploy.kafka import KafkaBroker
            broker = KafkaBroker(workdir / "kafka")
            address = await asyncio.to_thread(broker.start)
            kill = lambda: _kill_kafka(broker)          # noqa: E731
        else:
            from deploy.rocketmq import RocketMQCluster
            broker = RocketMQCluster(workdir / "rocketmq")
            await asyncio.to_thread(broker.start)
            address = f"{broker.endpoint}|{broker.namesrv_addr}"
            kill = lambda: _kill_rocketmq(broker, name.split("-")[1])   # noqa: E731
        try:
            async with InProc(backend, workdir, address=address) as rig:
                if name == ADOPT:
                    tally.capability = SLOW
                    ended = await _sigkill_the_other(rig, backend, address, tally, n)
                    tally.notes["running_at_kill"] = tally.notes.pop("running", 0)
                else:
                    sending = asyncio.create_task(send_all(rig, tally, n, concurrency=4))
                    while len(tally.accepted) < max(1, n // 2) and not sending.done():
                        await asyncio.sleep(0.05)   # sleep-ok: waiting for the sends to be under way
                    await asyncio.to_thread(kill)
                    await sending
                    ended = time.monotonic()
                    await send_all(rig, tally, max(1, n // 4))
                await tally.settle(rig.caller, bound)
                settled = time.monotonic()
                if name == ADOPT:       # taken over by this gateway's recovery, not ended by the dead one
                    tally.notes["adopted"] = rig.gateway.tasks.recovery.adopted
        finally:
            await asyncio.to_thread(broker.stop)
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        clean(workdir)
    summary = tally.summary()
    from .kinds import Kind
    result |= summary
    result["recovery_s"] = round(settled - ended, 3) if ended and settled and not summary["stuck"] else None
    result["ok"] = "error" not in result and judge(Kind(name, "inproc", (backend,), "echo", None), summary)
    return result

"""The broker kinds: SIGKILL of the Kafka broker, of the RocketMQ broker and of the RocketMQ
proxy, with the gateway (in process, demo agents) on that backend. The broker comes back on the
same ports and store; tasks sent before, during and after must all end.

The restart reaches into deploy/'s broker objects (their process handle and launch step), as
tests/rocketmq/cluster.py does: their public start() picks new ports, which a gateway holding
the old address would never find."""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from .kinds import send_all
from .rigs import InProc, clean
from .runner import judge
from .tally import Tally

BROKER_KINDS = {"kafka-broker-sigkill": ("kafka",), "rocketmq-broker-sigkill": ("rocketmq",),
                "rocketmq-proxy-sigkill": ("rocketmq",)}


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
                sending = asyncio.create_task(send_all(rig, tally, n, concurrency=4))
                while len(tally.accepted) < max(1, n // 2) and not sending.done():
                    await asyncio.sleep(0.05)   # sleep-ok: waiting for the sends to be under way
                await asyncio.to_thread(kill)
                await sending
                ended = time.monotonic()
                await send_all(rig, tally, max(1, n // 4))
                await tally.settle(rig.caller, bound)
                settled = time.monotonic()
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

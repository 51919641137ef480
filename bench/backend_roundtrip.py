"""Round trip of a task through a backend, the way the gateway uses it.

A requester publishes a task on a capability topic; a worker in the capability's group receives
it and replies on the task's lite topic; the requester's single poll loop (one client id, as in
a gateway instance) takes the ready reply channel and hands the reply to the waiting call.
Latency is measured per round trip (publish -> reply in hand, wall clock); throughput as round
trips per second with `concurrency` calls in flight.

    python -m bench.backend_roundtrip --backend lite-embedded|lite-remote|kafka|rocketmq
    python -m bench.backend_roundtrip --backend rocketmq --bootstrap "PROXY|NAMESRV" --concurrency 64

`--bootstrap` uses an already running broker (Kafka "host:port"; RocketMQ "proxy|namesrv", as
`python -m deploy.rocketmq start` prints them) instead of starting one, so A/B runs are cheap.
The requester subscribes each task's reply channel `fresh` (a new name, as the gateway's submit
does); `--subscribe plain` drops that hint, so the backend looks up the group's position as on
a re-attach (the A/B of the hint on one broker). `--broker-pids` names the running broker's
local processes (e.g. RocketMQ's proxy and broker JVMs, from `deploy.rocketmq status`) whose
CPU then counts as the backend's, per round trip; a broker the bench starts itself is counted
so without being named (its processes are this one's descendants).

Every run also measures the embedded lite engine (the in-process baseline) with the same
workload, and prints the ratio of the backend's figures to it. CPU per round trip (this process,
plus the engine process for lite-remote or the `--broker-pids`) is steadier than throughput on a loaded machine.
`--rounds N` alternates the two backends N times per concurrency instead of measuring the
embedded engine first and the backend afterwards, so the ratio survives a machine whose load
changes during the run (both open at once; the median round is reported, every round's ratio too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from adapters.base import Message, TopicSpec

from ._util import emit, progress

ROOT = Path(__file__).resolve().parents[1]


async def roundtrips(backend, *, concurrency: int, total: int, other_cpu=None, fresh: bool = True,
                     warmup: int | None = None) -> dict:
    """`other_cpu()`: CPU seconds used so far by the processes behind `backend` (None: unknown);
    `fresh`: the hint on each reply channel's subscribe (see the module docstring); `warmup`:
    round trips before measuring (default total // 10)."""
    run = os.urandom(3).hex()
    cap, parent = f"rt-cap-{run}", f"rt-reply-{run}"
    await backend.create_topic(TopicSpec(cap))
    await backend.create_topic(TopicSpec(parent, lite=True))
    requester = await backend.lite_consumer(parent, f"rt-gw-{run}")
    worker = await backend.group_consumer(cap, f"rt-workers-{run}")
    waiting: dict[str, asyncio.Future] = {}

    async def reply(d):
        await backend.publish(parent, Message(d.body), lite_topic=d.body.decode())
        await d.ack()

    async def serve():   # like the worker SDK: the tasks of one batch are handled concurrently
        while True:
            await asyncio.gather(*map(reply, await worker.receive(max_messages=64, wait=1.0)))

    async def relay():
        while True:
            batch = await requester.poll(max_messages=64, wait=1.0)
            for d in batch:
                fut = waiting.pop(d.lite_topic, None)
                if fut is not None and not fut.done():
                    fut.set_result(time.perf_counter())
            await asyncio.gather(*(d.ack() for d in batch))

    latencies: list[float] = []
    counter = iter(range(total))

    async def caller():
        for n in counter:
            name = f"t{n}-{run}"
            fut = asyncio.get_running_loop().create_future()
            waiting[name] = fut
            await requester.subscribe([name], fresh=fresh)
            start = time.perf_counter()
            await backend.publish(cap, Message(name.encode()))
            end = await asyncio.wait_for(fut, 60)
            latencies.append(end - start)
            await requester.unsubscribe([name])

    loops = [asyncio.ensure_future(serve()), asyncio.ensure_future(relay())]
    try:
        warm = total // 10 if warmup is None else warmup
        counter = iter(range(warm))
        await asyncio.gather(*(caller() for _ in range(min(concurrency, warm))))
        latencies.clear()
        counter = iter(range(warm, warm + total))
        began, cpu_began = time.perf_counter(), time.process_time()
        other_began = other_cpu() if other_cpu else None
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        cpu = time.process_time() - cpu_began
        other = other_cpu() - other_began if other_cpu else None
    finally:
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
        await requester.close()
        await worker.close()
    latencies.sort()
    out = {"concurrency": concurrency, "roundtrips": len(latencies),
           "p50_us": round(statistics.median(latencies) * 1e6, 1),
           "p99_us": round(latencies[int(len(latencies) * 0.99) - 1] * 1e6, 1),
           "roundtrips_per_s": round(len(latencies) / elapsed, 1),
           "cpu_us_per_roundtrip": round(cpu / len(latencies) * 1e6, 1)}
    if other is not None:
        out["engine_cpu_us_per_roundtrip"] = round(other / len(latencies) * 1e6, 1)
        out["total_cpu_us_per_roundtrip"] = round((cpu + other) / len(latencies) * 1e6, 1)
    return out


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) used by process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants_cpu() -> float:
    """CPU seconds used so far by this process's live descendants: the broker it started."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    total, todo = 0.0, list(children.get(os.getpid(), ()))
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError):   # it may have exited meanwhile
            total += process_cpu(pid)
        todo.extend(children.get(pid, ()))
    return total


@contextlib.asynccontextmanager
async def open_backend(name: str, workdir: Path, address: str | None = None, pids: list[int] = ()):
    """Start (and afterwards stop) the backend `name` and whatever process it needs; a broker
    backend with an `address` uses that running broker, whose processes `pids` are."""
    if name == "lite-embedded":
        from adapters.factory import engine_config
        from adapters.lite import EmbeddedLiteBackend
        backend = EmbeddedLiteBackend(engine_config({"data_dir": str(workdir / "embedded"), "fsync": "batch"}))
        await backend.start()
        try:
            yield backend, (lambda: 0.0)   # the engine runs in this process
        finally:
            await backend.close()
    elif name == "lite-remote":
        sys.path.insert(0, str(ROOT))
        from adapters.lite_remote import RemoteLiteBackend
        from tests.lite_engine.engine_process import EngineProcess
        process = EngineProcess(workdir / "remote", fsync="batch")
        target = process.start()
        backend = RemoteLiteBackend(target)
        await backend.start()
        try:
            yield backend, functools.partial(process_cpu, process.process.pid)
        finally:
            await backend.close()
            process.stop()
    elif address is not None:
        from bench import brokers
        backend = brokers.new_backend(name, address)
        await backend.start()
        try:
            yield backend, (lambda: sum(map(process_cpu, pids))) if pids else None
        finally:
            await backend.close()
    else:
        from bench import brokers
        async with brokers.backend(name, workdir) as backend:
            yield backend, descendants_cpu


async def measure(name: str, workdir: Path, total: int, concurrencies: list[int], *,
                  address: str | None = None, pids: list[int] = (), fresh: bool = True,
                  warmup: int | None = None) -> dict:
    progress(f"{name}: starting")
    async with open_backend(name, workdir, address, pids) as (backend, other_cpu):
        out = {}
        for c in concurrencies:
            progress(f"{name}: concurrency {c}")
            out[f"c{c}"] = await roundtrips(backend, concurrency=c, total=total, other_cpu=other_cpu, fresh=fresh,
                                            warmup=warmup)
        return out


async def interleaved(name: str, workdir: Path, args) -> tuple[dict, dict, dict]:
    """`--rounds N`: both backends open at once, and per concurrency N rounds that alternate
    embedded, backend, embedded, ... so a change in the machine's load hits both alike (on a
    shared 2-core machine the embedded baseline alone swung 196-942 round trips/s at c64 between
    sequential runs). Returns per concurrency the round with the median ratio of round trips/s
    for each side, every round's ratio sorted, and (key `c<N>_in_order`) each round's ratio and
    CPU per round trip in the order run."""
    fresh = args.subscribe == "fresh"
    baseline, figures, rounds = {}, {}, {}
    async with open_backend("lite-embedded", workdir) as (embedded, embedded_cpu), \
            open_backend(name, workdir, args.bootstrap, args.broker_pids) as (backend, backend_cpu):
        for c in args.concurrency:
            pairs = []
            for n in range(args.rounds):
                progress(f"concurrency {c}: round {n + 1} of {args.rounds}")
                base = await roundtrips(embedded, concurrency=c, total=args.roundtrips, other_cpu=embedded_cpu,
                                        fresh=fresh, warmup=args.warmup)
                other = await roundtrips(backend, concurrency=c, total=args.roundtrips, other_cpu=backend_cpu,
                                         fresh=fresh, warmup=args.warmup)
                pairs.append((other["roundtrips_per_s"] / base["roundtrips_per_s"], base, other))
            in_order = list(pairs)   # round by round: a young broker's JIT shows in the first ones
            pairs.sort(key=lambda pair: pair[0])
            _, baseline[f"c{c}"], figures[f"c{c}"] = pairs[len(pairs) // 2]
            rounds[f"c{c}"] = [round(ratio, 3) for ratio, _, _ in pairs]
            rounds[f"c{c}_in_order"] = [
                {"ratio": round(ratio, 3), "baseline_cpu_us": base["total_cpu_us_per_roundtrip"],
                 "backend_total_cpu_us": other.get("total_cpu_us_per_roundtrip")} for ratio, base, other in in_order]
    return baseline, figures, rounds


async def main(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="tb-rt-") as tmp:
        workdir = Path(tmp)
        fresh = args.subscribe == "fresh"
        if args.rounds > 1:
            baseline, figures, rounds = await interleaved(args.backend, workdir, args)
            result = {"bench": "backend_roundtrip", "backend": args.backend, "fsync": "batch",
                      "subscribe": args.subscribe, "broker": "given" if args.bootstrap else "started",
                      "warmup": args.roundtrips // 10 if args.warmup is None else args.warmup,
                      "rounds": args.rounds, "baseline_backend": "lite-embedded", "baseline": baseline,
                      "figures": figures, "round_ratios_roundtrips_per_s": rounds,
                      "ratio_vs_baseline": {key: _ratios(figures[key], baseline[key]) for key in figures}}
            if not args.bootstrap:
                from bench import brokers
                result["broker_jvm"] = brokers.broker_jvm(args.backend)
            result["loadavg"] = os.getloadavg()
            return result
        baseline = await measure("lite-embedded", workdir, args.roundtrips, args.concurrency, fresh=fresh,
                                 warmup=args.warmup)
        result = {"bench": "backend_roundtrip", "backend": args.backend, "fsync": "batch",
                  "subscribe": args.subscribe, "broker": "given" if args.bootstrap else "started",
                  "warmup": args.roundtrips // 10 if args.warmup is None else args.warmup,
                  "baseline_backend": "lite-embedded", "baseline": baseline}
        if args.backend != "lite-embedded":
            figures = await measure(args.backend, workdir, args.roundtrips, args.concurrency,
                                    address=args.bootstrap, pids=args.broker_pids, fresh=fresh, warmup=args.warmup)
            result["figures"] = figures
            if not args.bootstrap:   # RocketMQ: TB_BENCH_ROCKETMQ_JVM=fast|perf picks it (bench/brokers.py)
                from bench import brokers
                result["broker_jvm"] = brokers.broker_jvm(args.backend)
            result["ratio_vs_baseline"] = {key: _ratios(figures[key], baseline[key]) for key in figures}
        else:
            result["figures"] = baseline
        result["loadavg"] = os.getloadavg()
        return result


def _ratios(figures: dict, baseline: dict) -> dict:
    out = {"p50": round(figures["p50_us"] / baseline["p50_us"], 2),
           "roundtrips_per_s": round(figures["roundtrips_per_s"] / baseline["roundtrips_per_s"], 3)}
    if "total_cpu_us_per_roundtrip" in figures:
        out["total_cpu_per_roundtrip"] = round(figures["total_cpu_us_per_roundtrip"]
                                               / baseline["total_cpu_us_per_roundtrip"], 2)
    return out


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="lite-remote",
                        choices=["lite-embedded", "lite-remote", "kafka", "rocketmq"])
    parser.add_argument("--roundtrips", type=int, default=2000, help="measured round trips per concurrency")
    parser.add_argument("--warmup", type=int, help="round trips before measuring, per concurrency and backend "
                                                   "(default roundtrips/10; a broker the bench just started is "
                                                   "still compiling its hot paths, so give it more)")
    parser.add_argument("--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 64])
    parser.add_argument("--bootstrap", help='a running broker to use instead of starting one: Kafka "host:port", '
                                            'RocketMQ "proxy|namesrv"')
    parser.add_argument("--subscribe", choices=["fresh", "plain"], default="fresh",
                        help="the hint on each reply channel's subscribe (default fresh, as the gateway)")
    parser.add_argument("--broker-pids", type=lambda s: [int(x) for x in s.split(",")], default=[],
                        help="with --bootstrap: the broker's local process ids, to count their CPU")
    parser.add_argument("--rounds", type=int, default=1,
                        help="N > 1: per concurrency, N rounds alternating the embedded engine and the backend "
                             "(both open at once); figures are the round with the median ratio, and every "
                             "round's ratio is listed (a loaded machine's drift hits both alike)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.rounds > 1 and args.backend == "lite-embedded":
        parser.error("--rounds compares a backend with the embedded engine; pick another --backend")
    if args.broker_pids and not args.bootstrap:
        parser.error("--broker-pids needs --bootstrap")
    if args.bootstrap and args.backend not in ("kafka", "rocketmq"):
        parser.error(f"--bootstrap is for a broker backend (kafka, rocketmq), not {args.backend}")
    return args


if __name__ == "__main__":
    emit(asyncio.run(main(parse())))

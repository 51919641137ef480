"""A2A JSON-RPC `SendMessage` end to end: through the gateway to a native worker and to an a2a-sdk
agent registered by URL, against calling that agent directly, with a bare Starlette route as the
ceiling, all in the same run.

    python -m bench.gateway_e2e --backend lite [--duration 5] [--concurrency 1,64]

Server processes on 127.0.0.1, each uvicorn (uvloop + httptools, one worker; the gateways with
`topicbridge serve`'s protocol and options); one starts only when a measured target needs it
(with --targets, only those):

  bare      a bare Starlette JSON route: the HTTP ceiling
  proxy     a Starlette route that posts the request's body to the agent on the gateway's own
            HTTP/1.1 client (gateway/http/http1.py) and answers with the agent's answer, served
            with the gateway's protocol and options: the floor of any Python hop in front of the agent
  agent     an a2a-sdk echo agent (`DefaultRequestHandler`, in-memory task store), card at
            /.well-known/agent-card.json, JSON-RPC at /
  gateway   topicbridge on the embedded lite engine (commit log in a temporary directory, fsync
            "batch": the default; `--backend lite-memory` keeps it in memory), with a native echo
            worker `echo` in its process and the agent registered by its URL as `remote-echo`
  gateway-sdk  the same with `gateway.a2a_lean_dispatch = false`: SendMessage through the
            a2a-sdk's JSON-RPC dispatcher instead of the gateway's lean one (gateway/a2a_lean.py)
  gateway-nometrics  the gateway with `observability.metrics = false`: the baseline of what
            recording metrics costs (the gateway records them by default)
  gateway-traced  the gateway with `observability.tracing = true`, spans exported over OTLP/HTTP
            (batched) to the bare server, which answers 200: what tracing costs per task
  gateway-bridge-sdk  the gateway with `gateway.bridge_lean_call = false`: its bridge calls the
            agent through the a2a-sdk client also for blocking calls (started only for bridged_sdk)
  gateway-bridge-httpx  the gateway with `gateway.bridge_lean_http = "httpx"`: its lean blocking
            call posted on the httpx client instead of the gateway's own (started only for bridged_httpx)
  gateway-memory  the gateway on the in-memory engine (`lite-memory`: no commit log, no fsync), started
            only for bridged_memory / native_memory: what of the overhead the durable writes are

Targets, each driven by `wrk -t1` with a Lua body at every concurrency (connections):

  native    POST /agents/echo/         gateway -> lite engine -> worker -> reply events -> relay
  native_sdk  the same on gateway-sdk: what the lean dispatcher saves
  native_nometrics, native_traced  the same on gateway-nometrics and gateway-traced
  bridged   POST /agents/remote-echo/  gateway -> engine -> bridge -> agent over HTTP -> back
  bridged_sdk  the same on gateway-bridge-sdk: what the bridge's lean call saves
  bridged_httpx  the same on gateway-bridge-httpx: what the gateway's own HTTP/1.1 client saves
  bridged_memory, native_memory  the same on gateway-memory (only when --targets names them)
  direct    POST / on the agent        the agent alone
  proxy     POST / on the proxy        proxy -> agent over HTTP -> back: no task, no engine
            (only when --targets names it)
  direct_stream  the agent alone, SendStreamingMessage: the call a bridge makes to an agent that
            streams (SSE costs the a2a-sdk agent more than one JSON answer)
  bare      POST /bare                 the ceiling

`overhead_ms_p50` is bridged minus direct at p50 and concurrency 1: what the gateway adds in
front of an agent. `proxy_overhead_ms_p50` is proxy minus direct at p50 and concurrency 1: what
the plainest Python hop (an ASGI route and one kept-alive HTTP/1.1 call on uvloop) adds, the bound
no Python gateway's overhead beats; `overhead_above_proxy_ms_p50` (bridged minus proxy) is what the
gateway adds beyond that hop (the task: submit, engine, worker, reply events, relay). The proxy is
measured only when --targets names it (as bridged_memory and native_memory): it would add a process
and a point per concurrency to `make bench` and to bench.mcp_e2e, which measures the default
targets too. With bridged_memory measured too, `overhead_memory_ms_p50` is the same
without durable writes and `durable_ms_p50` (bridged minus bridged_memory) is what the commit
log's waits on the way (submit, reply events, index) add. `overhead_vs_stream_ms_p50` is bridged minus direct_stream: the same, for
the same work on the agent (the bridge streams to a streaming agent only for callers that stream
or return at once; a blocking SendMessage reaches it as one SendMessage). Every target answers one
checked request before and after its load. `agent_cpu_us_per_task` is the agent's CPU per task
under direct and bridged targets: the gateway's CPU plus it is what one bridged task costs.
`fsyncs_per_task` is the gateway's commit-log fdatasyncs (its /metrics) per task: the group
commits a task costs, the same on a quiet or a loaded machine.

    python -m bench.gateway_e2e --backend lite --timeline 300 --targets direct,proxy,bridged,bridged_memory

`--timeline TASKS` replaces wrk: per target, TASKS calls one after the other (after 50 unmeasured),
each stamped with perf_counter (one clock for every process) and the process's CPU time by the
client, by every server's ASGI app as a request comes and its answer goes, and in the gateway at
its stages (submit and its durable commit, engine publishes, the commit log's group commits and
fdatasyncs, the worker's delivery, the bridge's call and the agent's answer, the reply events,
the relay's fold and index, the blocking call's end: `_install_timeline`, installed only in
children started with TB_BENCH_TIMELINE=1). It prints, per stamp, the median offset from the
client's send, the median wall time from the stamp before and the median CPU its process spent
since its own stamp before: where a call's latency goes, stage by stage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from ._agents import echo, sdk_echo_app
from ._http import Child, bare_app, bound_socket, ready, start_uvicorn, wrk
from ._util import emit, environment, median, progress, sizes

MODULE = "bench.gateway_e2e"
REMOTE = "remote-echo"
BACKENDS = ("lite", "lite-memory")
REQUEST = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage",
           "params": {"message": {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hello"}]}}}
HEADERS = {"Content-Type": "application/json", "A2A-Version": "1.0"}
STREAM_REQUEST = {**REQUEST, "method": "SendStreamingMessage"}
STREAM_HEADERS = {**HEADERS, "Accept": "text/event-stream"}
ANSWER = "echo: hello"


# ---------------------------------------------------------------- timeline (--timeline)

TIMELINE_ENV = "TB_BENCH_TIMELINE"      # set in a server child: it stamps its stages (perf_counter)
TIMELINE_PATH = "/__timeline"           # GET: the stamps so far, as JSON, and forget them
_STAMPS: list[tuple[str, float, float]] = []


def _mark(label: str) -> None:
    # perf_counter is CLOCK_MONOTONIC: comparable across processes; process_time is this
    # process's CPU (every thread), which a loaded machine does not inflate as it does the wall clock
    _STAMPS.append((label, time.perf_counter(), time.process_time()))


def _timed(app, prefix: str):
    """`app` with its requests stamped ("<prefix>:in" as a request comes, "<prefix>:out" as its
    answer's last bytes are handed to the server) and TIMELINE_PATH served, when TIMELINE_ENV is set; else `app`."""
    if os.environ.get(TIMELINE_ENV) != "1":
        return app
    inbound, outbound = f"{prefix}:in", f"{prefix}:out"

    async def timed(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        if scope["path"] == TIMELINE_PATH:
            body = json.dumps(_STAMPS).encode()
            _STAMPS.clear()
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        _mark(inbound)

        def stamped(message):
            if message["type"] == "http.response.body" and not message.get("more_body"):
                _mark(outbound)         # before: the client may have it before send returns
            return send(message)
        return await app(scope, receive, stamped)
    return timed


def _around(owner, name: str, label, done: str | None = None) -> None:
    """Stamps `label` (or `label(args)`) as `owner.name` is called and `done` as it returns."""
    import inspect
    original = getattr(owner, name)
    name_of = label if callable(label) else (lambda args: label)
    if inspect.iscoroutinefunction(original):
        async def wrapped(*args, **kwargs):
            _mark(name_of(args))
            try:
                return await original(*args, **kwargs)
            finally:
                if done:
                    _mark(done)
    else:
        def wrapped(*args, **kwargs):
            _mark(name_of(args))
            try:
                return original(*args, **kwargs)
            finally:
                if done:
                    _mark(done)
    setattr(owner, name, wrapped)


def _install_timeline() -> None:
    """Stamps at a task's stages in a gateway process: submit and its durable commit, each engine
    publish, the commit log's group commits (start on the loop, fdatasync on the I/O thread, done
    back on the loop), the worker's delivery, the bridge's handler, its call, the agent's answer
    (its bytes as they come) and the answer handed to the bridge's relay, the reply events (emit: the final one returns once durable), the relay's fold and the blocking call's end."""
    from adapters.lite import EmbeddedLiteBackend
    from gateway.a2a.handler import GatewayRequestHandler
    from gateway.http.http1 import OriginClient, _Connection
    from gateway.tasks import channels
    from gateway.tasks.relay import Relay as TaskRelay
    from gateway.tasks.service import TaskService
    from gateway.workers.agent_relay import Relay as BridgeRelay
    from gateway.workers.bridge import Bridge
    from gateway.workers.task_context import TaskContext
    from gateway.workers.worker import Worker
    from lite_engine.commitlog import CommitLog

    _around(TaskService, "submit", "submit", "submit:done")
    _around(EmbeddedLiteBackend, "publish",
            lambda args: "publish:reply" if args[1] == channels.REPLY_TOPIC else "publish:task",
            "publish:done")
    _around(CommitLog, "_start_batch", "commit:start")
    _around(CommitLog, "_write_and_sync", "io:write+fsync", "io:fsynced")
    _around(CommitLog, "_batch_done", "commit:done")
    _around(Worker, "_take", "worker:delivery")
    _around(Bridge, "_forward", "bridge:forward")
    _around(OriginClient, "post", "bridge:call", "bridge:answer")
    _around(BridgeRelay, "push", "bridge:push")
    _around(_Connection, "data_received", "bridge:bytes")
    _around(TaskContext, "_emit", "emit", "emit:done")
    _around(TaskRelay, "_relay_batch", "relay:batch")
    _around(TaskRelay, "_index", "relay:index", "relay:indexed")
    _around(GatewayRequestHandler, "_until_settled", "handler:wait", "handler:settled")


# ---------------------------------------------------------------- servers (child processes)

BRIDGE_OPTIONS = {"gateway-bridge-sdk": {"bridge_lean_call": False},
                  "gateway-bridge-httpx": {"bridge_lean_http": "httpx"}}

def gateway_settings(backend: str, data_dir: str | None, lean: bool = True, observability: dict | None = None,
                     gateway: dict | None = None) -> dict:
    lite = {"data_dir": data_dir, "fsync": "batch"} if backend == "lite" else {"data_dir": None}
    return {"backend": "lite", "lite": lite, "gateway": {"host": "127.0.0.1", "a2a_lean_dispatch": lean, **(gateway or {})},
            "observability": observability or {}}


def observability(kind: str, otlp_url: str | None) -> dict:
    if kind == "gateway-nometrics":
        return {"metrics": False}
    if kind == "gateway-traced":
        return {"tracing": True, "otlp_endpoint": otlp_url}
    return {}


async def _serve_gateway(sock, backend: str, data_dir: str | None, agent_url: str, lean: bool = True,
                         options: dict | None = None, gateway_options: dict | None = None) -> asyncio.Task:
    from gateway.app import build_app
    from gateway.http.serving import uvicorn_options
    from gateway.process import tune_gc
    from gateway.workers.worker import Worker

    tune_gc()                   # as `topicbridge serve` does
    if os.environ.get(TIMELINE_ENV) == "1":
        _install_timeline()
    settings = gateway_settings(backend, data_dir, lean, options, gateway_options)
    app = build_app(settings)
    serving = await start_uvicorn(_timed(app, "gateway"), sock, uvicorn_options(settings))    # as `topicbridge serve` serves it
    gateway = app.state.gateway
    worker = Worker(gateway.backend, "echo", echo, concurrency=256,
                    card={"name": "Echo", "description": "Echoes the message."})
    await gateway.add_part(worker)     # started now, closed by the gateway's lifespan before its backend
    await gateway.bridges.register(agent_url, name=REMOTE)
    async with asyncio.timeout(10):
        while REMOTE not in gateway.bridges.running:
            await gateway.bridges.sync()
            await asyncio.sleep(0.05)   # sleep-ok: polling the bridge set, bounded
    return serving


def proxy_app(agent_url: str):
    """The proxy: POST / goes to the agent on the gateway's HTTP/1.1 client (one kept-alive
    connection per call in flight, as a bridge's lean call posts), its answer comes back as is."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    from gateway.http.http1 import OriginClient
    from gateway.http.outbound import AddressPolicy
    from gateway.workers import lean_call

    origin = OriginClient(AddressPolicy(), agent_url, connect_timeout=5.0, read_timeout=300.0)

    async def forward(request):
        answer = await origin.post(await request.body(), lean_call.HEADERS)
        return Response(answer, media_type="application/json")

    return Starlette(routes=[Route("/", forward, methods=["POST"])])


async def _serve(kind: str, args) -> None:
    sock = bound_socket()
    port = sock.getsockname()[1]
    if kind.startswith("gateway"):
        serving = await _serve_gateway(sock, args.backend, args.data_dir, args.agent_url, kind != "gateway-sdk",
                                       observability(kind, args.otlp_url),
                                       BRIDGE_OPTIONS.get(kind))
    elif kind == "proxy":       # served as the gateway serves (its protocol and uvicorn options)
        from gateway.http.serving import uvicorn_options
        serving = await start_uvicorn(_timed(proxy_app(args.agent_url), "proxy"), sock,
                                      uvicorn_options(gateway_settings(args.backend, None)))
    else:
        app = bare_app() if kind == "bare" else _timed(sdk_echo_app(f"http://127.0.0.1:{port}"), "agent")
        serving = await start_uvicorn(app, sock)
    ready(port=port)
    await serving


# ---------------------------------------------------------------- driver

# The process serving each target; a process starts only when a measured target needs it.
PROCESS_OF = {"native": "gateway", "bridged": "gateway", "native_sdk": "gateway-sdk",
              "native_nometrics": "gateway-nometrics", "native_traced": "gateway-traced",
              "bridged_sdk": "gateway-bridge-sdk", "bridged_httpx": "gateway-bridge-httpx",
              "bridged_memory": "gateway-memory", "native_memory": "gateway-memory",
              "direct": "agent", "direct_stream": "agent", "proxy": "proxy", "bare": "bare"}
OPT_IN = {"bridged_memory", "native_memory", "proxy"}     # measured only when --targets names them


def plan(only: list[str] | None) -> tuple[list[str], set[str]]:
    """The targets to measure and the processes they need: a gateway bridges to the agent, and
    the bare route, the ceiling, also takes the traced gateway's OTLP exports."""
    wanted = [t for t in PROCESS_OF if (t in only if only else t not in OPT_IN)]
    kinds = {PROCESS_OF[t] for t in wanted} | {"bare"}
    if any(kind.startswith("gateway") or kind == "proxy" for kind in kinds):
        kinds.add("agent")
    return wanted, kinds


class Servers:
    """The server processes the targets need; `targets` maps each target to its URL, `pid_of` to
    the process whose CPU per task is measured, `agent_pid_of` to the agent behind it."""

    def __init__(self, backend: str, data_dir: str | None, only: list[str] | None = None) -> None:
        self.children: list[Child] = []
        wanted, kinds = plan(only)
        try:
            self.bare = self._start("bare")
            self.agent = self._start("agent") if "agent" in kinds else None
            by_kind = {"bare": self.bare, "agent": self.agent}
            for kind in sorted(k for k in kinds if k.startswith("gateway")):
                by_kind[kind] = self._gateway(kind, backend, data_dir)
            if "proxy" in kinds:
                by_kind["proxy"] = self._start("proxy", "--agent-url", self.agent.base_url + "/")
        except BaseException:
            self.stop()
            raise
        self.gateway = by_kind.get("gateway")           # mcp_e2e serves its tools from this one
        self.targets = {t: f"{by_kind[PROCESS_OF[t]].base_url}{_path(t)}" for t in wanted}
        self.pid_of = {t: by_kind[PROCESS_OF[t]].process.pid for t in wanted
                       if PROCESS_OF[t].startswith("gateway") or t == "proxy"}
        self.agent_pid_of = {t: self.agent.process.pid for t in wanted if t.startswith(("bridged", "direct", "proxy"))}
        self.by_kind = by_kind

    def _gateway(self, kind: str, backend: str, data_dir: str | None) -> Child:
        if kind == "gateway-memory":
            return self._start(kind, "--backend", "lite-memory", "--agent-url", self.agent.base_url + "/")
        extra = ["--otlp-url", self.bare.base_url + "/bare"] if kind == "gateway-traced" else []
        suffix = kind.removeprefix("gateway")           # each gateway its own data dir
        return self._start(kind, "--backend", backend, "--agent-url", self.agent.base_url + "/", *extra,
                           *(["--data-dir", data_dir + suffix] if data_dir else []))

    def _start(self, *args: str) -> Child:
        child = Child(MODULE, "--serve", *args)
        self.children.append(child)
        return child

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


def _path(target: str) -> str:
    if target in ("direct", "direct_stream", "proxy"):
        return "/"
    if target == "bare":
        return "/bare"
    return f"/agents/{REMOTE if target.startswith('bridged') else 'echo'}/"


def check(target: str, url: str) -> None:
    """wrk counts HTTP errors only: make sure a call really completes with the echo."""
    import httpx
    if target == "direct_stream":
        events = [json.loads(line[5:]) for line in httpx.post(url, json=STREAM_REQUEST, headers=STREAM_HEADERS,
                                                              timeout=10).text.splitlines() if line.startswith("data:")]
        states = [e.get("result", {}).get("statusUpdate", {}).get("status", {}).get("state") for e in events]
        if "TASK_STATE_COMPLETED" not in states:
            raise RuntimeError(f"{target}: unexpected stream {json.dumps(events)[:500]}")
        return
    answer = httpx.post(url, json=REQUEST, headers=HEADERS, timeout=10).json()
    if target == "bare":
        return
    task = answer.get("result", {}).get("task", {})
    texts = [p.get("text") for a in task.get("artifacts", []) for p in a.get("parts", [])]
    if task.get("status", {}).get("state") != "TASK_STATE_COMPLETED" or ANSWER not in texts:
        raise RuntimeError(f"{target}: unexpected answer {json.dumps(answer)[:500]}")


def _request(target: str) -> tuple[dict, dict]:
    return (STREAM_REQUEST, STREAM_HEADERS) if target == "direct_stream" else (REQUEST, HEADERS)


WARMUP_ORDERS = ("point", "upfront")


def measure_a2a(servers: Servers, concurrency: list[int], seconds: float, warmup: float = 1.0,
                only: list[str] | None = None, rounds: int = 1, order: str = "point") -> dict:
    """Every target (or those in `only`) at every concurrency: {target: {"c1": {tasks_per_s, p50_ms,
    cpu_us_per_task, ...}}}. With rounds > 1 the targets take turns, each round in the other
    order, and each point is the round with the median rate (other work on the machine drifts).
    Order "point" warms every target once at c1 first (a process's first seconds of calls run
    slower, and without it only the first target measured would pay that), then each point right
    before it at its own concurrency, so no point starts
    while its gateway still works off the calls an earlier, heavier point left in flight (wrk
    closes its connections with calls running, and the gateway cancels each of those tasks);
    "upfront" warms every target once at the highest concurrency first."""
    if order not in WARMUP_ORDERS:
        raise ValueError(f"warm-up order must be one of {WARMUP_ORDERS}, got {order!r}")
    targets = [(t, url) for t, url in servers.targets.items() if not only or t in only]
    runs: dict = {t: {f"c{c}": [] for c in concurrency} for t, _ in targets}
    for target, url in targets:
        check(target, url)
        if warmup > 0 and order == "upfront":
            wrk(url, *_request(target), max(concurrency), warmup)
        elif warmup > 0:    # every process once before any point: the first target measured is
            wrk(url, *_request(target), 1, warmup)      # otherwise the only one in a young process
    for n in range(rounds):
        for target, url in targets if n % 2 == 0 else reversed(targets):
            for c in concurrency:
                if warmup > 0 and order == "point":
                    wrk(url, *_request(target), c, warmup)
                progress(f"a2a {target}: {c} connection(s), {seconds:g} s (round {n + 1}/{rounds})")
                pid, agent = servers.pid_of.get(target), servers.agent_pid_of.get(target)
                cpu = cpu_seconds(pid) if pid else None
                agent_cpu = cpu_seconds(agent) if agent else None
                fsyncs = fsync_count(url) if pid else None
                figures = wrk(url, *_request(target), c, seconds)
                if fsyncs is not None and figures["requests"] and (after := fsync_count(url)) is not None:
                    figures["fsyncs_per_task"] = round((after - fsyncs) / figures["requests"], 2)
                if pid and figures["requests"]:
                    figures["cpu_us_per_task"] = round((cpu_seconds(pid) - cpu) * 1e6 / figures["requests"], 1)
                if agent and figures["requests"]:
                    figures["agent_cpu_us_per_task"] = round((cpu_seconds(agent) - agent_cpu) * 1e6
                                                             / figures["requests"], 1)
                runs[target][f"c{c}"].append({"tasks_per_s": figures.pop("per_s"), **figures})
    for target, url in targets:
        check(target, url)
    return {t: {c: sorted(points, key=lambda p: p["tasks_per_s"])[len(points) // 2] for c, points in by_c.items()}
            for t, by_c in runs.items()}


def timeline(servers: Servers, tasks: int, warmup: int = 50) -> dict:
    """Per target, `tasks` calls one after the other on one kept-alive connection, each stamped by
    the client ("client:send", "client:recv") and by the servers on its way (_timed and
    _install_timeline, perf_counter: one clock for every process): see `stages`."""
    import http.client
    body = json.dumps(REQUEST).encode()
    out = {}
    for target, url in servers.targets.items():
        if target in ("bare", "direct_stream"):
            continue
        origin = urllib.parse.urlsplit(url)
        processes = [child for child in servers.children if child is not servers.bare]
        connection = http.client.HTTPConnection(origin.hostname, origin.port, timeout=10)
        client: list[tuple[str, float, float, str]] = []
        for n in range(warmup + tasks):
            if n == warmup:
                for child in processes:
                    _stamps(child)           # forget the warm-up's
                client.clear()
            client.append(("client:send", time.perf_counter(), 0.0, "client"))
            connection.request("POST", origin.path, body, HEADERS)
            answer = connection.getresponse().read()
            client.append(("client:recv", time.perf_counter(), 0.0, "client"))
        connection.close()
        if b"TASK_STATE_COMPLETED" not in answer:
            raise RuntimeError(f"{target}: unexpected answer {answer[:300]!r}")
        stamps = sorted(client + [s for child in processes for s in _stamps(child)], key=lambda s: s[1])
        out[target] = stages(stamps)
        progress(f"timeline {target}: {out[target]['calls']} calls, p50 {out[target]['p50_us']} us")
    return out


def _stamps(child: Child) -> list[tuple[str, float, float, str]]:
    with urllib.request.urlopen(child.base_url + TIMELINE_PATH, timeout=10) as answer:
        return [(label, at, cpu, str(child.process.pid)) for label, at, cpu in json.loads(answer.read())]


def stages(stamps: list[tuple[str, float, float, str]]) -> dict:
    """The calls in a time-ordered list of stamps (label, perf_counter, process CPU, process),
    each call from a "client:send" to the next: per stamp that came in at least half the calls
    (one that comes more than once in a call is numbered: #2, ...), in the order of their median
    offsets from the send, `at_us` that median, `step_us` the median wall time from the stamp
    before it in its call, and `cpu_us` the median CPU its process spent since that process's
    stamp before it in its call (None for a process's first stamp). Under load the wall times
    stretch (every process waits for a core); the CPU times much less."""
    calls: list[dict[str, tuple[float, float, str]]] = []
    for label, at, cpu, process in stamps:
        if label == "client:send":
            calls.append({})
        if not calls:
            continue
        call, name, n = calls[-1], label, 1
        while name in call:
            n += 1
            name = f"{label}#{n}"
        call[name] = (at, cpu, process)
    calls = [c for c in calls if "client:recv" in c]
    offsets: dict[str, list[float]] = {}
    steps: dict[str, list[float]] = {}
    cpus: dict[str, list[float]] = {}
    for call in calls:
        start, before, last_of = call["client:send"][0], None, {}
        for name, (at, cpu, process) in call.items():     # in time order
            offsets.setdefault(name, []).append((at - start) * 1e6)
            if before is not None:
                steps.setdefault(name, []).append((at - before) * 1e6)
            if process in last_of and process != "client":
                cpus.setdefault(name, []).append((cpu - last_of[process]) * 1e6)
            before, last_of[process] = at, cpu
    common = [n for n in offsets if len(offsets[n]) >= len(calls) / 2]
    rows = [{"stamp": name, "calls": len(offsets[name]), "at_us": round(median(offsets[name]), 1),
             "step_us": round(median(steps[name]), 1) if name in steps else None,
             "cpu_us": round(median(cpus[name]), 1) if name in cpus else None}
            for name in sorted(common, key=lambda n: median(offsets[n]))]
    latency = [(c["client:recv"][0] - c["client:send"][0]) * 1e6 for c in calls]
    return {"calls": len(calls), "p50_us": round(median(latency), 1), "stages": rows}


def fsync_count(url: str) -> float | None:
    """The commit-log fdatasyncs the gateway serving `url` has made so far (its /metrics), None
    if it has none: per task, what its durable waits cost whatever the machine's load (0 in memory)."""
    origin = urllib.parse.urlsplit(url)
    try:
        with urllib.request.urlopen(f"{origin.scheme}://{origin.netloc}/metrics", timeout=10) as answer:
            text = answer.read().decode()
    except urllib.error.HTTPError:      # observability.metrics = false: no /metrics
        return None
    for line in text.splitlines():
        if line.startswith("topicbridge_engine_fsync_seconds_count"):
            return float(line.rsplit(" ", 1)[1])
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(results: dict, concurrency: list[int]) -> dict:
    """The headline figures; with --targets, those whose targets were measured."""
    one, top = f"c{min(concurrency)}", f"c{max(concurrency)}"
    rate = lambda target: results[target][top]["tasks_per_s"]
    p50 = lambda target, c: results[target][c]["p50_ms"]
    cpu = lambda target: results[target][top]["cpu_us_per_task"]
    figures = {
        "overhead_ms_p50": lambda: round(p50("bridged", one) - p50("direct", one), 3),
        # the floor: the plainest Python hop in front of the same agent, and the gateway above it
        "proxy_overhead_ms_p50": lambda: round(p50("proxy", one) - p50("direct", one), 3),
        "overhead_above_proxy_ms_p50": lambda: round(p50("bridged", one) - p50("proxy", one), 3),
        "overhead_vs_stream_ms_p50": lambda: round(p50("bridged", one) - p50("direct_stream", one), 3),
        f"overhead_ms_p50_{top}": lambda: round(p50("bridged", top) - p50("direct", top), 3),
        # the overhead without durable writes (lite-memory), and what the durable waits add to it
        "overhead_memory_ms_p50": lambda: round(p50("bridged_memory", one) - p50("direct", one), 3),
        "durable_ms_p50": lambda: round(p50("bridged", one) - p50("bridged_memory", one), 3),
        f"bridged_memory_vs_direct_{top}": lambda: round(rate("bridged_memory") / rate("direct"), 3),
        f"native_tasks_per_s_{top}": lambda: rate("native"),
        f"native_vs_bare_{top}": lambda: round(rate("native") / rate("bare"), 3),
        # issue 17: a durable native task no slower at c1 than a plain in-memory a2a-sdk agent (<= 1)
        f"native_vs_direct_p50_{one}": lambda: round(p50("native", one) / p50("direct", one), 3),
        f"lean_vs_sdk_dispatch_{top}": lambda: round(rate("native") / rate("native_sdk"), 3),
        f"bridged_vs_direct_{top}": lambda: round(rate("bridged") / rate("direct"), 3),
        # the bridge's lean blocking call against the a2a-sdk client, same run
        f"bridged_lean_vs_sdk_{top}": lambda: round(rate("bridged") / rate("bridged_sdk"), 3),
        f"bridged_lean_vs_sdk_cpu_{top}": lambda: round(cpu("bridged") / cpu("bridged_sdk"), 3),
        # the gateway's own HTTP/1.1 client against httpx for the lean call, same run
        f"bridged_http1_vs_httpx_{top}": lambda: round(rate("bridged") / rate("bridged_httpx"), 3),
        f"bridged_http1_vs_httpx_cpu_{top}": lambda: round(cpu("bridged") / cpu("bridged_httpx"), 3),
        f"bridged_http1_vs_httpx_cpu_{one}": lambda: round(results["bridged"][one]["cpu_us_per_task"]
                                                           / results["bridged_httpx"][one]["cpu_us_per_task"], 3),
        f"bridged_cpu_us_per_task_{top}": lambda: cpu("bridged"),
        f"bridged_agent_cpu_vs_direct_{top}": lambda: round(results["bridged"][top]["agent_cpu_us_per_task"]
                                                             / results["direct"][top]["agent_cpu_us_per_task"], 3),
        # metrics on (the default) against observability.metrics = false, same run
        f"metrics_on_vs_off_{top}": lambda: round(rate("native") / rate("native_nometrics"), 3),
        f"metrics_on_vs_off_{one}": lambda: round(results["native"][one]["tasks_per_s"]
                                                  / results["native_nometrics"][one]["tasks_per_s"], 3),
        # tracing exported over OTLP: time per task at full load, and p50 added at concurrency 1
        f"tracing_cost_us_per_task_{top}": lambda: round(1e6 / rate("native_traced") - 1e6 / rate("native"), 1),
        # CPU of the gateway process per task: steadier than rates when other work shares the machine
        f"metrics_cpu_on_vs_off_{top}": lambda: round(cpu("native") / cpu("native_nometrics"), 3),
        f"tracing_cpu_us_per_task_{top}": lambda: round(cpu("native_traced") - cpu("native"), 1),
        "tracing_p50_ms_added": lambda: round(p50("native_traced", one) - p50("native", one), 3),
    }
    out = {}
    for name, figure in figures.items():
        try:
            out[name] = figure()
        except (KeyError, ZeroDivisionError, TypeError):   # a target left out by --targets, or one
            # that measured nothing (0/s, no CPU figure): the figure is left out, the others stay
            continue
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=BACKENDS, default="lite")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per point (default 5)")
    parser.add_argument("--concurrency", type=sizes, default=[1, 64])
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="seconds of load before each point (before each target with --warmup-order upfront)")
    parser.add_argument("--warmup-order", choices=WARMUP_ORDERS, default="point",
                        help="point: warm each point at its own concurrency right before it; upfront: the old order")
    parser.add_argument("--serve", choices=["bare", "agent", "proxy", "gateway", "gateway-sdk", "gateway-nometrics",
                                            "gateway-traced", "gateway-bridge-sdk", "gateway-bridge-httpx",
                                            "gateway-memory"], help=argparse.SUPPRESS)
    parser.add_argument("--otlp-url", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=1, help="targets take turns this many times (median kept)")
    parser.add_argument("--targets", type=lambda text: text.split(","), default=None,
                        help="measure only these targets, e.g. native,native_nometrics,native_traced")
    parser.add_argument("--timeline", type=int, default=0, metavar="TASKS",
                        help="instead of wrk: TASKS calls per target one after the other, each stamped at its "
                             "stages in every process (perf_counter); prints the median time of each stage")
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--agent-url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        import uvloop
        uvloop.run(_serve(args.serve, args))
        return 0
    if args.timeline:
        os.environ[TIMELINE_ENV] = "1"      # the server children stamp their stages
        with tempfile.TemporaryDirectory(prefix="gateway-e2e-") as tmp:
            servers = Servers(args.backend, str(Path(tmp) / "lite") if args.backend == "lite" else None,
                              args.targets)
            try:
                results = timeline(servers, args.timeline)
            finally:
                servers.stop()
        emit({"bench": "gateway_e2e", "what": "timeline of one SendMessage at concurrency 1 (median us)",
              "backend": args.backend, "tasks": args.timeline, "results": results, "environment": environment()})
        return 0
    if shutil.which("wrk") is None:
        print("bench.gateway_e2e needs wrk (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="gateway-e2e-") as tmp:
        servers = Servers(args.backend, str(Path(tmp) / "lite") if args.backend == "lite" else None, args.targets)
        try:
            results = measure_a2a(servers, args.concurrency, args.duration, args.warmup, args.targets, args.rounds,
                                   args.warmup_order)
        finally:
            servers.stop()
    emit({"bench": "gateway_e2e", "what": "A2A JSON-RPC SendMessage (blocking), protocol 1.0",
          "backend": args.backend, "load_generator": "wrk -t1", "duration_s_per_point": args.duration,
          "warmup_order": args.warmup_order,
          "results": results, **summary(results, args.concurrency),
          "environment": environment(), "wall_s": round(time.time() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())

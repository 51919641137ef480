"""The gateway's Prometheus metrics: the families, the cheap recorders the hot path calls, and a
collector that reads what the parts count already (relay, push, workers, bridges, the lean
paths, Kafka's reply consumer) when /metrics is scraped.

The families live in one process-wide registry (`REGISTRY`); several Gateway apps in one process
add up. The hot path never builds a label dict: a child series is resolved once per (capability,
state) and kept. `gateway.metrics = false` turns every recorder into a no-op (the baseline of
bench.gateway_e2e's `native_nometrics` target).

For a status page, `snapshot()` returns the current values as plain data (with an embedded
engine, its `topicbridge_engine_*` sizes too).
"""

from __future__ import annotations

import time
import weakref

from a2a.types import a2a_pb2
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from adapters import engine_metrics

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Lower-case A2A state names: TASK_STATE_INPUT_REQUIRED -> input_required.
STATE_NAMES = {value: name.removeprefix("TASK_STATE_").lower()
               for name, value in a2a_pb2.TaskState.items() if value}

TASKS = Counter("topicbridge_tasks", "Tasks that reached each state", ["capability", "state"], registry=REGISTRY)
DURATION = Histogram("topicbridge_task_duration_seconds", "From submit (or a new turn) to a terminal state",
                     ["capability"], registry=REGISTRY,
                     buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900))
RELAY_LAG = Histogram("topicbridge_relay_lag_seconds", "A status event's timestamp to its fold by the relay",
                      registry=REGISTRY, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
REPLY_EVENTS = Counter("topicbridge_reply_events", "Reply events folded by the relay", registry=REGISTRY)
BRIDGE_CALLS = Counter("topicbridge_bridge_calls", "Tasks a bridge forwarded to its remote agent", ["agent"],
                       registry=REGISTRY)
BRIDGE_ERRORS = Counter("topicbridge_bridge_errors", "Bridged tasks that failed at the remote agent", ["agent"],
                        registry=REGISTRY)
REQUESTS = Counter("topicbridge_requests", "HTTP requests by surface and status", ["surface", "status"],
                   registry=REGISTRY)
BACKEND_OP = Histogram("topicbridge_backend_operation_seconds", "Backend operations on the relay's path",
                       ["operation"], registry=REGISTRY,
                       buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
BACKEND_UP = Gauge("topicbridge_backend_up", "1 if the backend answered healthy at the last scrape",
                   ["backend"], registry=REGISTRY)

enabled = True


class _Children(dict):
    """family.labels(...) resolved once per label tuple."""

    def __init__(self, family) -> None:
        super().__init__()
        self.family = family

    def __missing__(self, key):
        labels = tuple(map(str, key)) if isinstance(key, tuple) else (str(key),)
        child = self[key] = self.family.labels(*labels)
        return child


_states = _Children(TASKS)
_durations = _Children(DURATION)
_ops = _Children(BACKEND_OP)


def task_state(capability: str, state: int) -> None:
    """A task reached `state` (an a2a TaskState)."""
    if enabled:
        _states[(capability or "unknown", STATE_NAMES.get(state, "unknown"))].inc()


def task_ended(capability: str, seconds: float) -> None:
    if enabled:
        _durations[capability or "unknown"].observe(seconds)


def relay_lag(seconds: float) -> None:
    if enabled:
        RELAY_LAG.observe(max(0.0, seconds))


def reply_events(count: int) -> None:
    if enabled:
        REPLY_EVENTS.inc(count)


def backend_op(operation: str, started: float) -> None:
    """A backend operation that began at `started` (time.perf_counter()) has ended."""
    if enabled:
        _ops[operation].observe(time.perf_counter() - started)


class BridgeSeries:
    """A bridge's calls and errors, resolved once when the bridge is built."""

    def __init__(self, agent: str) -> None:
        self.calls, self.errors = BRIDGE_CALLS.labels(agent), BRIDGE_ERRORS.labels(agent)

    def call(self) -> None:
        if enabled:
            self.calls.inc()

    def error(self) -> None:
        if enabled:
            self.errors.inc()


# ---------------------------------------------------------------- requests per surface

_SURFACES = {"agents": "a2a", ".well-known": "a2a", "mcp": "mcp", "admin": "admin", "metrics": "metrics",
             "healthz": "health", "readyz": "health"}     # by the path's first segment


class RequestMetrics:
    """ASGI middleware counting each HTTP request by surface and response status."""

    def __init__(self, app) -> None:
        self.app = app
        self._series = _Children(REQUESTS)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not enabled:
            await self.app(scope, receive, send)
            return
        status = 500            # unless the app starts a response

        async def counting_send(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            path = scope["path"]
            end = path.find("/", 1)
            self._series[(_SURFACES.get(path[1:end] if end > 0 else path[1:], "other"), status)].inc()


# ---------------------------------------------------------------- what the parts count already

_gateways: weakref.WeakSet = weakref.WeakSet()


def watch(gateway) -> None:
    """Read this gateway's parts' own counters at every scrape (until it is collected), and its
    embedded engine's sizes."""
    _gateways.add(gateway)


def _counter(name: str, doc: str, labels: list[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


class PartsCollector(Collector):
    def collect(self):
        bad = _counter("topicbridge_relay_bad_events", "Malformed reply events the relay dropped")
        flight = GaugeMetricFamily("topicbridge_tasks_in_flight", "Tasks this instance follows, by capability",
                                   labels=["capability"])
        push = {kind: _counter(f"topicbridge_push_{kind}", f"Push notifications {kind.replace('_', ' ')}")
                for kind in ("deliveries", "retries", "dead_letters")}
        dead = _counter("topicbridge_dead_lettered_envelopes", "Malformed task envelopes dead-lettered by workers",
                        ["capability"])
        lean = _counter("topicbridge_lean_answers", "Calls answered by a lean path", ["surface"])
        kafka = GaugeMetricFamily("topicbridge_kafka_reply_consumer", "Kafka reply consumer figures", labels=["stat"])
        totals = {"bad": 0, "deliveries": 0, "retries": 0, "dead_letters": 0, "mcp": 0}
        flights: dict[str, int] = {}
        dead_by: dict[str, int] = {}
        for gateway in list(_gateways):
            _collect_gateway(gateway, totals, flights, dead_by, kafka)
        bad.add_metric([], totals["bad"])
        for kind, family in push.items():
            family.add_metric([], totals[kind])
        for capability, count in sorted(flights.items()):
            flight.add_metric([capability], count)
        for capability, count in sorted(dead_by.items()):
            dead.add_metric([capability], count)
        lean.add_metric(["mcp"], totals["mcp"])
        yield from (bad, flight, *push.values(), dead, lean, kafka)


def _collect_gateway(gateway, totals: dict, flights: dict, dead_by: dict, kafka) -> None:
    from gateway.tasks.relay import recorded
    tasks, push = gateway.tasks, gateway.push
    engine_metrics.watch(gateway.backend)      # collected after this registry (exposition, snapshot)
    totals["bad"] += tasks.bad_events
    totals["deliveries"] += push.delivered
    totals["retries"] += getattr(push, "retried", 0)
    totals["dead_letters"] += push.dead_lettered
    relay = getattr(tasks, "_relay", None)
    for active in list(relay.active.values()) if relay is not None else ():
        capability = active.capability or recorded(active.task)[0] or "unknown"
        flights[capability] = flights.get(capability, 0) + 1
    for worker in _workers(gateway):
        dead_by[worker.capability] = dead_by.get(worker.capability, 0) + worker.dead_lettered
    totals["mcp"] += getattr(getattr(gateway.mcp, "lean_path", None), "answered", 0)
    stats = getattr(getattr(tasks, "_consumer", None), "stats", None)
    if callable(stats):
        for key, value in stats().items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                kafka.add_metric([key], value)


def _workers(gateway):
    """Native workers run as parts; each bridge has its worker. (Duck-typed: this module sits
    below the layers that define them.)"""
    for part in list(getattr(gateway, "_started", ())):
        if hasattr(part, "dead_lettered") and hasattr(part, "capability"):
            yield part
    for _, bridge in list(gateway.bridges.running.values()):
        yield bridge.worker


REGISTRY.register(PartsCollector())


# ---------------------------------------------------------------- reading them

def exposition() -> bytes:
    """The Prometheus text format of every family (the embedded engine's too)."""
    return generate_latest(REGISTRY) + generate_latest(engine_metrics.REGISTRY)


def snapshot() -> dict[str, list[dict]]:
    """Current values, for a status page: {sample name: [{"labels": {...}, "value": v}, ...]}.
    Histograms appear as their _count, _sum and _bucket samples."""
    out: dict[str, list[dict]] = {}
    for family in (*REGISTRY.collect(), *engine_metrics.REGISTRY.collect()):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out.setdefault(sample.name, []).append({"labels": dict(sample.labels), "value": sample.value})
    return out

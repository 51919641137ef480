"""The gateway's Prometheus metrics: the families, the cheap recorders the hot path calls, and a
collector that reads what the parts count already (relay, push, workers, bridges, the lean
paths, Kafka's reply consumer) when /metrics is scraped.

The families live in one process-wide registry (`REGISTRY`); several Gateway apps in one process
add up. The hot path counts in plain dicts of numbers keyed by label values (no lock, no label
dict, no prometheus_client child); a custom collector builds the families at scrape time. `gateway.metrics = false` turns every recorder into a no-op (the baseline of
bench.gateway_e2e's `native_nometrics` target).

For a status page, `snapshot()` returns the current values as plain data (with an embedded
engine, its `topicbridge_engine_*` sizes too).
"""

from __future__ import annotations

import time
import weakref
from bisect import bisect_left
from itertools import accumulate

from a2a.types import a2a_pb2
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from adapters import engine_metrics

REGISTRY = CollectorRegistry(auto_describe=True)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Lower-case A2A state names: TASK_STATE_INPUT_REQUIRED -> input_required.
STATE_NAMES = {value: name.removeprefix("TASK_STATE_").lower()
               for name, value in a2a_pb2.TaskState.items() if value}


# The hot path counts in plain dicts of ints/floats (no lock, no child object, no label dict:
# everything runs on the event loop thread); `_HotCollector` turns them into the same families
# prometheus_client's Counter/Histogram would expose, only when /metrics is scraped.

class _Counts(dict):
    """{label values: count} of one counter family; a series exists from its first count."""

    def __init__(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.created: dict = {}

    def __missing__(self, key) -> int:
        self.created[key] = time.time()
        return 0

    def family(self) -> CounterMetricFamily:
        out = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for key, value in list(self.items()):
            out.add_metric(_label_values(key), value, created=self.created.get(key))
        return out


class _Series:
    """One histogram series: per-bucket counts (not cumulative), sum, and when it began."""
    __slots__ = ("counts", "sum", "created")

    def __init__(self, size: int) -> None:
        self.counts, self.sum, self.created = [0] * size, 0.0, time.time()


class _Histogram(dict):
    """{label values: _Series} of one histogram family."""

    def __init__(self, name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.name, self.doc, self.labels = name, doc, list(labels)
        self.bounds = (*map(float, buckets), float("inf"))
        self._le = [floatToGoString(b) for b in self.bounds]

    def __missing__(self, key) -> _Series:
        series = self[key] = _Series(len(self.bounds))
        return series

    def observe(self, key, value: float) -> None:
        series = self[key]
        series.counts[bisect_left(self.bounds, value)] += 1   # le: value <= bound
        series.sum += value

    def family(self) -> HistogramMetricFamily:
        out = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        for key, series in list(self.items()):
            values = _label_values(key)
            out.add_metric(values, list(zip(self._le, accumulate(series.counts))), series.sum)
            out.samples.append(Sample(f"{self.name}_created", dict(zip(self.labels, values)), series.created))
        return out


def _label_values(key) -> list[str]:
    return [str(v) for v in key] if isinstance(key, tuple) else ([] if key is None else [str(key)])


_states = _Counts("topicbridge_tasks", "Tasks that reached each state", ("capability", "state"))
_durations = _Histogram("topicbridge_task_duration_seconds", "From submit (or a new turn) to a terminal state",
                        (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900), ("capability",))
_relay_lag = _Histogram("topicbridge_relay_lag_seconds", "A status event's timestamp to its fold by the relay",
                        (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
_reply_events = _Counts("topicbridge_reply_events", "Reply events folded by the relay")
_bridge_calls = _Counts("topicbridge_bridge_calls", "Tasks a bridge forwarded to its remote agent", ("agent",))
_bridge_errors = _Counts("topicbridge_bridge_errors", "Bridged tasks that failed at the remote agent", ("agent",))
_requests = _Counts("topicbridge_requests", "HTTP requests by surface and status", ("surface", "status"))
_ops = _Histogram("topicbridge_backend_operation_seconds", "Backend operations on the relay's path",
                  (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5), ("operation",))
_reply_events[None] += 0     # an unlabelled family has its one series from the start, as a Counter's


class _HotCollector(Collector):
    def collect(self):
        for family in (_states, _durations, _relay_lag, _reply_events, _bridge_calls, _bridge_errors,
                       _requests, _ops):
            yield family.family()


REGISTRY.register(_HotCollector())
BACKEND_UP = Gauge("topicbridge_backend_up", "1 if the backend answered healthy at the last scrape",
                   ["backend"], registry=REGISTRY)

enabled = True


def task_state(capability: str, state: int) -> None:
    """A task reached `state` (an a2a TaskState)."""
    if enabled:
        _states[(capability or "unknown", STATE_NAMES.get(state, "unknown"))] += 1


def task_ended(capability: str, seconds: float) -> None:
    if enabled:
        _durations.observe(capability or "unknown", seconds)


def relay_lag(seconds: float) -> None:
    if enabled:
        _relay_lag.observe(None, max(0.0, seconds))


def reply_events(count: int) -> None:
    if enabled:
        _reply_events[None] += count


def backend_op(operation: str, started: float) -> None:
    """A backend operation that began at `started` (time.perf_counter()) has ended."""
    if enabled:
        _ops.observe(operation, time.perf_counter() - started)


class BridgeSeries:
    """A bridge's calls and errors; both series exist (at 0) from when the bridge is built."""

    def __init__(self, agent: str) -> None:
        self.agent = agent
        _bridge_calls[agent] += 0
        _bridge_errors[agent] += 0

    def call(self) -> None:
        if enabled:
            _bridge_calls[self.agent] += 1

    def error(self) -> None:
        if enabled:
            _bridge_errors[self.agent] += 1


# ---------------------------------------------------------------- requests per surface

_SURFACES = {"agents": "a2a", ".well-known": "a2a", "mcp": "mcp", "admin": "admin", "metrics": "metrics",
             "healthz": "health", "readyz": "health"}     # by the path's first segment


class RequestMetrics:
    """ASGI middleware counting each HTTP request by surface and response status."""

    def __init__(self, app) -> None:
        self.app = app

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
            _requests[(_SURFACES.get(path[1:end] if end > 0 else path[1:], "other"), str(status))] += 1


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

"""The lite engine's Prometheus metrics: sizes read from the engine at scrape time (topics, lite
topics, subscriptions, ready clients, messages retained, commit-log bytes and segments) and two
histograms recorded where the work happens (fsync latency in the commit log's flusher thread,
snapshot duration in Engine.snapshot).

`topicbridge engine --metrics-port N` serves them over HTTP (`serve`); a gateway with an
embedded engine adds them to its own /metrics (`watch`, through adapters/engine_metrics.py).
"""

from __future__ import annotations

import logging
import weakref

from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("lite_engine.metrics")

REGISTRY = CollectorRegistry(auto_describe=True)

FSYNC = Histogram("topicbridge_engine_fsync_seconds", "Commit log fdatasync latency", registry=REGISTRY,
                  buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1))
SNAPSHOT = Histogram("topicbridge_engine_snapshot_seconds", "Time to write one engine snapshot", registry=REGISTRY,
                     buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30))


_engines: weakref.WeakSet = weakref.WeakSet()


def watch(engine) -> None:
    """Report `engine`'s sizes at every scrape (until it is collected)."""
    _engines.add(engine)


class EngineCollector(Collector):
    """Reads the watched engines' sizes when scraped (summed: normally there is one). Caller: the
    scrape (prometheus_client's HTTP thread, or the gateway's loop): it only reads, and a size
    may be one event behind."""

    def collect(self):
        engines = list(_engines)
        if not engines:
            return
        sizes: dict[str, int] = {}
        for engine in engines:
            for key, value in engine_sizes(engine).items():
                sizes[key] = sizes.get(key, 0) + value
        for name, doc in (("topics", "Topics (capability and lite parents)"), ("lite_topics", "Lite topics"),
                          ("clients", "Lite clients with a session"),
                          ("subscriptions", "Lite topic subscriptions over all clients"),
                          ("ready_clients", "Clients whose ReadySet is not empty"),
                          ("messages_retained", "Messages the engine holds"),
                          ("inflight", "Messages handed out and not yet settled"),
                          ("commitlog_bytes", "Bytes in the commit log's segments"),
                          ("commitlog_segments", "Commit log segment files"),
                          ("healthy", "1 if the engine reports healthy")):
            family = GaugeMetricFamily(f"topicbridge_engine_{name}", doc)
            family.add_metric([], sizes[name])
            yield family


def engine_sizes(engine) -> dict:
    return engine.sizes()


def serve(engine, host: str, port: int) -> int:
    """Serve GET /metrics for `engine` on host:port (0: a free port) from a daemon thread;
    returns the port."""
    watch(engine)
    server, _ = start_http_server(port, addr=host, registry=REGISTRY)
    bound = server.server_address[1]
    log.info("engine metrics on http://%s:%d/metrics", host, bound)
    return bound


REGISTRY.register(EngineCollector())

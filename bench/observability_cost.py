"""What metrics and tracing cost per task: CPU time of one process serving A2A JSON-RPC
`SendMessage` through the whole app (guard, metrics middleware, lean dispatcher, task service,
embedded engine in memory, relay) to a native echo worker, called in process over ASGI (no
sockets, so the figure is the gateway's work and not the load generator's).

    python -m bench.observability_cost [--tasks 500] [--concurrency 64] [--rounds 5]

Modes, taking turns each round (other work on the machine drifts; the median round is kept):

  off       observability.metrics = false: the baseline
  metrics   metrics recorded (the default)
  traced    metrics and tracing, every span encoded as OTLP protobuf by a BatchSpanProcessor
            (the export's encoding is counted; the bytes are dropped instead of sent)

`metrics_cpu_ratio` is metrics / off within each round, the median over rounds (the target: at
most 1.05); `tracing_us_per_task` is traced minus metrics, likewise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time

from ._util import emit, environment, progress

HEADERS = [(b"content-type", b"application/json"), (b"a2a-version", b"1.0")]
TRACEPARENT = (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")


def body(n: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": n, "method": "SendMessage",
                       "params": {"message": {"messageId": f"m{n}", "role": "ROLE_USER",
                                              "parts": [{"text": "hello"}]}}}).encode()


async def call(app, n: int, traced: bool) -> bytes:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/agents/echo/", "raw_path": b"/agents/echo/", "query_string": b"",
             "root_path": "", "headers": HEADERS + ([TRACEPARENT] if traced else []),
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080)}
    sent = False
    chunks: list[bytes] = []

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body(n), "more_body": False}
        await asyncio.Event().wait()

    async def send(message):
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(chunks)


async def drive(app, tasks: int, concurrency: int, traced: bool) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> None:
        async with gate:
            answer = await call(app, n, traced)
            if b"TASK_STATE_COMPLETED" not in answer:
                raise RuntimeError(f"unexpected answer {answer[:300]!r}")

    await asyncio.gather(*(one(n) for n in range(tasks)))


class EncodingExporter:
    """A SpanExporter that encodes spans as an OTLP request would, and drops the bytes."""

    def __init__(self) -> None:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
        self.encode, self.spans = encode_spans, 0

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult
        self.encode(spans).SerializeToString()
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


async def measure(tasks: int, concurrency: int, rounds: int) -> dict:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from gateway.observability import metrics, tracing
    from gateway.app import build_app
    from gateway.workers.worker import Worker
    from bench._agents import echo

    exporter = EncodingExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    app = build_app({"backend": "lite", "lite": {"data_dir": None}, "gateway": {},
                     "observability": {"metrics": True, "tracing": True}})
    gateway = app.state.gateway
    await gateway.start()
    try:
        await gateway.add_part(Worker(gateway.backend, "echo", echo, concurrency=256,
                                      card={"name": "Echo", "description": "Echoes the message."}))
        await drive(app, min(tasks, 500), concurrency, False)       # warm up
        modes = {"off": (False, False), "metrics": (True, False), "traced": (True, True)}
        cpu: dict[str, list[float]] = {mode: [] for mode in modes}
        for n in range(rounds):
            for mode in (list(modes) if n % 2 == 0 else list(reversed(modes))):
                metrics.enabled, tracing.enabled = modes[mode]
                progress(f"{mode}: {tasks} tasks at concurrency {concurrency} (round {n + 1}/{rounds})")
                started = time.process_time()
                await drive(app, tasks, concurrency, mode == "traced")
                provider.force_flush()
                cpu[mode].append((time.process_time() - started) * 1e6 / tasks)
    finally:
        await gateway.close()
        provider.shutdown()
    median = {mode: round(statistics.median(values), 1) for mode, values in cpu.items()}
    # paired within a round (the modes ran back to back), then the median over rounds
    ratios = [on / off for on, off in zip(cpu["metrics"], cpu["off"])]
    added = [traced - on for traced, on in zip(cpu["traced"], cpu["metrics"])]
    return {"cpu_us_per_task": median, "rounds_cpu_us_per_task": {m: [round(v, 1) for v in vs] for m, vs in cpu.items()},
            "metrics_cpu_ratio": round(statistics.median(ratios), 3),
            "metrics_cpu_ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)] if len(ratios) > 1 else [],
            "tracing_us_per_task": round(statistics.median(added), 1),
            "spans_exported": exporter.spans}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=500)   # per mode and round: ~3 min on a loaded 2-core machine
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    started = time.time()
    figures = asyncio.run(measure(args.tasks, args.concurrency, args.rounds))
    emit({"bench": "observability_cost", "what": "CPU per A2A SendMessage task in one process (ASGI, embedded "
          "engine in memory, native echo worker)", "tasks_per_round": args.tasks, "concurrency": args.concurrency,
          **figures, "environment": environment(), "wall_s": round(time.time() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A native agent in its own process: serves the capability `summarise` with the worker SDK.

    topicbridge serve                 # a gateway; its embedded engine is shared on 127.0.0.1:7600
    python examples/worker.py         # this worker reaches that engine (lite.mode = remote)
    curl -s localhost:8080/admin/agents/summarise

The worker reads the same configuration as the gateway (TOPICBRIDGE_* variables, or a TOML
file in $TOPICBRIDGE_CONFIG), so on Kafka or RocketMQ it joins the same broker. On the default
lite backend it connects to the engine the gateway shares (`lite.listen`, target
`lite.target`) instead of opening the data directory itself, which only one process may hold.
Stop it with Ctrl-C; its capability is listed as unavailable once its heartbeats stop.
"""

from __future__ import annotations

import asyncio
import signal

from adapters.factory import open_backend
from gateway.settings import load
from gateway.workers import TaskContext, Worker

CARD = {"name": "summarise", "description": "Summarises a text in one line (an example: it quotes the start).",
        "skills": [{"id": "summarise", "name": "summarise", "description": "One-line summary of a text",
                    "tags": ["summary", "text"], "examples": ["summarise this paragraph"]}]}


async def summarise(task: TaskContext) -> None:
    await task.working("reading")
    words = task.text.split()
    await task.complete(text=" ".join(words[:12]) + (" ..." if len(words) > 12 else ""))


async def main() -> None:
    settings = load()
    if settings["backend"] == "lite":
        settings["lite"]["mode"] = "remote"     # share the gateway's engine, never open its data directory
    backend = open_backend(settings)
    await backend.start()
    worker = Worker(backend, "summarise", summarise, card=CARD)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await worker.start()        # joins the group tb-workers-summarise, announces its card, heartbeats
        print("worker summarise is serving; Ctrl-C stops it", flush=True)
        await stop.wait()
    finally:
        await worker.close()
        await backend.close()


if __name__ == "__main__":
    asyncio.run(main())

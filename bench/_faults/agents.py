"""The peers the fault kinds start as real processes, each printing one READY line (bench/_http.py):

    python -m bench._faults.agents worker --target 127.0.0.1:7600 --capability slow-echo --delay 1
        a native worker on a remote lite engine (the worker SDK), answering "echo: <text>"
    python -m bench._faults.agents a2a --mode ok|slow|error|hang|huge|garbage [--delay S]
        an A2A agent (a2a-sdk) for the gateway to bridge: `error` answers HTTP 500, `garbage`
        answers 200 with bytes that are not JSON-RPC, `hang` accepts and never answers, `huge`
        answers with a multi-megabyte artifact, `slow` waits `--delay` before echoing
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from .._agents import sdk_echo_app
from .._http import bound_socket, ready, start_uvicorn

HUGE_BYTES = 8 * 1024 * 1024


def agent_app(base_url: str, mode: str, delay: float):
    from starlette.responses import Response
    from starlette.routing import Route

    async def misbehave(request):
        await request.body()
        if mode == "error":
            return Response("internal error", status_code=500)
        if mode == "garbage":
            return Response(b"\x00\xffnot json-rpc{{{", media_type="application/json")
        await asyncio.Event().wait()        # hang: never answer

    front = [Route("/", misbehave, methods=["POST"])] if mode in ("error", "garbage", "hang") else []
    return sdk_echo_app(base_url, work_s=delay if mode == "slow" else 0.0, name=f"fault-{mode}",
                        description=f"An agent that is {mode}.", front_routes=front,
                        answer=(lambda _text: "x" * HUGE_BYTES) if mode == "huge" else None)


async def serve_agent(mode: str, delay: float) -> None:
    sock = bound_socket()
    port = sock.getsockname()[1]
    serving = await start_uvicorn(agent_app(f"http://127.0.0.1:{port}", mode, delay), sock)
    ready(port=port, mode=mode)
    await serving


async def serve_worker(target: str, capability: str, delay: float, invisible: float) -> None:
    from adapters.lite_remote import RemoteLiteBackend
    from gateway.workers.worker import Worker

    async def echo(task) -> None:
        if delay:
            await task.working("on it")
            await asyncio.sleep(delay)          # sleep-ok: the work the fault interrupts
        await task.complete(text=f"echo: {task.text}")

    backend = RemoteLiteBackend(target)
    await backend.start()
    worker = Worker(backend, capability, echo, invisible=invisible,
                    card={"name": capability, "description": "Echoes, slowly."})
    await worker.start()
    ready(capability=capability, pid=__import__("os").getpid())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await worker.close()
    await backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench._faults.agents")
    kinds = parser.add_subparsers(dest="kind", required=True)
    a2a = kinds.add_parser("a2a")
    a2a.add_argument("--mode", choices=["ok", "slow", "error", "hang", "huge", "garbage"], default="ok")
    a2a.add_argument("--delay", type=float, default=1.0)
    worker = kinds.add_parser("worker")
    worker.add_argument("--target", required=True)
    worker.add_argument("--capability", default="slow-echo")
    worker.add_argument("--delay", type=float, default=0.0)
    worker.add_argument("--invisible", type=float, default=2.0)
    args = parser.parse_args()
    import uvloop
    if args.kind == "a2a":
        uvloop.run(serve_agent(args.mode, args.delay))
    else:
        uvloop.run(serve_worker(args.target, args.capability, args.delay, args.invisible))


if __name__ == "__main__":
    main()

"""`topicbridge serve` after its flags are read: open the backend (retrying while unreachable),
then serve; what goes wrong before serving is one line on stderr and an exit status, not a
traceback. Also the backend flags and the next steps printed for a newcomer."""

from __future__ import annotations

import argparse
import asyncio
import sys

from adapters.errors import InvalidRequestError
from adapters.factory import MissingExtraError, require_extra

BACKEND_FLAGS = {     # flag -> (backend it implies, settings section, key)
    "bootstrap": ("kafka", "kafka", "bootstrap_servers"),
    "endpoint": ("rocketmq", "rocketmq", "endpoint"),
    "namesrv": ("rocketmq", "rocketmq", "admin"),
    "engine": ("lite", "lite", "target"),
}


def add_backend_flags(serve: argparse.ArgumentParser) -> None:
    serve.add_argument("--backend", choices=["lite", "kafka", "rocketmq"], default=None,
                       help="messaging backend (default: backend setting, lite); kafka and rocketmq need "
                            "pip install 'topicbridge[kafka]' / 'topicbridge[rocketmq]'")
    serve.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (kafka.bootstrap_servers)")
    serve.add_argument("--endpoint", metavar="HOST:PORT", help="RocketMQ gRPC proxy (rocketmq.endpoint)")
    serve.add_argument("--namesrv", metavar="HOST:PORT", help="RocketMQ name server, to create its topics (rocketmq.admin)")
    serve.add_argument("--engine", metavar="HOST:PORT",
                       help="use a `topicbridge engine` there instead of the embedded one (lite.mode=remote)")


def apply_backend_flags(args: argparse.Namespace, settings: dict) -> str | None:
    """Fold the backend flags into `settings`; an error message when they contradict each other."""
    if args.backend is not None:
        settings["backend"] = args.backend
    for flag, (backend, section, key) in BACKEND_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if settings["backend"] != backend:
            return f"--{flag} is for --backend {backend}, not {settings['backend']}"
        settings.setdefault(section, {})[key] = value
        if flag == "engine":
            settings["lite"]["mode"] = "remote"
    return None


def next_steps(settings: dict, host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    lines = [f"  agents:     {base}/admin/agents    (topicbridge agents list)",
             f"  MCP:        {base}/mcp",
             f"  A2A:        {base}/agents/<name>/  (card at {base}/.well-known/agent-card.json)"]
    lite = settings.get("lite", {})
    if settings["backend"] == "lite" and lite.get("mode") != "remote" and lite.get("listen"):
        lines.append(f"  a worker:   python examples/worker.py   (reaches this engine on {lite['listen']}, "
                     "lite.mode=remote)")
    if not settings["gateway"].get("demo"):
        lines.append("  something to call: topicbridge serve --demo  (adds the example agents echo and word-stats)")
    return "\n".join(lines)


def serve(settings: dict, host: str, port: int, banner: str, **uvicorn_options) -> int:
    try:
        require_extra(settings["backend"])      # before the heavy imports: an answer at once
        import uvicorn

        from gateway.app import build_app
        app = build_app(settings)
    except (MissingExtraError, InvalidRequestError) as e:     # a setting the backend cannot use
        print(f"topicbridge: {e}", file=sys.stderr)
        return 2
    print(f"{banner}\n{next_steps(settings, host, port)}", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="on", **uvicorn_options)
    server = uvicorn.Server(config)
    try:
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            return runner.run(_serve(app.state.gateway, server))
    except KeyboardInterrupt:       # Ctrl-C while the backend was still being retried
        return 130


async def _serve(gateway, server) -> int:
    from gateway.backend_start import BackendStartError
    try:
        await gateway.start_backend()
    except BackendStartError as e:
        print(f"topicbridge: {e}", file=sys.stderr)
        return 3
    except BaseException:
        await gateway.backend.close()
        raise
    await server.serve()        # the lifespan starts the other parts and closes everything
    return 0 if server.started else 1

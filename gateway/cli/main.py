"""The `topicbridge` command."""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["engine"]:   # the engine's command lives with the engine
        from lite_engine.cli import main as engine_main
        return engine_main(argv[1:])
    parser = argparse.ArgumentParser(prog="topicbridge", description=__doc__)
    parser.add_argument("--version", action="version", version=f"topicbridge {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("engine", help="serve the lite engine over gRPC (see: topicbridge engine --help)")

    serve = commands.add_parser("serve", help="start the gateway on the configured backend")
    serve.add_argument("--config", default=None, help="TOML config file (default: $TOPICBRIDGE_CONFIG)")
    serve.add_argument("--host", default=None, help="listen address (default: gateway.host, 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="listen port (default: gateway.port, 8080)")
    serve.add_argument("--data-dir", default=None, help="the embedded engine's commit log directory (lite.data_dir)")
    serve.add_argument("--demo", action="store_true", default=None,
                       help="also run two example agents (echo, word-stats) in the gateway process")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None,
                       help="default: observability.log_level, info")
    serve.add_argument("--log-format", choices=["text", "json"], default=None,
                       help="text with timestamps, or one JSON object a line (default: observability.log_format)")
    from gateway.launch import add_backend_flags
    add_backend_flags(serve)

    mcp = commands.add_parser("mcp-stdio", help="speak MCP on stdin/stdout: proxy to a gateway's /mcp, "
                                                "or embed a gateway (--embedded)")
    mcp.add_argument("--url", default=os.environ.get("TOPICBRIDGE_MCP_URL", "http://127.0.0.1:8080/mcp"),
                     help="the gateway's MCP endpoint (default: $TOPICBRIDGE_MCP_URL or %(default)s)")
    mcp.add_argument("--token", default=os.environ.get("TOPICBRIDGE_MCP_TOKEN"),
                     help="bearer token for the gateway (default: $TOPICBRIDGE_MCP_TOKEN)")
    mcp.add_argument("--embedded", action="store_true", help="run a gateway in this process instead")
    mcp.add_argument("--config", default=None, help="with --embedded: TOML config file (default: $TOPICBRIDGE_CONFIG)")

    from . import admin
    admin.add_commands(commands)      # agents, tasks

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "mcp-stdio":
        from gateway.mcp_stdio import main as mcp_stdio
        return mcp_stdio(url=args.url, token=args.token, embedded_gateway=args.embedded, config=args.config)
    if args.command in ("agents", "tasks"):
        return admin.run(args)
    return 2


def _serve(args) -> int:
    from gateway.http.auth import unprotected_surfaces
    from gateway.http.guard import is_loopback
    from gateway.http.serving import uvicorn_options
    from gateway.settings import ConfigError, load
    try:
        settings = load(args.config)
    except ConfigError as e:
        print(f"topicbridge: {e}", file=sys.stderr)
        return 2
    gateway = settings["gateway"]
    overrides = {"host": args.host, "port": args.port, "demo": args.demo}
    gateway.update({key: value for key, value in overrides.items() if value is not None})
    if args.data_dir is not None:
        settings["lite"]["data_dir"] = args.data_dir
    from gateway.launch import apply_backend_flags, serve
    if (error := apply_backend_flags(args, settings)) is not None:
        print(f"topicbridge: {error}", file=sys.stderr)
        return 2
    host, port = gateway["host"], gateway["port"]
    if gateway.get("instance_id") is None and port:
        gateway["instance_id"] = stable_instance_id(port)
    open_to_all = unprotected_surfaces(settings)
    if not is_loopback(host) and open_to_all:
        print(f"topicbridge: refusing to listen on {host!r} without authentication: "
              f"{', '.join(open_to_all)} would be open to anyone; set gateway.bearer_tokens "
              "(TOPICBRIDGE_GATEWAY__BEARER_TOKENS) or gateway.oauth, or listen on 127.0.0.1", file=sys.stderr)
        return 2
    demo = " with the demo agents echo and word-stats" if gateway.get("demo") else ""
    banner = f"topicbridge gateway on http://{host}:{port} (backend: {settings['backend']}){demo}"
    # Open SSE streams (MCP listen/GET streams) would otherwise hold the shutdown forever.
    from gateway.process import tune_gc
    tune_gc()
    from gateway.observability.logs import configure as configure_logs
    logging_options = configure_logs(settings, level=args.log_level, fmt=args.log_format)
    return serve(settings, host, port, banner, timeout_graceful_shutdown=5, **uvicorn_options(settings),
                 **logging_options)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("topicbridge")
    except PackageNotFoundError:        # run from a source tree that is not installed
        return "unknown (not installed)"


def stable_instance_id(port: int) -> str:
    """`gw-<host name>-<port>`: the same after a restart, so the instance reads its reply-channel
    group again and folds the events of the tasks it was following before it stopped (a random
    id would leave them unread). Two live instances never share a host and port."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:36] or "host"
    return f"gw-{host}-{port}"


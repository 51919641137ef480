"""The `topicbridge` command."""

from __future__ import annotations

import argparse
import math
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

    _add_agents(commands)

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "mcp-stdio":
        from gateway.mcp_stdio import main as mcp_stdio
        return mcp_stdio(url=args.url, token=args.token, embedded_gateway=args.embedded, config=args.config)
    if args.command == "agents":
        return _agents(args)
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
    from gateway.logs import configure as configure_logs
    logging_options = configure_logs(settings, level=args.log_level, fmt=args.log_format)
    return serve(settings, host, port, banner, timeout_graceful_shutdown=5, **uvicorn_options(settings),
                 **logging_options)


def stable_instance_id(port: int) -> str:
    """`gw-<host name>-<port>`: the same after a restart, so the instance reads its reply-channel
    group again and folds the events of the tasks it was following before it stopped (a random
    id would leave them unread). Two live instances never share a host and port."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:36] or "host"
    return f"gw-{host}-{port}"


def _add_agents(commands) -> None:
    agents = commands.add_parser("agents", help="register, list, show and remove agents on a running gateway",
                                 description="Talks to a running gateway's admin API and prints its JSON answer. "
                                             "Exit codes: 0 done, 1 the gateway refused (its error on stderr), "
                                             "2 bad usage, 3 the gateway could not be reached.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gateway", default=os.environ.get("TOPICBRIDGE_GATEWAY", "http://127.0.0.1:8080"),
                        help="the gateway's base URL (default: $TOPICBRIDGE_GATEWAY or %(default)s)")
    common.add_argument("--token", default=os.environ.get("TOPICBRIDGE_TOKEN"),
                        help="bearer token for the admin API (default: $TOPICBRIDGE_TOKEN)")
    common.add_argument("--timeout", type=_positive(float), default=30.0, help="seconds (default %(default)s)")
    actions = agents.add_subparsers(dest="action", required=True)
    register = actions.add_parser("register", parents=[common], help="register an A2A agent by its card or base URL")
    register.add_argument("card_url")
    register.add_argument("--name", help="capability name (default: derived from the card's name)")
    listing = actions.add_parser("list", parents=[common], help="list capabilities, or search them with --query")
    listing.add_argument("--query", "-q", help="rank by relevance to these words, e.g. 'summarise a PDF'")
    listing.add_argument("--limit", type=_positive(int))
    actions.add_parser("show", parents=[common], help="show one capability").add_argument("name")
    actions.add_parser("remove", parents=[common], help="remove a capability").add_argument("name")


def _agents(args) -> int:
    import json
    from urllib.parse import quote

    import httpx
    path = "/admin/agents" + (f"/{quote(args.name, safe='')}" if args.action in ("show", "remove") else "")
    method = {"register": "POST", "list": "GET", "show": "GET", "remove": "DELETE"}[args.action]
    body = {"card_url": args.card_url, **({"name": args.name} if args.name else {})} \
        if args.action == "register" else None
    params = {k: v for k, v in (("q", getattr(args, "query", None)), ("limit", getattr(args, "limit", None)))
              if v is not None}
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    try:
        response = httpx.request(method, args.gateway.rstrip("/") + path, json=body, params=params,
                                 headers=headers, timeout=args.timeout)
    except httpx.HTTPError as e:
        print(f"topicbridge agents: cannot reach the gateway at {args.gateway}: {e or type(e).__name__}",
              file=sys.stderr)
        return 3
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if doc is not None:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    if response.is_success and doc is not None:
        return 0
    error = doc.get("error") if isinstance(doc, dict) else None
    message = error.get("message") if isinstance(error, dict) else response.text[:300] or response.reason_phrase
    print(f"topicbridge agents {args.action}: HTTP {response.status_code}: {message}", file=sys.stderr)
    return 1


def _positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


if __name__ == "__main__":
    sys.exit(main())

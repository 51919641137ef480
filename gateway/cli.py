"""The `topicbridge` command."""

from __future__ import annotations

import argparse
import math
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="topicbridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    engine = commands.add_parser("engine", help="serve the lite engine over gRPC")
    engine.add_argument("--host", default="127.0.0.1")
    engine.add_argument("--port", type=int, default=7600)
    engine.add_argument("--data-dir", default=None, help="commit log directory (default: memory only)")
    engine.add_argument("--fsync", choices=["always", "batch", "interval", "never"], default="batch")
    engine.add_argument("--drain-seconds", type=float, default=5.0,
                        help="on SIGTERM/SIGINT, how long calls in progress may take to finish")
    _add_engine_settings(engine)

    serve = commands.add_parser("serve", help="start the gateway on the configured backend")
    serve.add_argument("--config", default=None, help="TOML config file (default: $TOPICBRIDGE_CONFIG)")

    args = parser.parse_args(argv)
    if args.command == "engine":
        from lite_engine.service import run
        settings = {name: value for name, value in vars(args).items()
                    if name in _ENGINE_SETTINGS and value is not None}
        return run(host=args.host, port=args.port, data_dir=args.data_dir, fsync=args.fsync,
                   drain_seconds=args.drain_seconds, **settings)
    if args.command == "serve":
        return _serve(args.config)
    return 2


def _serve(config: str | None) -> int:
    import uvicorn

    from .app import build_app
    from .settings import ConfigError, load
    try:
        settings = load(config)
    except ConfigError as e:
        print(f"topicbridge: {e}", file=sys.stderr)
        return 2
    host, port = settings["gateway"]["host"], settings["gateway"]["port"]
    print(f"topicbridge gateway on http://{host}:{port} (backend: {settings['backend']})", file=sys.stderr)
    uvicorn.run(build_app(settings), host=host, port=port, log_level="info", lifespan="on")
    return 0


# EngineConfig fields the `engine` command exposes as --flags (e.g. --session-timeout 0.5).
_ENGINE_SETTINGS = ("session_timeout", "tick", "default_invisible", "max_attempts", "lite_idle_seconds",
                    "min_lite_idle_seconds", "max_lite_topics", "max_subscriptions_per_client",
                    "max_messages_per_lite_topic", "max_message_bytes", "poll_topic_batch",
                    "fsync_interval", "segment_bytes", "snapshot_every")


def _add_engine_settings(parser: argparse.ArgumentParser) -> None:
    from lite_engine.config import EngineConfig
    defaults = EngineConfig()
    for name in _ENGINE_SETTINGS:
        default = getattr(defaults, name)
        parser.add_argument("--" + name.replace("_", "-"), type=_positive(type(default)), default=None,
                            metavar=type(default).__name__.upper(), help=f"engine setting (default {default})")


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

"""`topicbridge engine`: serve the lite engine over gRPC so that several processes share it.

The console script's `engine` subcommand hands its arguments to `main` here; the gateway knows
nothing of the engine's flags. `python -m lite_engine.cli --help` works as well.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from . import logsetup
from .config import EngineConfig

# EngineConfig fields exposed as --flags (e.g. --session-timeout 0.5).
SETTINGS = ("session_timeout", "tick", "default_invisible", "max_attempts", "lite_idle_seconds",
            "min_lite_idle_seconds", "max_lite_topics", "max_subscriptions_per_client",
            "max_messages_per_lite_topic", "max_message_bytes", "poll_topic_batch",
            "fsync_interval", "segment_bytes", "snapshot_every")


def parser(prog: str = "topicbridge engine") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Serve the lite engine over gRPC. Only one engine may "
                                "open a data directory; other processes reach it with lite.mode=remote.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7600)
    p.add_argument("--data-dir", default=None, help="commit log directory (default: memory only)")
    p.add_argument("--fsync", choices=["always", "batch", "interval", "never"], default="batch")
    p.add_argument("--repair", action="store_true",
                   help="cut a corrupt commit log in --data-dir at its first bad record (what follows is "
                        "set aside as *.corrupt files and lost), print what was done and exit")
    p.add_argument("--drain-seconds", type=float, default=5.0,
                   help="on SIGTERM/SIGINT, how long calls in progress may take to finish")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (0: a free port; default: off)")
    p.add_argument("--tls-cert", metavar="PEM", help="serve TLS with this certificate chain (needs --tls-key)")
    p.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    p.add_argument("--tls-client-ca", metavar="PEM",
                   help="mutual TLS: clients must present a certificate signed by this CA")
    p.add_argument("--token-file", metavar="PATH",
                   help="every call must carry 'authorization: Bearer <the file's content>'; required to "
                        "serve a host other than loopback")
    p.add_argument("--log-level", choices=list(logsetup.LEVELS), default="info")
    p.add_argument("--log-format", choices=["text", "json"], default="text",
                   help="text with timestamps, or one JSON object a line")
    p.add_argument("--log-repeat-window", type=_positive(float), default=10.0, metavar="SECONDS",
                   help="a repeated warning is written once per this window, with a count (default 10)")
    defaults = EngineConfig()
    for name in SETTINGS:
        default = getattr(defaults, name)
        p.add_argument("--" + name.replace("_", "-"), type=_positive(type(default)), default=None,
                       metavar=type(default).__name__.upper(), help=f"engine setting (default {default})")
    return p


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status (2 for bad arguments, via SystemExit)."""
    from .service import run   # grpc is loaded only to serve

    args = parser().parse_args(argv)
    if args.repair:
        return _repair(args.data_dir)
    settings = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    try:
        access = _access(args)
    except (OSError, ValueError) as exc:
        print(f"topicbridge engine: {exc}", file=sys.stderr)
        return 2
    logsetup.configure(args.log_level, args.log_format, static={"instance": f"engine-{args.port}", "backend": "lite"},
                       repeat_window=args.log_repeat_window)
    return run(host=args.host, port=args.port, data_dir=args.data_dir, fsync=args.fsync,
               drain_seconds=args.drain_seconds, metrics_port=args.metrics_port, access=access, **settings)


def _access(args):
    from .access import Access

    def read(path: str | None, what: str) -> bytes | None:
        if path is None:
            return None
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise OSError(f"cannot read {what} {path!r}: {exc.strerror}") from None

    token = read(args.token_file, "--token-file")
    return Access(cert=read(args.tls_cert, "--tls-cert"), key=read(args.tls_key, "--tls-key"),
                  client_ca=read(args.tls_client_ca, "--tls-client-ca"),
                  token=None if token is None else token.decode("utf-8", "replace").strip())


def _repair(data_dir: str | None) -> int:
    """0: the log opens now (repaired or sound); 1: it could not be repaired."""
    import asyncio

    from .errors import DataDirLockedError
    from .repair import RepairError, repair

    if data_dir is None:
        print("topicbridge engine --repair needs --data-dir")
        return 2
    try:
        actions = asyncio.run(repair(data_dir))
    except (RepairError, DataDirLockedError) as e:
        print(f"repair failed: {e}")
        return 1
    for action in actions:
        print(f"repaired: {action}")
    print(f"{data_dir}: the commit log opens" + ("" if actions else " (nothing to repair)"))
    return 0


def _positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


if __name__ == "__main__":
    raise SystemExit(main())

"""The `topicbridge` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="topicbridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    engine = commands.add_parser("engine", help="serve the lite engine over gRPC")
    engine.add_argument("--host", default="127.0.0.1")
    engine.add_argument("--port", type=int, default=7600)
    engine.add_argument("--data-dir", default=None, help="commit log directory (default: memory only)")
    engine.add_argument("--fsync", choices=["always", "batch", "interval", "never"], default="batch")

    commands.add_parser("serve", help="start the gateway on the configured backend")

    args = parser.parse_args(argv)
    if args.command == "engine":
        from lite_engine.service import run
        return run(host=args.host, port=args.port, data_dir=args.data_dir, fsync=args.fsync)
    if args.command == "serve":
        print("topicbridge: the gateway is not built yet; starting the embedded lite engine alone "
              "(gRPC on 127.0.0.1:7600, data in .data/engine)", file=sys.stderr)
        from lite_engine.service import run
        return run(host="127.0.0.1", port=7600, data_dir=".data/engine", fsync="batch")
    return 2


if __name__ == "__main__":
    sys.exit(main())

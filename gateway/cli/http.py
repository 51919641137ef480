"""How the CLI's admin commands talk to a gateway: its admin HTTP API, with the exit codes the
commands document (0 done, 1 the gateway refused, 2 bad usage, 3 the gateway could not be
reached, 4 the watched task ended unsuccessfully)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterator

import httpx

REFUSED, UNREACHABLE, TASK_UNSUCCESSFUL = 1, 3, 4


class CliExit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(code)


def common_options() -> argparse.ArgumentParser:
    """--gateway, --token, --timeout and --json, for every admin command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gateway", default=os.environ.get("TOPICBRIDGE_GATEWAY", "http://127.0.0.1:8080"),
                        help="the gateway's base URL (default: $TOPICBRIDGE_GATEWAY or %(default)s)")
    common.add_argument("--token", default=os.environ.get("TOPICBRIDGE_TOKEN"),
                        help="bearer token for the admin API (default: $TOPICBRIDGE_TOKEN)")
    common.add_argument("--timeout", type=positive(float), default=30.0, help="seconds (default %(default)s)")
    common.add_argument("--json", action="store_true", help="print the gateway's JSON (for scripts) instead of tables")
    return common


def positive(kind: type):
    def parse(text: str):
        value = kind(text)
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text!r}")
        return value
    parse.__name__ = kind.__name__
    return parse


def _headers(args) -> dict:
    return {"Authorization": f"Bearer {args.token}"} if args.token else {}


def _url(args, path: str) -> str:
    return args.gateway.rstrip("/") + path


def call(args, what: str, method: str, path: str, *, body: dict | None = None, params: dict | None = None):
    """The gateway's JSON answer; on a refusal its error goes to stderr (and its JSON to stdout
    with --json) and CliExit(1); CliExit(3) when the gateway cannot be reached."""
    try:
        response = httpx.request(method, _url(args, path), json=body, params=params, headers=_headers(args),
                                 timeout=args.timeout)
    except httpx.HTTPError as e:
        raise _unreachable(args, what, e) from None
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if response.is_success and doc is not None:
        return doc
    refused(args, what, response.status_code, doc, response.text[:300] or response.reason_phrase)


def refused(args, what: str, status: int, doc, text: str):
    if doc is not None and args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    error = doc.get("error") if isinstance(doc, dict) else None
    message = error.get("message") if isinstance(error, dict) else text
    print(f"topicbridge {what}: HTTP {status}: {message}", file=sys.stderr)
    raise CliExit(REFUSED)


def _unreachable(args, what: str, error: Exception) -> CliExit:
    print(f"topicbridge {what}: cannot reach the gateway at {args.gateway}: {error or type(error).__name__}",
          file=sys.stderr)
    return CliExit(UNREACHABLE)


def stream(args, what: str, path: str) -> Iterator[tuple[str, dict]]:
    """(event name, data) of a server-sent event stream of the admin API, until it ends."""
    timeout = httpx.Timeout(args.timeout, read=None)        # a task may be silent for long
    try:
        with httpx.stream("GET", _url(args, path), headers=_headers(args), timeout=timeout) as response:
            if not response.is_success:
                response.read()
                try:
                    doc = response.json()
                except ValueError:
                    doc = None
                refused(args, what, response.status_code, doc, response.text[:300])
            name, data = "message", []
            for line in response.iter_lines():
                if not line:
                    if "".join(data).strip():       # an event without data carries nothing
                        yield name, json.loads("\n".join(data))
                    name, data = "message", []
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
    except httpx.HTTPError as e:
        raise _unreachable(args, what, e) from None

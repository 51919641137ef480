"""How the caller of a task waits for it, told to its worker in the task envelope's metadata.

A caller that blocks until the task settles (A2A `SendMessage` without `return_immediately` and
without a push config) sees no intermediate event, so a bridge may call its agent with one plain
`SendMessage` instead of a stream: an a2a-sdk agent spends ~1 ms less CPU on a JSON answer than on
an SSE stream. Every other caller (streams, subscriptions, push, MCP progress) leaves the mark off
and the bridge streams from agents whose card says they stream.

    envelope.metadata["topicbridge"] = {"blocking": true}
"""

from __future__ import annotations

KEY = "topicbridge"     # the gateway's own corner of the envelope's metadata (as fold.OWN_METADATA in tasks)


def mark_blocking(metadata: dict | None) -> dict:
    """`metadata` (the caller's, not changed) with the blocking mark added."""
    own = (metadata or {}).get(KEY)
    return {**(metadata or {}), KEY: {**(own if isinstance(own, dict) else {}), "blocking": True}}


def caller_blocks(metadata: dict) -> bool:
    own = metadata.get(KEY)
    return isinstance(own, dict) and own.get("blocking") is True

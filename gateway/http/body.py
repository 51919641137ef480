"""Reading an ASGI request body in front of an app that may still need it: the lean paths
(a2a_lean, mcp_lean) read the body to decide whether they answer, and otherwise hand the app a
`receive` that replays exactly what they read."""

from __future__ import annotations

import collections


async def read_body(receive, limit: int | None = None) -> tuple[bytes | None, list]:
    """(the body, or None when it is not whole or larger than `limit`; the messages read, for `replay`)."""
    messages = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None, messages
        size += len(message.get("body", b""))
        if limit is not None and size > limit:
            return None, messages
        if not message.get("more_body", False):
            if len(messages) == 1:
                return message.get("body", b""), messages
            return b"".join(m.get("body", b"") for m in messages), messages


def replay(messages: list, receive):
    """`receive` for the app behind: the messages already read, as they came, then the rest."""
    pending = collections.deque(messages)

    async def replayed():
        if pending:
            return pending.popleft()
        return await receive()
    return replayed

"""How deep a JSON document nests, read from its bytes as they arrive, without parsing it.

`GatewayGuard` (security.py) refuses a request body nested deeper than `gateway.max_json_depth`
before any parser sees it.
"""

from __future__ import annotations

import codecs
import itertools

_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")     # opening +1, closing -1 (as signed bytes)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _eight_step_table() -> dict[int, tuple[int, int]]:
    """Every run of 8 steps, read as one little-endian 64-bit word -> (net change, highest point)."""
    table = {}
    for steps in itertools.product((1, -1), repeat=8):
        heights = list(itertools.accumulate(steps))
        table[int.from_bytes(bytes(s & 0xFF for s in steps), "little")] = (heights[-1], max(heights))
    return table


_EIGHT_STEPS = _eight_step_table()
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class JsonDepth:
    """How deep the JSON read so far nests, chunk by chunk, at C speed for all but deep bodies.

    Per chunk: escapes go first (`\\\\` pairs, then `\\"`: backslashes only occur inside strings in
    valid JSON, and pairing them from the left is how a parser reads them), so every quote left
    opens or closes a string; splitting on quotes and keeping every other piece leaves what is
    outside strings; `bytes.translate` keeps only its brackets, as +1/-1 steps. When the depth at
    the start of the chunk plus every opening bracket in it stays within the limit, that is all
    (a typical body: a couple of microseconds). Otherwise the steps are walked eight at a time
    through a table of (net change, highest point), stopping as soon as the limit is passed.

    State carried between chunks: the depth, whether a string is open, and a backslash the
    chunk ended on. Invalid JSON is measured as if it were JSON up to where a parser would stop
    reading it (depth never goes below 0), which is all that matters: nothing parses past it.
    """

    __slots__ = ("limit", "depth", "in_string", "backslash", "utf8")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self.in_string = False
        self.backslash = False
        # JSON is UTF-8 (RFC 8259 §8.1): a body that is not would reach the SDKs' decoders, which
        # answer it with an internal error. Checked incrementally: a sequence may span chunks.
        # Made at the first byte that is not ASCII: a guard builds one JsonDepth per request.
        self.utf8 = None

    def feed(self, chunk: bytes, last: bool = False) -> str | None:
        """None while the body is acceptable, else why it is not. `last`: no chunk follows, so
        when even every bracket in it, strings and all, stays within the limit, that is all."""
        if b"\x00" in chunk:
            return "not UTF-8 JSON (it contains NUL bytes)"
        if self.utf8 is not None or not chunk.isascii():
            if self.utf8 is None:
                self.utf8 = _utf8_decoder()
            try:
                self.utf8.decode(chunk, last)
            except UnicodeDecodeError as e:
                return f"not UTF-8 ({e.reason} at byte {e.start})"
        if last and self.depth + chunk.count(b"[") + chunk.count(b"{") <= self.limit:
            return None
        if self.backslash:
            chunk = b"\\" + chunk
            self.backslash = False
        if b"\\" in chunk:
            if (len(chunk) - len(chunk.rstrip(b"\\"))) & 1:     # ends inside an escape: finish it next time
                self.backslash = True
                chunk = chunk[:-1]
            chunk = chunk.replace(b"\\\\", b"").replace(b'\\"', b"")
        pieces = chunk.split(b'"')
        if len(pieces) > 1:
            outside = b"".join(pieces[self.in_string::2])
            self.in_string ^= (len(pieces) - 1) & 1
        elif self.in_string:
            return None
        else:
            outside = chunk
        steps = outside.translate(_STEPS, _NOT_BRACKETS)
        if not steps:
            return None
        opens = steps.count(1)
        depth, limit = self.depth, self.limit
        if depth + opens <= limit:
            self.depth = max(depth + 2 * opens - len(steps), 0)
            return None
        whole = len(steps) & ~7
        for word in memoryview(steps[:whole]).cast("Q"):
            net, top = _EIGHT_STEPS[word]
            if depth + top > limit:
                return self._too_deep()
            depth = max(depth + net, 0)
        for step in memoryview(steps[whole:]).cast("b"):
            depth = max(depth + step, 0)
            if depth > limit:
                return self._too_deep()
        self.depth = depth
        return None

    def _too_deep(self) -> str:
        return f"JSON nested deeper than {self.limit} levels"

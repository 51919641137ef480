"""Validation of the names that cross the engine boundary."""

from __future__ import annotations

import re

from .config import DLQ_PREFIX
from .errors import InvalidNameError

MAX_NAME_LENGTH = 255
# Names that passed (not system names: those pass only with system_ok). Topics, groups, tables
# and clients are checked on every call into the engine; the regex was ~1% of a gateway's CPU.
_KNOWN_MAX = 4096
_known: dict[str, None] = {}
# Letters, digits and a few separators; `%` is reserved for system topics (dead letters).
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/@=+\-]*")


def validate_name(kind: str, value: object, *, system_ok: bool = False) -> str:
    """Return `value` if it is a valid topic, lite topic, group or client name.

    With `system_ok`, the engine's own topics (dead letters: `%DLQ%<group>`) are accepted too.
    """
    if type(value) is str and value in _known:
        return value
    if system_ok and isinstance(value, str) and value.startswith(DLQ_PREFIX):
        validate_name("group", value[len(DLQ_PREFIX):])
        return value
    if not isinstance(value, str):
        raise InvalidNameError(kind, value, f"must be a string, got {type(value).__name__}")
    if not value:
        raise InvalidNameError(kind, value, "must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidNameError(kind, value, f"is {len(value)} characters long, the limit is {MAX_NAME_LENGTH}")
    if _NAME.fullmatch(value) is None:
        raise InvalidNameError(kind, value, _explain(value))
    if len(_known) >= _KNOWN_MAX:
        _known.clear()
    _known[value] = None
    return value


def _explain(value: str) -> str:
    bad = next(ch for i, ch in enumerate(value) if _NAME.fullmatch(value[: i + 1]) is None)
    if not bad.isprintable() or bad.isspace():
        return f"contains the control or space character {bad!r}"
    return f"contains {bad!r}; allowed are letters, digits and _ . : / @ = + - (not first)"

"""Checks of the arguments that cross the engine boundary (names are in names.py)."""

from __future__ import annotations

import math
from typing import Iterable

from .config import EngineConfig, TopicConfig
from .errors import InvalidArgumentError, MessageTooLargeError
from .names import validate_name

MAX_HEADERS = 64
MAX_HEADER_BYTES = 16 << 10


def lite_names(lites: Iterable[str]) -> set[str]:
    if isinstance(lites, str):
        raise InvalidArgumentError(lites, "expected a collection of lite topic names, got one string")
    return {validate_name("lite topic", n) for n in lites}


def seconds(what: str, value, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero) or value > 86_400 * 7:
        raise InvalidArgumentError(value, f"{what} must be a number of seconds in "
                                          f"{'[0' if allow_zero else '(0'}, 604800]")
    return float(value)


def check_message(body, headers, key, limit: int) -> None:
    if not isinstance(body, (bytes, bytearray)):
        raise InvalidArgumentError(type(body).__name__, "message body must be bytes")
    if len(body) > limit:
        raise MessageTooLargeError(len(body), limit)
    if key is not None and (not isinstance(key, str) or len(key.encode()) > 1024):
        raise InvalidArgumentError(key, "key must be a string of at most 1024 bytes")
    if headers is None:
        return
    if not isinstance(headers, dict) or len(headers) > MAX_HEADERS:
        raise InvalidArgumentError(headers, f"headers must be a dict of at most {MAX_HEADERS} entries")
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not name.isprintable() or len(name) > 255:
            raise InvalidArgumentError(name, "header names must be 1..255 printable characters")
        if not isinstance(value, str) or len(value.encode()) > MAX_HEADER_BYTES:
            raise InvalidArgumentError(name, f"header values must be strings of at most {MAX_HEADER_BYTES} bytes")


def check_kv_key(key) -> None:
    if not isinstance(key, str) or not key or len(key.encode()) > 1024 or not key.isprintable():
        raise InvalidArgumentError(key, "keys must be 1..1024 bytes of printable text")


def check_topic_config(config: TopicConfig, engine: EngineConfig) -> None:
    if config.lite_idle_seconds is not None:
        seconds("lite_idle_seconds", config.lite_idle_seconds)
    if config.max_attempts is not None and (not isinstance(config.max_attempts, int) or config.max_attempts < 1):
        raise InvalidArgumentError(config.max_attempts, "max_attempts must be a positive integer")

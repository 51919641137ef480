"""The processes' logging setup (lite_engine/logsetup.py), for the gateway: it reaches the lite
engine only through the adapters, and `serve` and `engine` log alike."""

from lite_engine.logsetup import FIELDS, LEVELS, JsonFormatter, RepeatFilter, TextFormatter, configure

__all__ = ["FIELDS", "LEVELS", "JsonFormatter", "RepeatFilter", "TextFormatter", "configure"]

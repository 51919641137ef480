"""Logging for the `topicbridge` processes (`engine` here, `serve` through gateway/observability/logs.py): one
stderr handler, text with timestamps or one JSON object a line, and a filter that turns a
repeated failure into one line per window with a count instead of a flood.

    2026-12-07 07:02:10,123 WARNING topicbridge.tasks: reply poll failed (...) [task_id=t-1]
    {"time": "...", "level": "WARNING", "logger": "topicbridge.tasks", "message": "...", "task_id": "t-1"}

Records may carry the fields in FIELDS (`extra={"task_id": ...}`); `static` fields (instance,
backend) are added to every record.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time

FIELDS = ("task_id", "capability", "instance", "backend", "trace_id", "state", "duration")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
HANDLER_NAME = "topicbridge"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = " ".join(f"{k}={v}" for k in FIELDS if (v := getattr(record, k, None)) not in (None, ""))
        return f"{line} [{fields}]" if fields else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
               "message": record.getMessage()}
        for key in FIELDS:
            value = getattr(record, key, None)
            if value not in (None, ""):
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class StaticFields(logging.Filter):
    """Adds the process's fixed fields (instance, backend) to records that lack them."""

    def __init__(self, fields: dict) -> None:
        super().__init__()
        self.fields = {k: v for k, v in fields.items() if v}

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in self.fields.items():
            if getattr(record, key, None) in (None, ""):
                setattr(record, key, value)
        return True


class RepeatFilter(logging.Filter):
    """Warnings and errors repeated within `window` seconds (same logger, level and message
    template, whatever the arguments) are written once; the first one after the window says how
    many were left out, without the traceback the first one showed. A broker that is down for a
    minute costs about 60/window lines per distinct message, not one per retry."""

    def __init__(self, window: float = 10.0, level: int = logging.WARNING, clock=time.monotonic) -> None:
        super().__init__()
        self.window, self.level, self.clock = window, level, clock
        self._seen: dict[tuple, list] = {}       # key -> [window start, suppressed count]
        self._lock = threading.Lock()            # records arrive from the engine's threads too
        self.suppressed = 0                      # records left out since start

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        with self._lock:
            entry = self._seen.get(key)
            if entry is not None and now - entry[0] < self.window:
                entry[1] += 1
                self.suppressed += 1
                return False
            left_out = entry[1] if entry is not None else 0
            self._seen[key] = [now, 0]
            if len(self._seen) > 1000:           # bounded: forget the oldest windows
                for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                    del self._seen[old]
        if entry is not None:       # seen before: its traceback was written the first time
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        if left_out:
            record.msg = f"{record.msg} (and {left_out} more like it in the last {self.window:g}s)"
        return True


def configure(level: str = "info", fmt: str = "text", *, static: dict | None = None,
              repeat_window: float = 10.0, filters: tuple = (), stream=None) -> logging.Handler:
    """Install the one topicbridge handler on the root logger (replacing an earlier one)."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    if fmt not in ("text", "json"):
        raise ValueError(f"log format must be text or json, got {fmt!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    for f in (StaticFields(static or {}), *filters, RepeatFilter(repeat_window)):
        handler.addFilter(f)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    return handler

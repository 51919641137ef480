"""Configuration: a TOML file plus TOPICBRIDGE_* environment variables, validated against
schemas/config.schema.json. Environment variables win; nested keys use a double underscore
(TOPICBRIDGE_LITE__FSYNC=always sets lite.fsync)."""

from __future__ import annotations

import os
import tomllib
from functools import cache
from pathlib import Path
from typing import Mapping

import jsonschema

import schemas

ENV_PREFIX = "TOPICBRIDGE_"
_NOT_SETTINGS = {"TOPICBRIDGE_CONFIG"}


class ConfigError(ValueError):
    def __init__(self, key: str, reason: str, source: str) -> None:
        self.key, self.reason, self.source = key, reason, source
        super().__init__(f"config error at {key or '(top level)'}: {reason} (from {source})")


@cache
def schema() -> dict:
    return schemas.read("config")


def load(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> dict:
    """Return validated settings with defaults filled in."""
    env = os.environ if env is None else env
    path = path or env.get("TOPICBRIDGE_CONFIG")
    data, sources = _read_toml(path) if path else ({}, {})
    for var, value in env.items():
        if var.startswith(ENV_PREFIX) and var not in _NOT_SETTINGS:
            keys = [k.lower() for k in var[len(ENV_PREFIX):].split("__")]
            _set(data, keys, _coerce(keys, value, var), var)
            sources[".".join(keys)] = var
    _validate(data, sources, path)
    return _with_defaults(data, schema())


def _read_toml(path) -> tuple[dict, dict]:
    try:
        return tomllib.loads(Path(path).read_text()), {}
    except OSError as e:
        raise ConfigError("", f"cannot read config file: {e.strerror}", str(path)) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError("", f"invalid TOML: {e}", str(path)) from e


def _set(data: dict, keys: list[str], value, var: str) -> None:
    for key in keys[:-1]:
        child = data.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(keys), f"{key!r} is not a table", var)
        data = child
    data[keys[-1]] = value


def _coerce(keys: list[str], raw: str, var: str):
    """Environment values are text: convert them to the type the schema declares."""
    node = schema()
    for key in keys:
        node = node.get("properties", {}).get(key, {})
    types = node.get("type", "string")
    types = types if isinstance(types, list) else [types]
    if "null" in types and raw.lower() in ("", "null", "none"):
        return None
    if "array" in types:
        return [part.strip() for part in raw.split(",") if part.strip()]
    try:
        if "integer" in types:
            return int(raw)
        if "number" in types:
            return float(raw)
    except ValueError:
        raise ConfigError(".".join(keys), f"{raw!r} is not a {types[0]}", var) from None
    if "boolean" in types:
        if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(".".join(keys), f"{raw!r} is not a boolean", var)
        return raw.lower() in ("true", "1", "yes")
    return raw


def _validate(data: dict, sources: dict, path) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return
    key = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        key = ".".join(filter(None, [key, extra[0] if extra else ""]))
        reason = f"unknown setting; known here: {', '.join(sorted(error.schema.get('properties', {})))}"
    else:
        reason = error.message
    raise ConfigError(key, reason, _source(key, sources, path))


def _source(key: str, sources: dict, path) -> str:
    """Where the value at `key` came from. An error can point inside what one variable set (an
    item of a list: gateway.bearer_tokens.0), so the nearest enclosing key that a variable set
    counts. Defaults are filled in after validation: every bad value came from the file or the
    environment."""
    parts = key.split(".") if key else []
    for end in range(len(parts), 0, -1):
        var = sources.get(".".join(parts[:end]))
        if var is not None:
            return var
    return str(path) if path else "environment"


def _with_defaults(data: dict, node: dict) -> dict:
    out = dict(data)
    for key, sub in node.get("properties", {}).items():
        if sub.get("type") == "object":
            out[key] = _with_defaults(out.get(key, {}), sub)
        elif key not in out and "default" in sub:
            out[key] = sub["default"]
    return out


def with_defaults(data: dict) -> dict:
    """`data` with the schema's defaults filled in: for settings built in code rather than loaded."""
    return _with_defaults(data, schema())

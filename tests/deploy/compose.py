"""Read a compose file as `docker compose` would: YAML (with anchors and `<<` merge keys), then
`${VAR}`, `${VAR:-default}`, `${VAR:?message}` and `$$` interpolated from an environment."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMA = json.loads(Path(__file__).with_name("compose.schema.json").read_text())
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class MissingVariable(ValueError):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def files() -> list[Path]:
    return sorted(DEPLOY.glob("docker-compose.*.yml"))


def interpolate(text: str, env: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2), match.group(3)
        value = env.get(name)
        unset = value is None or (value == "" and operator and operator.startswith(":"))
        if operator and operator.endswith("?") and unset:
            raise MissingVariable(name, argument or "required")
        if operator and operator.endswith("-") and unset:
            return argument
        return value or ""
    return _VARIABLE.sub(one, text)


def _walk(node, env: dict[str, str]):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_walk(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, env) for key, value in node.items()}
    return node


@cache
def _parsed(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load(path: Path, env: dict[str, str]) -> dict:
    return _walk(copy.deepcopy(_parsed(path)), env)


def long_running(compose: dict) -> dict[str, dict]:
    """Services that stay up (not one-shot steps whose restart policy is "no")."""
    return {name: service for name, service in compose["services"].items() if service.get("restart") != "no"}


def named_volumes(service: dict) -> dict[str, str]:
    """{volume name: mount path} of the named volumes (not bind mounts) a service mounts."""
    mounts = (entry.split(":") for entry in service.get("volumes", []))
    return {parts[0]: parts[1] for parts in mounts if not parts[0].startswith((".", "/", "~"))}

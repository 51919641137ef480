"""The JSON Schemas of everything that crosses a boundary (config, task envelope, reply and control
events), shipped as package data: read them with `schemas.read(name)`, never by a path into the
source tree, so an installed wheel finds them too."""

from __future__ import annotations

import json
from importlib.resources import files


def read(name: str) -> dict:
    """The parsed `<name>.schema.json` of this package."""
    return json.loads(files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8"))

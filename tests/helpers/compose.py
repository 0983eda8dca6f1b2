"""docker-compose.yml and .env as Compose reads them: env files, interpolation, the model.

Interpolation follows the Compose specification: ``$$`` escapes, ``$VAR``, ``${VAR}``,
``${VAR:-default}``, ``${VAR-default}``, ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``,
``${VAR+alt}``, with nested expressions inside defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.helpers.dockerfile import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
OWN_IMAGE = re.compile(r"^\$\{DOCKERHUB_NAMESPACE\}/tasador-(?P<image>[a-z0-9-]+):\$\{TAG\}$")

_ASSIGNMENT = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class InterpolationError(ValueError):
    pass


def env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """The variables an env file sets (commented-out lines excluded)."""
    return {m["name"]: m["value"] for m in _assignments(path) if not m["comment"]}


def documented_names(path: Path = ENV_EXAMPLE) -> set[str]:
    """Every variable an env file names, set or shown commented out."""
    return {m["name"] for m in _assignments(path)}


def documented_values(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """The value each variable is shown with, set or commented out."""
    return {m["name"]: m["value"] for m in _assignments(path)}


def _assignments(path: Path) -> list[re.Match[str]]:
    return [m for line in path.read_text().splitlines() if (m := _ASSIGNMENT.match(line.strip()))]


def interpolate(text: str, env: Mapping[str, str], used: set[str] | None = None) -> str:
    """Substitute ``text`` as Compose does; ``used`` collects the variable names read."""
    value, end = _expand(text, 0, env, used, stop=None)
    assert end == len(text)
    return value


def _expand(
    text: str, i: int, env: Mapping[str, str], used: set[str] | None, stop: str | None
) -> tuple[str, int]:
    out: list[str] = []
    while i < len(text):
        char = text[i]
        if stop is not None and char == stop:
            return "".join(out), i
        if char != "$":
            out.append(char)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            value, i = _braced(text, i + 2, env, used)
            out.append(value)
        elif m := _NAME.match(text, i + 1):
            name = m[0]
            if used is not None:
                used.add(name)
            out.append(env.get(name, ""))
            i = m.end()
        else:
            raise InterpolationError(f"a lone '$' at {i} in {text!r} (write $$)")
    if stop is not None:
        raise InterpolationError(f"unclosed '${{' in {text!r}")
    return "".join(out), i


def _braced(text: str, i: int, env: Mapping[str, str], used: set[str] | None) -> tuple[str, int]:
    m = _NAME.match(text, i)
    if not m:
        raise InterpolationError(f"bad variable name at {i} in {text!r}")
    name = m[0]
    if used is not None:
        used.add(name)
    i = m.end()
    operator = next(
        (op for op in (":-", ":?", ":+", "-", "?", "+", "}") if text.startswith(op, i)), None
    )
    if operator is None:
        raise InterpolationError(f"unknown operator after ${{{name} in {text!r}")
    if operator == "}":
        return env.get(name, ""), i + 1
    word, end = _expand(text, i + len(operator), env, used, stop="}")
    is_set = name in env
    is_nonempty = bool(env.get(name))
    present = is_nonempty if operator.startswith(":") else is_set
    if operator.endswith("-"):
        value = env[name] if present else word
    elif operator.endswith("+"):
        value = word if present else ""
    else:  # "?": required
        if not present:
            raise InterpolationError(f"{name}: {word or 'required variable is missing'}")
        value = env[name]
    return value, end + 1


def load(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as YAML, merge keys resolved, before interpolation."""
    return yaml.safe_load(path.read_text())


def resolved(env: Mapping[str, str], path: Path = COMPOSE_FILE) -> tuple[dict, set[str]]:
    """The compose model after interpolation with ``env``, and the variable names it read.

    Values are cast where Compose casts them (the only interpolated number is
    ``deploy.replicas``). Environment entries without a value stay ``None``: Compose then
    passes the variable from ``.env`` when it is set there.
    """
    used: set[str] = set()
    model = _walk(load(path), env, used)
    for service in model.get("services", {}).values():
        deploy = service.get("deploy") or {}
        if isinstance(deploy.get("replicas"), str):
            deploy["replicas"] = int(deploy["replicas"])
    return model, used


def _walk(node: Any, env: Mapping[str, str], used: set[str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env, used)
    if isinstance(node, list):
        return [_walk(item, env, used) for item in node]
    if isinstance(node, dict):
        return {key: _walk(value, env, used) for key, value in node.items()}
    return node


def service_env(service: Mapping[str, Any], dotenv: Mapping[str, str]) -> dict[str, str]:
    """A service's container environment: valueless entries take their value from ``dotenv``."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.partition("=")[::2] if "=" in item else (item, None) for item in raw)
    env = {}
    for key, value in raw.items():
        if value is None:
            if key in dotenv:
                env[key] = dotenv[key]
        else:
            env[key] = str(value)
    return env


def own_image(service: Mapping[str, Any]) -> str | None:
    """The project image a service runs (before interpolation), or None for an official one."""
    m = OWN_IMAGE.match(service.get("image", ""))
    return m["image"] if m else None

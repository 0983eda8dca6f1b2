#!/usr/bin/env python3
"""Refuse to start the stack with the placeholder or weak secrets of ``.env.example``.

docker-compose.yml runs this first (service ``secrets-check``) with every secret of ``.env`` in
its environment; every other service waits for it to exit 0. Outside the dev profile
(``DEPLOY_PROFILE=dev``) it refuses:

- any value that still contains the placeholder marker ``change-me``;
- a password, secret or token shorter than ``MIN_SECRET_LENGTH`` characters;
- a ``*FERNET_KEY`` that is not a real Fernet key (Airflow encrypts connections with it).

Only the names of offending variables are printed, never their values.
"""

from __future__ import annotations

import base64
import binascii
import os
import sys
from collections.abc import Mapping

PLACEHOLDER = "change-me"
DEV_PROFILE = "dev"
MIN_SECRET_LENGTH = 16
SECRET_SUFFIXES = ("PASSWORD", "SECRET", "SECRET_KEY", "TOKEN")


def is_fernet_key(value: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(value.encode())) == 32
    except (binascii.Error, ValueError):
        return False


def problems(env: Mapping[str, str]) -> list[str]:
    """One line per offending variable; empty when the secrets are fit for production."""
    found = []
    for name, value in sorted(env.items()):
        if PLACEHOLDER in value:
            found.append(f"{name} still holds the placeholder from .env.example")
        elif name.endswith("FERNET_KEY") and not is_fernet_key(value):
            found.append(f"{name} is not a Fernet key (32 url-safe base64-encoded bytes)")
        elif name.endswith(SECRET_SUFFIXES) and len(value) < MIN_SECRET_LENGTH:
            found.append(f"{name} is shorter than {MIN_SECRET_LENGTH} characters")
    return found


def main(env: Mapping[str, str]) -> int:
    profile = env.get("DEPLOY_PROFILE", "production")
    found = problems({k: v for k, v in env.items() if k != "DEPLOY_PROFILE"})
    if not found:
        print("secrets: ok")
        return 0
    if profile == DEV_PROFILE:
        print(f"secrets: {len(found)} placeholder or weak value(s) accepted (DEPLOY_PROFILE=dev)")
        return 0
    for line in found:
        print(f"refused: {line}", file=sys.stderr)
    print(
        "Set real values in .env (e.g. `openssl rand -hex 24`; for the Fernet key see "
        "docs/deployment.md), or set DEPLOY_PROFILE=dev for a throwaway trial.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main(os.environ))

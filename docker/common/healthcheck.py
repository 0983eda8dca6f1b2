#!/usr/bin/env python3
"""Container healthcheck: exit 0 when every URL given answers 2xx, else 1.

Standard library only, so the same file serves every image (none of them ships curl).
Usage: healthcheck URL [URL ...]
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

TIMEOUT_S = 4.0

# Healthchecks probe the container itself: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def healthy(url: str) -> bool:
    try:
        with _OPENER.open(url, timeout=TIMEOUT_S) as response:
            return 200 <= response.status < 300
    except (OSError, ValueError):  # refused, timed out, HTTP error status, malformed URL
        return False


def main(urls: list[str]) -> int:
    if not urls:
        print("usage: healthcheck URL [URL ...]", file=sys.stderr)
        return 2
    failing = [url for url in urls if not healthy(url)]
    for url in failing:
        print(f"unhealthy: {url}", file=sys.stderr)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The built-in data API as a real process, for the tests that run the DAGs against it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx

from tasador.core import services
from tasador.core.config import Settings


@contextmanager
def drift_zoo_api(settings: Settings) -> Iterator[None]:
    """The data API (scenario drift-zoo, scale 0.005) at ``settings``' data API URL, its group 1
    restarted so every test starts from the first batch; stopped on exit."""
    url = settings.data_api.data_api_url
    command = services.tasador_command(
        "datasource",
        "--port",
        str(urlsplit(url).port),
        "--scenario",
        "drift-zoo",
        "--scale",
        "0.005",
    )
    env = {**os.environ, "TASADOR_STATE_DIR": str(settings.state_dir)}
    with services.running(command, f"{url}/health", settings.state_dir / "datasource.log", env=env):
        httpx.get(f"{url}/restart_data_generation", params={"group_number": 1})
        yield

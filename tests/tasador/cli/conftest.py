"""The `tasador` commands are tested on the experiments' data and settings."""

import pytest

from tasador.core import config


@pytest.fixture
def cli_env(monkeypatch):
    """Run the CLI with the given settings (it reads them from the environment)."""

    def use(settings):
        for name, value in config.settings_env(settings).items():
            monkeypatch.setenv(name, value)
        config.get_settings.cache_clear()

    yield use
    config.get_settings.cache_clear()

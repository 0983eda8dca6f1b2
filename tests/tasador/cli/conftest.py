"""The `tasador search` command is tested on the experiments' data and settings."""

from tests.experiments.conftest import search_settings  # noqa: F401  (a fixture)

"""The `tasador search` command is tested on the experiments' data and settings."""

from tests.experiments.conftest import raw_sample, search_settings  # noqa: F401  (fixtures)

"""Fixtures of the experiments tests: the real sample, cleaned by the platform's own rules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasador.cleaning import clean_frame


@pytest.fixture(scope="session")
def clean_sample(sample_csv: Path) -> pd.DataFrame:
    raw = pd.read_csv(sample_csv, dtype=str, keep_default_na=False)
    frame, _ = clean_frame(raw)
    return frame.reset_index(drop=True)

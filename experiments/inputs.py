"""What a logged model takes: the raw listing fields, typed as in CLEAN (pandas only).

Apart from :mod:`experiments.features` (the scikit-learn pipeline) so that what only reads the
registry (the UI through :mod:`experiments.registry`) runs without scikit-learn installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from tasador.core.columns import RAW_COLUMNS, TARGET

# What the served model takes: every raw field but the target, typed as in CLEAN.
INPUT_COLUMNS: tuple[str, ...] = tuple(c for c in RAW_COLUMNS if c != TARGET)
SIZES = ("bed", "bath", "acre_lot", "house_size")  # float64
INPUT_TYPES: dict[str, str] = {  # MLflow signature types of INPUT_COLUMNS
    **{c: "string" for c in INPUT_COLUMNS},
    **{c: "double" for c in SIZES},
    "prev_sold_date": "datetime",
}


def _digits(values: pd.Series) -> pd.Series:
    """Ids that may arrive as floats ("40618.0"), ints or strings: the integer's digits."""
    number = pd.to_numeric(values, errors="coerce")
    number = number.where((number >= 0) & np.isfinite(number))
    return number.round().astype("Int64").astype("string")


def _text(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text == "")


def model_input(data: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Raw listing fields (a frame or JSON-like records) -> the model's input frame.

    Columns ``INPUT_COLUMNS`` typed as in CLEAN (``INPUT_TYPES``): sizes float64, ids and zip
    codes as digit strings (zip zero-padded to 5), other text stripped, the date datetime64.
    Values arrive as the data API and JSON send them (ids and zips as floats, counts as ints,
    dates as text); unparseable values become missing, absent columns all-missing, extra
    columns are dropped. The logged model's signature expects exactly this frame, so callers
    of ``mlflow.pyfunc`` models (serving) pass their input through here first.
    """
    frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame.from_records(list(data))
    raw = frame.reindex(columns=list(INPUT_COLUMNS))
    zip5 = _digits(raw["zip_code"])
    dates = pd.to_datetime(raw["prev_sold_date"], errors="coerce", format="mixed")
    return pd.DataFrame(
        {
            "brokered_by": _digits(raw["brokered_by"]),
            "status": _text(raw["status"]).str.lower(),
            **{c: pd.to_numeric(raw[c], errors="coerce").astype("float64") for c in SIZES},
            "street": _digits(raw["street"]),
            "city": _text(raw["city"]),
            "state": _text(raw["state"]),
            "zip_code": zip5.where(zip5.str.len() <= 5).str.zfill(5),
            "prev_sold_date": dates.astype("datetime64[ns]"),
        },
        index=frame.index,
    ).loc[:, list(INPUT_COLUMNS)]

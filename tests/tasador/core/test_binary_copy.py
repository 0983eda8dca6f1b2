"""Binary COPY streams, loaded by a real PostgreSQL and read back value for value."""

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import psycopg
import pytest

from tasador.core import binary_copy

TYPES: dict[str, binary_copy.PgType] = {
    "id": "int8",
    "n": "int4",
    "flag": "bool",
    "label": "text",
    "x": "float8",
    "day": "date",
    "note": "text",
}
TABLE = "CREATE TABLE t (id bigint, n int, flag boolean, label text, x float8, day date, note text)"

TEXTS = ["plain", "", "São Paulo", 'a,b "quoted"\nnew\tline', "\\N", "日本", None, "x" * 500]


def frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    x = rng.normal(size=rows) * 1e6
    x[::7] = np.nan
    x[1:3] = [math.inf, -math.inf]
    days = pd.Series(
        pd.to_datetime("1900-01-01") + pd.to_timedelta(rng.integers(0, 60_000, rows), "D")
    )
    days[::5] = pd.NaT
    return pd.DataFrame(
        {
            "id": rng.integers(-(2**62), 2**62, rows),
            "n": np.arange(rows),
            "flag": rng.random(rows) < 0.5,
            "label": pd.array([TEXTS[i % len(TEXTS)] for i in range(rows)], dtype="string"),
            "x": x,
            "day": days.astype("datetime64[ns]"),
            "note": pd.array([None if i % 3 else f"n{i}" for i in range(rows)], dtype="string"),
        }
    )


def load(
    url: str, data: pd.DataFrame, chunk_rows: int = 10, types: dict | None = None
) -> list[tuple]:
    with psycopg.connect(url) as conn:
        conn.execute(TABLE)
        with conn.cursor().copy(f"COPY t ({', '.join(TYPES)}) FROM STDIN (FORMAT binary)") as cp:
            for chunk in binary_copy.encode(data, types or TYPES, chunk_rows=chunk_rows):
                cp.write(chunk)
        return conn.execute(f"SELECT {', '.join(TYPES)} FROM t ORDER BY n").fetchall()


def expected(data: pd.DataFrame) -> list[tuple]:
    def value(v: object) -> object:
        if v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
            return None
        return v.date() if isinstance(v, pd.Timestamp) else v

    return [tuple(value(v) for v in row) for row in data.astype(object).itertuples(index=False)]


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_every_value_and_null_survives_the_round_trip(
    make_database: Callable[[str], str], chunk_rows: int
) -> None:
    data = frame(120)
    assert load(make_database("binary_copy"), data, chunk_rows) == expected(data)


def test_an_empty_frame_loads_no_row(make_database: Callable[[str], str]) -> None:
    assert load(make_database("binary_copy"), frame(3).iloc[:0]) == []


def test_a_missing_integer_is_an_error_not_a_wrong_value() -> None:
    data = frame(3).astype({"n": "Int64"})
    data.loc[1, "n"] = pd.NA
    with pytest.raises(ValueError, match="column n"):
        list(binary_copy.encode(data, TYPES))


def test_a_type_that_does_not_match_the_column_is_refused_by_the_server(
    make_database: Callable[[str], str],
) -> None:
    wrong = {**TYPES, "n": "int8"}  # the column is int4: 8 bytes where the server reads 4
    with pytest.raises(psycopg.errors.DataError):
        load(make_database("binary_copy"), frame(3), types=wrong)

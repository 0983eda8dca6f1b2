"""The encoding step of a fitted listing pipeline, compiled to array lookups and arithmetic.

Training compiles it (:func:`compile_blocks`) into the version's scoring artifact
(experiments.scoring.artifact); serving reads the blocks back (:func:`blocks_from_data`) and fills
the feature matrix with them from ``ListingFrame``'s derived columns (serving.fast_path). One
:class:`Block` per group of output columns of the fitted ``ColumnTransformer``:

- numeric columns (:class:`Numeric`): ``passthrough``, or the linear encoding's ``log1p`` ->
  median imputation (with missing indicators) -> standard scaling, as constants (medians, means,
  scales);
- text columns (:class:`CategoryTable`): one table per column, built by running the fitted step
  itself (category codes, smoothed means, one-hot, each possibly followed by a scaler) on the
  column's known values, the missing value and an unseen one; a row's block is then one table
  row. This needs each output column to depend on a single input column, which is checked.

Any other shape raises :class:`Unsupported`. Blocks are plain data: JSON for names and flags,
arrays for numbers (:func:`blocks_data`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from experiments.features import (
    DERIVED_COLUMNS,
    HIGH_CARDINALITY,
    LOW_CARDINALITY,
    CategoryCodes,
    SmoothedMeanEncoder,
)

TEXT_COLUMNS = frozenset((*LOW_CARDINALITY, *HIGH_CARDINALITY))
UNSEEN = "\x00unseen"  # no validated listing derives this value (control characters refused)


class Unsupported(Exception):
    """The model is not a pipeline this module knows how to mirror."""


# --- compiled blocks of the encoding step --------------------------------------------------

Columns = dict[str, Any]  # derived column -> values (list or float array)


class Block:
    """Fills some output columns of the feature matrix from the derived columns."""

    positions: np.ndarray  # the output columns it fills

    def fill(self, columns: Columns, out: np.ndarray) -> None:
        raise NotImplementedError


@dataclass
class CategoryTable(Block):
    """One text column -> a row of ``table`` (known values, then None, then unseen)."""

    column: str
    index: dict[Any, int]
    table: np.ndarray  # (len(index) + 1, len(positions)); the last row: unseen values
    positions: np.ndarray  # output columns it fills

    def fill(self, columns: Columns, out: np.ndarray) -> None:
        get, unseen = self.index.get, len(self.index)
        rows = np.fromiter((get(v, unseen) for v in columns[self.column]), np.intp)
        out[:, self.positions] = self.table[rows]


@dataclass
class Numeric(Block):
    """Numeric columns through ``log1p``, imputation, indicators and scaling, as constants."""

    columns: list[str]
    positions: np.ndarray
    log1p: bool = False
    fill_values: np.ndarray | None = None  # imputed value per column
    indicators: np.ndarray | None = None  # columns that get a missing indicator
    mean: np.ndarray | None = None  # of the scaler, over the block's outputs
    scale: np.ndarray | None = None

    def fill(self, columns: Columns, out: np.ndarray) -> None:
        x = np.array([columns[c] for c in self.columns], dtype=np.float64).T
        if self.log1p:
            x = np.log1p(x)
        if self.fill_values is not None:
            missing = np.isnan(x)
            x = np.where(missing, self.fill_values, x)
            if self.indicators is not None:
                x = np.hstack([x, missing[:, self.indicators].astype(np.float64)])
        if self.mean is not None:
            x = x - self.mean
        if self.scale is not None:
            x = x / self.scale
        out[:, self.positions] = x


def _is_passthrough(step: Any) -> bool:
    # Fitted column transformers hold "passthrough" as an identity FunctionTransformer.
    return (isinstance(step, str) and step == "passthrough") or (
        type(step) is FunctionTransformer and step.func is None
    )


def _numeric(columns: list[str], step: Any, positions: np.ndarray) -> Numeric:
    block = Numeric(list(columns), positions)
    steps = [] if _is_passthrough(step) else _steps(step)
    for part in steps:
        if (
            type(part) is FunctionTransformer
            and part.func is np.log1p
            and not part.kw_args
            and not block.log1p
        ):
            block.log1p = True
        elif type(part) is SimpleImputer and block.fill_values is None and block.mean is None:
            if not (isinstance(part.missing_values, float) and math.isnan(part.missing_values)):
                raise Unsupported("an imputer of values other than NaN")
            fill = np.asarray(part.statistics_, dtype=np.float64)
            if np.isnan(fill).any():
                raise Unsupported("an imputer that drops empty columns")
            block.fill_values = fill
            if part.indicator_ is not None:
                if part.indicator_.features != "missing-only":
                    raise Unsupported("a missing indicator over every column")
                block.indicators = np.asarray(part.indicator_.features_, dtype=np.intp)
        elif type(part) is StandardScaler and block.mean is None:
            block.mean = part.mean_ if part.with_mean else None
            block.scale = part.scale_ if part.with_std else None
        else:
            raise Unsupported(f"numeric step {type(part).__name__} of {columns}")
    width = len(columns) + (0 if block.indicators is None else len(block.indicators))
    if width != len(positions):
        raise Unsupported(f"numeric step of {columns}: {len(positions)} outputs, {width} mirrored")
    return block


def _steps(step: Any) -> list[Any]:
    return [s for _, s in step.steps] if type(step) is Pipeline else [step]


_TABLE_STEPS = (CategoryCodes, SmoothedMeanEncoder, OneHotEncoder, StandardScaler)


def _as_float(frame: pd.DataFrame) -> np.ndarray:
    """A step's output as floats; categoricals as their codes, missing (-1) as NaN."""
    parts = []
    for c in frame.columns:
        values = frame[c]
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = values.cat.codes.to_numpy().astype(np.float64)
            parts.append(np.where(codes < 0, np.nan, codes))
        else:
            parts.append(values.to_numpy(dtype=np.float64))
    return np.column_stack(parts)


def _known_values(step: Any, column: str) -> list[Any]:
    """The values a fitted text step tells apart in ``column``."""
    first = _steps(step)[0]
    if type(first) is CategoryCodes:
        return list(first.categories_[column])
    if type(first) is SmoothedMeanEncoder:
        return list(first.means_[column].index)
    if type(first) is OneHotEncoder:
        names = list(first.feature_names_in_)
        return [v for v in first.categories_[names.index(column)] if v is not None]
    raise Unsupported(f"text step {type(first).__name__}")


def _tables(step: Any, columns: list[str], positions: np.ndarray) -> list[CategoryTable]:
    """A table per text column of ``step``, built by running the fitted step on its values."""
    if not all(type(s) in _TABLE_STEPS for s in _steps(step)) or type(_steps(step)[0]) is (
        StandardScaler
    ):
        raise Unsupported(f"text step {type(step).__name__} of {columns}")
    text = [c for c in columns if c in TEXT_COLUMNS]

    def outputs(column: str, values: list[Any]) -> np.ndarray:
        frame = pd.DataFrame(
            {c: values if c == column else [None] * len(values) for c in text}, dtype=object
        )
        for c in columns:
            if c not in TEXT_COLUMNS:
                frame[c] = np.nan
        with warnings.catch_warnings():  # unknown categories are the point here
            warnings.simplefilter("ignore")
            return _as_float(step.transform(frame.loc[:, columns]))

    tables, owner = [], np.full(len(positions), -1)
    for i, column in enumerate(text):
        known = list(dict.fromkeys(_known_values(step, column)))
        values = [*known, None, UNSEEN]
        result = outputs(column, values)
        if result.shape[1] != len(positions):
            raise Unsupported(f"text step of {columns}: {result.shape[1]} outputs")
        moves = ~np.all(np.isclose(result, result[:1], equal_nan=True, rtol=0, atol=0), axis=0)
        if (owner[moves] >= 0).any():
            raise Unsupported(f"text step of {columns}: outputs depend on several columns")
        owner[moves] = i
        tables.append((column, known, result, moves))
    blocks = []
    for i, (column, known, result, _) in enumerate(tables):
        mine = owner == i
        if i == 0:  # outputs no column moves are constant: the first table fills them
            mine |= owner < 0
        if not all(isinstance(value, str) for value in known):  # stored as JSON text
            raise Unsupported(f"text step of {columns}: values of {column} other than text")
        index = {value: n for n, value in enumerate([*known, None])}
        blocks.append(CategoryTable(column, index, result[:, mine], positions[mine]))
    return blocks


def compile_blocks(
    encode: ColumnTransformer, skip: frozenset[str] = frozenset()
) -> tuple[list[Block], int]:
    """The blocks of ``encode``'s steps but those named in ``skip`` (the caller tabulates
    those itself: experiments.scoring.oblivious), and the width of the matrix they fill."""
    blocks: list[Block] = []
    width = 0
    for name, step, columns in encode.transformers_:
        if (isinstance(step, str) and step == "drop") or name in skip:
            continue
        n = len(step.get_feature_names_out()) if not isinstance(step, str) else len(columns)
        positions = np.arange(width, width + n)
        width += n
        unknown = set(columns) - set(DERIVED_COLUMNS)
        if unknown:
            raise Unsupported(f"encoding step {name!r} of unknown columns {sorted(unknown)}")
        if all(c not in TEXT_COLUMNS for c in columns):
            blocks.append(_numeric(list(columns), step, positions))
        else:
            blocks += _tables(step, list(columns), positions)
    if width != len(kept_features(encode, skip)):
        raise Unsupported("the encoding's output columns are not the ones mirrored")
    return blocks, width


def kept_features(encode: ColumnTransformer, skip: frozenset[str] = frozenset()) -> list[str]:
    """``encode``'s output column names but those of the steps named in ``skip``."""
    return [
        str(name)
        for name in encode.get_feature_names_out()
        if str(name).split("__", 1)[0] not in skip
    ]


def vocabulary(blocks: list[Block]) -> dict[str, list[Any]]:
    """Values the fitted encoders know, per derived column (to draw probe listings from)."""
    known: dict[str, set[Any]] = {}
    for block in blocks:
        if isinstance(block, CategoryTable):
            known.setdefault(block.column, set()).update(v for v in block.index if v is not None)
    return {c: sorted(v, key=str) for c, v in known.items() if v}


# --- blocks as data: JSON for what they are, arrays for their numbers ----------------------

_NUMERIC_ARRAYS = ("fill_values", "indicators", "mean", "scale")


def blocks_data(blocks: list[Block]) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """``blocks`` as JSON-ready descriptions and named arrays (see :func:`blocks_from_data`)."""
    described: list[dict[str, Any]] = []
    arrays: dict[str, np.ndarray] = {}
    for i, block in enumerate(blocks):
        prefix = f"block{i}."
        arrays[prefix + "positions"] = np.asarray(block.positions, dtype=np.int64)
        if isinstance(block, CategoryTable):
            known = [value for value in block.index if value is not None]
            described.append({"type": "table", "column": block.column, "values": known})
            arrays[prefix + "table"] = np.asarray(block.table, dtype=np.float64)
        elif isinstance(block, Numeric):
            present = [name for name in _NUMERIC_ARRAYS if getattr(block, name) is not None]
            described.append(
                {
                    "type": "numeric",
                    "columns": block.columns,
                    "log1p": block.log1p,
                    "arrays": present,
                }
            )
            for name in present:
                arrays[prefix + name] = np.asarray(getattr(block, name))
        else:
            raise Unsupported(f"block {type(block).__name__}")
    return described, arrays


def blocks_from_data(described: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> list[Block]:
    """The blocks :func:`blocks_data` described; KeyError or ValueError on anything else."""
    blocks: list[Block] = []
    for i, block in enumerate(described):
        prefix = f"block{i}."
        positions = arrays[prefix + "positions"].astype(np.intp)
        if block["type"] == "table":
            known = [str(value) for value in block["values"]]
            index: dict[Any, int] = {value: n for n, value in enumerate([*known, None])}
            table = arrays[prefix + "table"]
            if table.shape != (len(index) + 1, len(positions)):
                raise ValueError(f"table of {block['column']} of shape {table.shape}")
            blocks.append(CategoryTable(str(block["column"]), index, table, positions))
        elif block["type"] == "numeric":
            numbers = {
                name: arrays[prefix + name] for name in block["arrays"] if name in _NUMERIC_ARRAYS
            }
            if "indicators" in numbers:
                numbers["indicators"] = numbers["indicators"].astype(np.intp)
            columns = [str(c) for c in block["columns"]]
            blocks.append(Numeric(columns, positions, bool(block["log1p"]), **numbers))
        else:
            raise ValueError(f"block type {block['type']!r}")
    return blocks

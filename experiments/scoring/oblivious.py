"""A fitted CatBoost model as data: its symmetric trees over a matrix the artifact's blocks fill.

Why: serving never loads a pickle, nor (to stay small) the CatBoost library. CatBoost's own
formats keep its categorical features as hashes of the text and its target statistics as tables
keyed by those hashes; evaluating them would mean re-implementing the library's hashing in
serving. Instead the library itself is asked, once, at registration, what each value of each
text column does to each split (:func:`compile_catboost`), and the answer is stored as the same
category tables every other family's encoding uses (experiments.scoring.encoding).

How: the family trains with target statistics of one column each (``max_ctr_complexity`` 1,
experiments.families), so a split on a categorical feature depends on one text column only.
For each text column, every value the encoder saw in training, the missing value and an unseen
one are put through the fitted encoding and ``calc_leaf_indexes``; bit ``d`` of a tree's leaf
index is the outcome of its ``d``-th split. A target statistic's splits are thresholds on one
number, so their outcomes are monotone in the threshold: the table stores, per statistic, how
many of its thresholds the value passes, and each split becomes "count > rank". A one-hot split
("the value is v") becomes an indicator column. Float splits stay float splits (``x > border``
in float32; a missing value goes where the feature's ``nan_value_treatment`` says).

The trees are stored as arrays (``oblivious.*``): per tree its depth, per split its matrix
column, threshold and where a missing value goes, per leaf its value and training weight.
:func:`expanded` turns them into ordinary binary trees (serving.tree_walk walks them,
experiments.explain explains them).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer

from experiments.features import CATBOOST_TEXT, DERIVED_COLUMNS, CategoryText
from experiments.scoring.encoding import (
    TEXT_COLUMNS,
    UNSEEN,
    Block,
    CategoryTable,
    Unsupported,
    compile_blocks,
    kept_features,
)

SKIP = frozenset({CATBOOST_TEXT})
CHUNK_ROWS = 4096  # values per calc_leaf_indexes call: leaf indexes are rows x trees


@dataclass(frozen=True)
class _Binary:
    """One of the model's binary features (CatBoost numbers them by ``split_index``)."""

    kind: str  # "float", "onehot" or "ctr"
    flat: int  # the input column (flat feature index)
    border: float = 0.0  # float and ctr: the split is value > border
    nan_right: bool = False  # float: a missing value passes the split
    statistic: int = -1  # ctr: which target statistic


def _binary_features(model: dict[str, Any]) -> list[_Binary]:
    """Every binary feature in CatBoost's order: float borders, one-hot values, then the target
    statistics' borders."""
    info = model["features_info"]
    out: list[_Binary] = []
    for feature in info.get("float_features", []):
        nan_right = feature.get("nan_value_treatment") == "AsTrue"
        flat = int(feature["flat_feature_index"])
        out += [_Binary("float", flat, float(b), nan_right) for b in feature.get("borders", [])]
    categorical = info.get("categorical_features", [])
    for feature in categorical:
        out += [_Binary("onehot", int(feature["flat_feature_index"]))] * len(
            feature.get("values", [])
        )
    for k, ctr in enumerate(info.get("ctrs", [])):
        elements = ctr["elements"]
        if len(elements) != 1 or elements[0]["combination_element"] != "cat_feature_value":
            raise Unsupported("a CatBoost statistic of several features (max_ctr_complexity > 1)")
        flat = int(categorical[int(elements[0]["cat_feature_index"])]["flat_feature_index"])
        out += [_Binary("ctr", flat, float(b), statistic=k) for b in ctr["borders"]]
    return out


def _model_json(estimator: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.json"
        estimator.save_model(str(path), format="json")
        return dict(json.loads(path.read_text()))


def _used_splits(model: dict[str, Any], binary: list[_Binary]) -> dict[int, tuple[int, int]]:
    """split_index -> its first (tree, depth); checks each split against the feature list."""
    first: dict[int, tuple[int, int]] = {}
    for t, tree in enumerate(model["oblivious_trees"]):
        for d, split in enumerate(tree["splits"]):
            index = int(split["split_index"])
            kind = {"FloatFeature": "float", "OneHotFeature": "onehot", "OnlineCtr": "ctr"}.get(
                split["split_type"]
            )
            feature = binary[index] if 0 <= index < len(binary) else None
            if kind is None or feature is None or feature.kind != kind:
                raise Unsupported(f"CatBoost split {split} not in the model's feature list")
            if "border" in split and not np.isclose(feature.border, split["border"]):
                raise Unsupported(f"CatBoost split {split}: border {feature.border} expected")
            first.setdefault(index, (t, d))
    return first


def _bits(encode: ColumnTransformer, estimator: Any, column: str, values: list[Any]) -> np.ndarray:
    """Leaf indexes (values x trees) of listings that differ only in text ``column``, every
    other column missing."""
    chunks = []
    for start in range(0, len(values), CHUNK_ROWS):
        part = values[start : start + CHUNK_ROWS]
        frame = pd.DataFrame(
            {
                c: pd.Series(part if c == column else [None] * len(part), dtype=object)
                if c in TEXT_COLUMNS
                else np.full(len(part), np.nan)
                for c in DERIVED_COLUMNS
            }
        )
        chunks.append(np.asarray(estimator.calc_leaf_indexes(encode.transform(frame))))
    return np.vstack(chunks).astype(np.int64)  # unsigned: differences would wrap


def compile_catboost(
    encode: ColumnTransformer, estimator: Any
) -> tuple[list[Block], int, list[str], dict[str, np.ndarray]]:
    """Blocks, width, feature names and ``oblivious.*`` arrays of a fitted CatBoost pipeline."""
    text = encode.named_transformers_.get(CATBOOST_TEXT)
    if type(text) is not CategoryText:
        raise Unsupported("a CatBoost pipeline without its CategoryText step")
    blocks, _ = compile_blocks(encode, SKIP)
    features = kept_features(encode, SKIP)
    inputs = [str(name) for name in encode.get_feature_names_out()]
    if list(estimator.feature_names_) != inputs:
        raise Unsupported("CatBoost was fitted on other columns than the encoding's")
    model = _model_json(estimator)
    binary = _binary_features(model)
    first = _used_splits(model, binary)
    column_of: dict[int, int] = {}  # split_index -> matrix column
    threshold: dict[int, float] = {}
    for index, feature in enumerate(binary):
        if index in first and feature.kind == "float":
            column_of[index] = features.index(inputs[feature.flat])
            threshold[index] = float(np.float32(feature.border))
    for flat in sorted({binary[i].flat for i in first if binary[i].kind != "float"}):
        column = inputs[flat].split("__", 1)[1]
        known = list(text.categories_[column])
        leaves = _bits(encode, estimator, column, [*known, None, UNSEEN])
        outputs: list[np.ndarray] = []
        groups: dict[tuple[str, int], list[int]] = {}
        for i in sorted(first):
            if binary[i].flat == flat and binary[i].kind != "float":
                key = ("ctr", binary[i].statistic) if binary[i].kind == "ctr" else ("onehot", i)
                groups.setdefault(key, []).append(i)
        for members in groups.values():
            members.sort(key=lambda i: binary[i].border)
            passed = np.column_stack([(leaves[:, first[i][0]] >> first[i][1]) & 1 for i in members])
            if (np.diff(passed, axis=1) > 0).any():  # passes a higher border, not a lower one
                raise Unsupported(f"CatBoost statistic of {column} not monotone in its borders")
            for rank, i in enumerate(members):
                column_of[i], threshold[i] = len(features), rank + 0.5  # passes > rank
            outputs.append(passed.sum(axis=1).astype(np.float64))
            features.append(f"{CATBOOST_TEXT}__{column}_{len(outputs) - 1}")
        positions = np.arange(len(features) - len(outputs), len(features))
        rows = {value: n for n, value in enumerate([*known, None])}
        blocks.append(CategoryTable(column, rows, np.column_stack(outputs), positions))
    return blocks, len(features), features, _tree_arrays(model, binary, column_of, threshold)


def _tree_arrays(
    model: dict[str, Any],
    binary: list[_Binary],
    column_of: dict[int, int],
    threshold: dict[int, float],
) -> dict[str, np.ndarray]:
    trees = model["oblivious_trees"]
    splits = [int(s["split_index"]) for tree in trees for s in tree["splits"]]
    scale, bias = model["scale_and_bias"]
    if len(bias) != 1:
        raise Unsupported("a CatBoost model of several outputs")
    return {
        "oblivious.depth": np.asarray([len(tree["splits"]) for tree in trees], dtype=np.int64),
        "oblivious.feature": np.asarray([column_of[i] for i in splits], dtype=np.int64),
        "oblivious.threshold": np.asarray([threshold[i] for i in splits], dtype=np.float64),
        "oblivious.nan_right": np.asarray([binary[i].nan_right for i in splits], dtype=np.bool_),
        "oblivious.leaf_values": np.concatenate(
            [np.asarray(tree["leaf_values"], dtype=np.float64) * float(scale) for tree in trees]
        ),
        "oblivious.leaf_weights": np.concatenate(
            [np.asarray(tree["leaf_weights"], dtype=np.float64) for tree in trees]
        ),
        "oblivious.bias": np.asarray(float(bias[0])),
    }


def check_trees(arrays: dict[str, np.ndarray], width: int) -> None:
    """ValueError unless the ``oblivious.*`` arrays describe trees over ``width`` columns."""
    depth = arrays["oblivious.depth"]
    splits = int(depth.sum())
    leaves = int((1 << depth.astype(np.int64)).sum())
    sizes = {
        "oblivious.feature": splits,
        "oblivious.threshold": splits,
        "oblivious.nan_right": splits,
        "oblivious.leaf_values": leaves,
        "oblivious.leaf_weights": leaves,
    }
    for name, size in sizes.items():
        if arrays[name].shape != (size,):
            raise ValueError(f"{name} of shape {arrays[name].shape}, not ({size},)")
    if ((depth < 0) | (depth > 16)).any():
        raise ValueError("oblivious.depth: a symmetric tree deeper than 16 levels")
    feature = arrays["oblivious.feature"]
    if len(feature) and (feature.min() < 0 or feature.max() >= width):
        raise ValueError(f"oblivious.feature: a split on a column outside the matrix ({width})")
    if arrays["oblivious.bias"].shape != ():
        raise ValueError("oblivious.bias is not one number")


@dataclass(frozen=True)
class BinaryTree:
    """One symmetric tree as an ordinary binary tree: node 0 the root, -1 a leaf's children;
    a row goes right when ``x > threshold`` (a missing value: right where ``nan_right``)."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    nan_right: np.ndarray
    value: np.ndarray  # a leaf's value (0 at inner nodes)
    weight: np.ndarray  # training weight under each node


def expanded(arrays: dict[str, np.ndarray], min_weight: float = 0.0) -> Iterator[BinaryTree]:
    """The artifact's symmetric trees as binary trees, in order, each in heap order (node i's
    children are 2i + 1 and 2i + 2). Level ``d`` splits on the tree's ``d``-th split, which sets
    bit ``d`` of CatBoost's leaf index: the leaf reached by the choices (c_0, ..., c_{D-1}) from
    the root is leaf sum(c_d << d). A leaf's weight is at least ``min_weight``."""
    depths = arrays["oblivious.depth"].astype(np.intp)
    split_starts = np.cumsum([0, *depths[:-1]])
    leaf_starts = np.cumsum([0, *(1 << depths[:-1])])
    for depth, s0, l0 in zip(depths.tolist(), split_starts, leaf_starts, strict=True):
        inner, leaves = (1 << depth) - 1, 1 << depth
        node = np.arange(inner + leaves)
        level = np.floor(np.log2(node + 1)).astype(np.intp)[:inner]
        # Heap position k of a leaf lists its choices from the root, most significant first.
        k = np.arange(leaves)
        catboost_leaf = np.zeros(leaves, dtype=np.intp)
        for d in range(depth):
            catboost_leaf |= ((k >> (depth - 1 - d)) & 1) << d
        weight = np.zeros(inner + leaves)
        value = np.zeros(inner + leaves)
        value[inner:] = arrays["oblivious.leaf_values"][l0 : l0 + leaves][catboost_leaf]
        weight[inner:] = np.maximum(
            arrays["oblivious.leaf_weights"][l0 : l0 + leaves][catboost_leaf], min_weight
        )
        for i in range(inner - 1, -1, -1):  # children first
            weight[i] = weight[2 * i + 1] + weight[2 * i + 2]
        children = np.where(node < inner, 2 * node + 1, -1)
        yield BinaryTree(
            left=children.astype(np.intp),
            right=np.where(node < inner, 2 * node + 2, -1).astype(np.intp),
            feature=np.concatenate(
                [arrays["oblivious.feature"][s0 : s0 + depth][level], np.zeros(leaves)]
            ).astype(np.intp),
            threshold=np.concatenate(
                [arrays["oblivious.threshold"][s0 : s0 + depth][level], np.zeros(leaves)]
            ),
            nan_right=np.concatenate(
                [arrays["oblivious.nan_right"][s0 : s0 + depth][level], np.zeros(leaves)]
            ).astype(np.bool_),
            value=value,
            weight=weight,
        )

"""Tree ensembles as flat arrays, walked by one compiled loop: small requests without the
libraries' per-call cost.

Why: pricing one listing, XGBoost's ``inplace_predict`` spends about 0.5 ms and a random
forest's per-tree ``apply`` calls 0.5 ms on this hardware, almost all of it per call rather than
per tree: the descent itself is a few hundred comparisons. Walking every tree in one compiled
loop (numba, also what shap needs) costs 20-35 us for a row, so single-listing requests of the
tree families cost about what ridge's do. Large batches keep each library's own predict, which
is 1.3-2.5x cheaper per row at 1,000 rows (docs/benchmarks.md).

What: :func:`flatten` reads a version's trees from its scoring artifact (experiments.scoring.
artifact: the boosters in their own format, a forest as scikit-learn's node arrays) into
:class:`Trees` (one array per node attribute, every tree's nodes end to end) with the library's
own split rules: scikit-learn sends ``x <= t`` left, XGBoost ``x < t`` (both on float32 input),
LightGBM ``x <= t`` on doubles, with its missing-value types; categorical splits (XGBoost's "in
the set goes right", LightGBM's "in the set goes left") as one row of a table per split. Leaf
values are summed in tree order as each library does (XGBoost in float32 from its base score).
CatBoost's symmetric trees are expanded to binary trees (``x > border`` goes right, on float32
input; its categorical splits are already numbers, experiments.scoring.oblivious). A forest and
CatBoost are always walked (serving has no library object to ask); a booster's walk is used only
after it matched the booster's own predictions on the version's probe rows
(``serving.fast_path``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.scoring.artifact import Artifact
from experiments.scoring.oblivious import expanded

LEAF, LESS_EQUAL, LESS, CATEGORY = 0, 1, 2, 3  # a node's kind
ZERO = 1e-35  # LightGBM's kZeroThreshold: |x| at most this is "zero"


class NotWalkable(Exception):
    """An estimator whose trees this module does not read."""


@dataclass(frozen=True)
class Trees:
    """Every tree's nodes end to end; ``left``/``right`` are indices into the same arrays."""

    roots: np.ndarray  # intp, one per tree
    kind: np.ndarray  # int8: LEAF, LESS_EQUAL, LESS, CATEGORY
    feature: np.ndarray  # intp
    threshold: np.ndarray  # float64
    left: np.ndarray  # intp
    right: np.ndarray  # intp
    missing_left: np.ndarray  # bool: where a NaN goes (unless nan_as_zero)
    nan_as_zero: np.ndarray  # bool: LightGBM's missing type "None"/"Zero": NaN reads as 0
    zero_missing: np.ndarray  # bool: LightGBM's missing type "Zero": 0 goes where NaN would
    category_row: np.ndarray  # intp: the row of ``goes_left`` of a CATEGORY node
    goes_left: np.ndarray  # bool (splits, codes + 1): the last column for codes out of range
    value: np.ndarray  # float64: a leaf's value
    start: float  # what the sum starts from (XGBoost's base score)
    float32_sum: bool  # XGBoost adds leaves in float32
    float32_input: bool  # scikit-learn and XGBoost read features as float32
    mean: bool  # a forest averages its trees

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(matrix, dtype=np.float64)
        if self.float32_input:
            x = x.astype(np.float32).astype(np.float64)
        total = _walk()(
            x,
            self.roots,
            self.kind,
            self.feature,
            self.threshold,
            self.left,
            self.right,
            self.missing_left,
            self.nan_as_zero,
            self.zero_missing,
            self.category_row,
            self.goes_left,
            self.value,
            self.start,
            self.float32_sum,
        )
        if self.float32_sum:  # XGBoost answers in float32: the prices are then made from those
            return total.astype(np.float32)
        return total / len(self.roots) if self.mean else total


# Per node attribute of ``Trees``: its array type and the value a node without it has.
_NODE_FIELDS: dict[str, tuple[type, Any]] = {
    "kind": (np.int8, LEAF),
    "feature": (np.intp, 0),
    "threshold": (np.float64, 0.0),
    "left": (np.intp, -1),
    "right": (np.intp, -1),
    "missing_left": (np.bool_, False),
    "nan_as_zero": (np.bool_, False),
    "zero_missing": (np.bool_, False),
    "category_row": (np.intp, -1),
    "value": (np.float64, 0.0),
}


def _trees(
    roots: Any,
    nodes: dict[str, Any],
    goes_left: np.ndarray,
    start: float = 0.0,
    *,
    float32_sum: bool,
    float32_input: bool,
    mean: bool,
) -> Trees:
    """``Trees`` from per-node values (lists or arrays); attributes not given take their
    default."""
    n = len(nodes["kind"])
    arrays: dict[str, Any] = {
        name: np.asarray(nodes[name], dtype=dtype) if name in nodes else np.full(n, default, dtype)
        for name, (dtype, default) in _NODE_FIELDS.items()
    }
    return Trees(
        roots=np.asarray(roots, dtype=np.intp),
        goes_left=goes_left,
        start=start,
        float32_sum=float32_sum,
        float32_input=float32_input,
        mean=mean,
        **arrays,
    )


class _Builder:
    """Nodes appended tree by tree, as lists, then made arrays."""

    def __init__(self) -> None:
        self.columns: dict[str, list[Any]] = {name: [] for name in _NODE_FIELDS}
        self.roots: list[int] = []
        self.category_sets: list[tuple[set[int], bool]] = []  # (codes listed, listed go left)

    @property
    def size(self) -> int:
        return len(self.columns["kind"])

    def node(self, **values: Any) -> None:
        if not values.keys() <= _NODE_FIELDS.keys():
            raise KeyError(f"unknown node fields {sorted(values.keys() - _NODE_FIELDS.keys())}")
        for name, (_, default) in _NODE_FIELDS.items():
            self.columns[name].append(values.get(name, default))

    def category(self, codes: set[int], listed_left: bool) -> int:
        """A categorical split: ``codes`` go left (``listed_left``) or right, the others (any
        code, NaN aside) the other way."""
        self.category_sets.append((codes, listed_left))
        return len(self.category_sets) - 1

    def build(self, start: float, *, float32_sum: bool, float32_input: bool, mean: bool) -> Trees:
        if not self.roots:
            raise NotWalkable("no trees")
        width = 1 + max((max(s, default=-1) for s, _ in self.category_sets), default=-1)
        goes_left = np.zeros((max(1, len(self.category_sets)), width + 1), dtype=np.bool_)
        for row, (codes, listed_left) in enumerate(self.category_sets):
            goes_left[row, :] = not listed_left
            goes_left[row, sorted(codes)] = listed_left
        return _trees(
            self.roots,
            self.columns,
            goes_left,
            start,
            float32_sum=float32_sum,
            float32_input=float32_input,
            mean=mean,
        )


def _sklearn_forest(arrays: dict[str, np.ndarray]) -> Trees:
    """From the artifact's node arrays, array by array (a forest has ~10^5 nodes). A leaf's
    children (-1) are never read."""
    sizes = arrays["forest.node_count"].astype(np.intp)
    roots = np.cumsum([0, *sizes[:-1]])
    first = np.repeat(roots, sizes)  # each node's tree's first index
    left, right = arrays["forest.children_left"], arrays["forest.children_right"]
    leaf = left < 0
    nodes = {
        "kind": np.where(leaf, LEAF, LESS_EQUAL),
        "feature": np.where(leaf, 0, arrays["forest.feature"]),
        "threshold": arrays["forest.threshold"],
        "left": left + first,
        "right": right + first,
        "missing_left": arrays["forest.missing_go_to_left"],
        "value": arrays["forest.value"],
    }
    no_categories = np.zeros((1, 1), dtype=np.bool_)
    return _trees(roots, nodes, no_categories, float32_sum=False, float32_input=True, mean=True)


def _xgboost(booster: Any) -> Trees:
    """Every tree of the booster (the artifact holds only the trees its predict uses)."""
    model = json.loads(booster.save_raw("json"))["learner"]
    if model["objective"]["name"] not in ("reg:squarederror", "reg:absoluteerror"):
        raise NotWalkable(f"XGBoost objective {model['objective']['name']}")
    gbm = model["gradient_booster"]
    if gbm["name"] != "gbtree" or int(model["learner_model_param"]["num_target"]) != 1:
        raise NotWalkable("XGBoost booster other than one-target gbtree")
    trees = gbm["model"]["trees"]
    start = float(str(model["learner_model_param"]["base_score"]).strip("[]"))
    b = _Builder()
    for tree in trees:
        offset = b.size
        b.roots.append(offset)
        categories = dict(
            zip(
                tree["categories_nodes"],
                zip(tree["categories_segments"], tree["categories_sizes"], strict=True),
                strict=True,
            )
        )
        for n, (left, right) in enumerate(
            zip(tree["left_children"], tree["right_children"], strict=True)
        ):
            if left < 0:
                b.node(kind=LEAF, value=float(np.float32(tree["split_conditions"][n])))
                continue
            node = {
                "feature": int(tree["split_indices"][n]),
                "left": offset + left,
                "right": offset + right,
                "missing_left": bool(tree["default_left"][n]),
            }
            if tree["split_type"][n] == 1:  # the listed codes go right, the others left
                segment, size = categories[n]
                row = b.category(set(tree["categories"][segment : segment + size]), False)
                b.node(kind=CATEGORY, category_row=row, **node)
            else:
                threshold = float(np.float32(tree["split_conditions"][n]))
                b.node(kind=LESS, threshold=threshold, **node)
    return b.build(start, float32_sum=True, float32_input=True, mean=False)


def _lightgbm(booster: Any) -> Trees:
    dumped = booster.dump_model()  # the trees predict uses (its best iteration, if any)
    if dumped.get("num_class", 1) != 1 or dumped.get("objective", "").split()[0] not in (
        "regression",
        "regression_l1",
        "huber",
    ):
        raise NotWalkable(f"LightGBM objective {dumped.get('objective')}")
    b = _Builder()

    def add(node: dict[str, Any]) -> int:
        index = b.size
        if "leaf_value" in node or "split_feature" not in node:
            b.node(kind=LEAF, value=float(node.get("leaf_value", 0.0)))
            return index
        b.node(kind=LEAF)  # its place; filled in once the children have theirs
        left, right = add(node["left_child"]), add(node["right_child"])
        missing = node["missing_type"]
        fields: dict[str, Any] = {
            "feature": int(node["split_feature"]),
            "left": left,
            "right": right,
            "missing_left": bool(node["default_left"]),
        }
        if node["decision_type"] == "==":  # the listed codes go left; NaN and others right
            codes = {int(c) for c in str(node["threshold"]).split("||")}
            fields.update(kind=CATEGORY, category_row=b.category(codes, True), missing_left=False)
        elif node["decision_type"] == "<=":
            fields.update(
                kind=LESS_EQUAL,
                threshold=float(node["threshold"]),
                nan_as_zero=missing != "NaN",
                zero_missing=missing == "Zero",
            )
        else:
            raise NotWalkable(f"LightGBM decision {node['decision_type']}")
        for name, value in fields.items():
            b.columns[name][index] = value
        return index

    for tree in dumped["tree_info"]:
        b.roots.append(add(tree["tree_structure"]))
    return b.build(0.0, float32_sum=False, float32_input=False, mean=False)


def _catboost(arrays: dict[str, np.ndarray]) -> Trees:
    """CatBoost's symmetric trees, expanded to binary trees (experiments.scoring.oblivious): a
    row goes right when ``x > border`` on float32 input, so left is LESS_EQUAL."""
    roots, parts = [], []
    size = 0
    for tree in expanded(arrays):
        inner = tree.left >= 0
        roots.append(size)
        parts.append(
            {
                "kind": np.where(inner, LESS_EQUAL, LEAF),
                "feature": tree.feature,
                "threshold": tree.threshold,
                "left": np.where(inner, tree.left + size, -1),
                "right": np.where(inner, tree.right + size, -1),
                "missing_left": ~tree.nan_right,
                "value": tree.value,
            }
        )
        size += len(tree.left)
    if not roots:
        raise NotWalkable("no trees")
    nodes = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    no_categories = np.zeros((1, 1), dtype=np.bool_)
    start = float(arrays["oblivious.bias"])
    return _trees(
        roots, nodes, no_categories, start, float32_sum=False, float32_input=True, mean=False
    )


def flatten(artifact: Artifact) -> Trees:
    """The artifact's trees, walkable; NotWalkable for a family without trees or a format this
    module does not read."""
    try:
        if artifact.family == "random_forest":
            return _sklearn_forest(artifact.arrays)
        if artifact.family == "xgboost":
            return _xgboost(artifact.booster)
        if artifact.family == "lightgbm":
            return _lightgbm(artifact.booster)
        if artifact.family == "catboost":
            return _catboost(artifact.arrays)
    except (KeyError, ValueError, TypeError) as exc:  # a format this module does not know
        raise NotWalkable(
            f"{artifact.family} trees unreadable ({type(exc).__name__}: {exc})"
        ) from exc
    raise NotWalkable(f"{artifact.family} has no trees")


_compiled: Callable[..., np.ndarray] | None = None


def _walk() -> Callable[..., np.ndarray]:
    """The compiled walk, made on first use, while a version loads (off the request path):
    numba's import and a compilation of a few seconds, or its cached machine code where numba
    finds a writable cache folder (next to this file, else the user's)."""
    global _compiled
    if _compiled is None:
        import numba

        try:
            _compiled = numba.njit(nogil=True, cache=True)(_walk_rows)
        except RuntimeError:  # no writable cache folder: compiled in memory, every start
            _compiled = numba.njit(nogil=True)(_walk_rows)
    return _compiled


def _walk_rows(
    x: np.ndarray,
    roots: np.ndarray,
    kind: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    missing_left: np.ndarray,
    nan_as_zero: np.ndarray,
    zero_missing: np.ndarray,
    category_row: np.ndarray,
    goes_left: np.ndarray,
    value: np.ndarray,
    start: float,
    float32_sum: bool,
) -> np.ndarray:
    """Per row, the sum of every tree's leaf value (compiled by numba, see ``_walk``)."""
    out = np.empty(x.shape[0], dtype=np.float64)
    outside = goes_left.shape[1] - 1
    for i in range(x.shape[0]):
        total = np.float32(start) if float32_sum else start
        for root in roots:
            node = root
            while kind[node] != LEAF:
                v = x[i, feature[node]]
                if np.isnan(v) and nan_as_zero[node]:
                    v = 0.0
                if np.isnan(v) or (zero_missing[node] and abs(v) <= ZERO):
                    go_left = missing_left[node]
                elif kind[node] == CATEGORY:
                    code = int(v) if 0.0 <= v < outside else outside
                    go_left = goes_left[category_row[node], code]
                elif kind[node] == LESS:
                    go_left = v < threshold[node]
                else:
                    go_left = v <= threshold[node]
                node = left[node] if go_left else right[node]
            if float32_sum:
                total = np.float32(total + np.float32(value[node]))
            else:
                total += value[node]
        out[i] = total
    return out

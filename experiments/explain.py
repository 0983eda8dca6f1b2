"""SHAP explanations: per row, per model, and what changed between two models.

Contributions are computed on the encoded features the estimator sees, in log-price units
because the estimator predicts log(price): a contribution of +0.1 means "about 10% dearer".

**The reference every explanation is relative to** (SHAP's base value) is the model's expected
log price over its *training* rows, never over the rows being explained:

- linear family: ``LinearExplainer`` against the version's **background sample**, training rows
  drawn at registration (:func:`background_rows`) and stored with the version (experiments.
  registry). Explaining a row against itself, as this module once did, gives a base equal to
  the prediction and every contribution 0.
- tree families: ``TreeExplainer`` in its path-dependent mode, whose reference is the training
  distribution the trees recorded (each node's share of training rows), exact unless a forest is
  too large for it (see ``EXACT_BUDGET``). An explicit background ("interventional" mode) is not
  an option here: shap 0.51 refuses it for models with categorical splits (our boosters split
  natively on state, status and zip3), and on a 100-tree forest it took 0.23 s per row and did
  not add up (errors of 0.09 in log price, with missing values), measured on the 5k sample.

Either way the base value does not depend on the input, and base plus contributions equals the
model's log prediction (tests/experiments/test_explain.py, per family of ``search_spaces/``).
Serving, which never loads the pickled model, explains with :func:`artifact_explainer`: the same
explainers on the version's scoring artifact (the native booster, a forest's node arrays, a
ridge's coefficients and its encoded background). CatBoost is explained on its artifact
everywhere, in training too: its symmetric trees there split on numbers only (the category
tables of experiments.scoring.oblivious), path-dependent against its leaves' training weights.

Contributions are then summed per raw input column (``experiments.features.feature_source``):
sums of SHAP values stay exact, and grouping makes models of different families, whose encodings
differ, comparable column by column. ``street`` has no feature, hence no contribution.

Checked on the pinned versions (xgboost 3.2 with native categorical splits, lightgbm 4.7,
sklearn forests with missing values): base value plus contributions equals the model's log
prediction (tests/experiments/test_explain.py).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import shap
from mlflow.pyfunc import PyFuncModel
from sklearn.compose import TransformedTargetRegressor

from experiments.features import feature_source
from experiments.inputs import model_input
from experiments.scoring.artifact import (
    FOREST_NODES,
    Artifact,
    encoded,
    estimator_kind,
    of_model,
)
from experiments.scoring.oblivious import expanded
from tasador.core import timings
from tasador.core.sampling import at_most

BASE_VALUE = "base_value"
CATBOOST = ("catboost.core.CatBoostRegressor",)
BACKGROUND_ROWS = 200  # training rows stored with a version: LinearExplainer only needs means


def _sklearn_model(model: Any) -> TransformedTargetRegressor:
    if isinstance(model, PyFuncModel):
        model = model.get_raw_model()
    if not isinstance(model, TransformedTargetRegressor):
        raise TypeError(f"expected one of our registered models, got {type(model).__name__}")
    return model


# Exact TreeSHAP costs about leaves x depth^2 per tree and row. The boosters' trees are shallow
# and computed natively, but a random forest grown to purity on 100k rows has trees of thousands
# of leaves 30+ deep: 500 rows took many minutes. Past this budget (about a second of CPU), forests
# get Saabas attributions (``approximate=True``): per-path, far cheaper, and still additive (base
# value plus contributions equals the prediction), which is what the UI and the diff rely on.
EXACT_BUDGET = 2e9


def exact_cost(leaves: Sequence[int], depths: Sequence[int]) -> float:
    """Exact TreeSHAP's cost of one row through trees of these leaf counts and depths."""
    return float(sum(int(n) * int(d) ** 2 for n, d in zip(leaves, depths, strict=True)))


def _exact_cost(estimator: Any) -> float:
    trees = getattr(estimator, "estimators_", None)
    if trees is None:  # XGBoost / LightGBM: shallow trees, native SHAP
        return 0.0
    return exact_cost([t.tree_.n_leaves for t in trees], [t.tree_.max_depth for t in trees])


RowExplainer = Callable[[pd.DataFrame], pd.DataFrame]


class NoBackground(ValueError):
    """A model that needs its background sample to be explained was given none."""


NO_BACKGROUND = (
    "a linear model is explained against training rows stored with its version (its SHAP "
    "background), and none was found"
)


def background_rows(training: pd.DataFrame, seed: int, rows: int = BACKGROUND_ROWS) -> pd.DataFrame:
    """The background sample of a version: up to ``rows`` training rows, drawn reproducibly,
    as the model's input columns (no target, no batch ids)."""
    drawn = at_most(training, rows, seed, keep_order=True)
    return model_input(drawn).reset_index(drop=True)


def needs_background(model: Any) -> bool:
    """Whether :func:`row_explainer` needs the version's background sample (linear models)."""
    return hasattr(_sklearn_model(model).regressor_[-1], "coef_")


def row_explainer(model: Any, background: pd.DataFrame | None) -> RowExplainer:
    """:func:`explain_rows` for one model, its SHAP explainer built once.

    Serving explains one listing per request: building the explainer each time would cost more
    than the explanation. ``background``: the version's background sample (training rows, see
    :func:`background_rows`); required for linear models, raises :class:`NoBackground` without.
    """
    fitted = _sklearn_model(model)
    pipeline = fitted.regressor_
    encode, estimator = pipeline[:-1], pipeline[-1]
    if estimator_kind(estimator) in CATBOOST:  # its text columns are numbers only there
        scoring = of_model(fitted)
        explain_matrix = artifact_explainer(scoring)
        return lambda frame: explain_matrix(encoded(scoring, frame)).set_axis(frame.index)
    explainer: Any
    if hasattr(estimator, "coef_"):
        if background is None or background.empty:
            raise NoBackground(NO_BACKGROUND)
        reference = encode.transform(model_input(background)).astype("float64")
        explainer = shap.LinearExplainer(estimator, reference)
        tree = False
    else:
        explainer = shap.TreeExplainer(estimator)  # path-dependent: see the module doc
        tree = True
    cost = _exact_cost(estimator)

    def explain(frame: pd.DataFrame) -> pd.DataFrame:
        features = encode.transform(model_input(frame))
        if tree:
            approximate = cost * len(features) > EXACT_BUDGET
            values = explainer.shap_values(
                features, check_additivity=False, approximate=approximate
            )
        else:
            values = explainer.shap_values(features.astype("float64"))
        return per_field(values, explainer, list(features.columns), frame.index)

    return explain


def per_field(values: Any, explainer: Any, features: list[str], index: Any) -> pd.DataFrame:
    """SHAP ``values`` (rows x encoded ``features``) summed per raw input column, after
    ``base_value``: the explainer's expected value."""
    # Read after shap_values: for boosters with categorical splits shap replaces its estimate
    # from node covers by the booster's own bias term then (measured: 0.004 apart).
    base = float(np.ravel(explainer.expected_value)[0])
    encoded = pd.DataFrame(np.asarray(values), index=index, columns=features)
    grouped = encoded.T.groupby(feature_source, sort=False).sum().T
    grouped.insert(0, BASE_VALUE, base)
    return grouped


MatrixExplainer = Callable[[np.ndarray], pd.DataFrame]


def _forest(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """A forest's node arrays (experiments.scoring.artifact) as SHAP's tree dictionary, made as
    SHAP makes it from the scikit-learn trees (the mean of the trees; float32 input)."""
    sizes = arrays["forest.node_count"]
    starts = np.cumsum([0, *sizes[:-1]])
    trees = []
    for start, size in zip(starts, sizes, strict=True):
        part = {name: arrays[f"forest.{name}"][start : start + size] for name in FOREST_NODES}
        left, right = part["children_left"], part["children_right"]
        trees.append(
            {
                "children_left": left,
                "children_right": right,
                "children_default": np.where(part["missing_go_to_left"] != 0, left, right),
                "features": part["feature"],
                "thresholds": part["threshold"].astype(np.float64),
                "values": arrays["forest.value"][start : start + size].reshape(-1, 1) / len(sizes),
                "node_sample_weight": part["weighted_n_node_samples"].astype(np.float64),
            }
        )
    return {"trees": trees, "input_dtype": np.float32, "tree_output": "raw_value"}


def _symmetric(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """CatBoost's symmetric trees (experiments.scoring.oblivious) as SHAP's tree dictionary:
    path-dependent TreeSHAP against the training rows' weights in each leaf. A leaf no
    training row reached gets a weight of 1e-9 of a row: SHAP divides by a node's weight, and
    its share of the reference is then nil."""
    trees = []
    for tree in expanded(arrays, min_weight=1e-9):
        trees.append(
            {
                "children_left": tree.left,
                "children_right": tree.right,
                "children_default": np.where(tree.nan_right, tree.right, tree.left),
                "features": tree.feature,
                "thresholds": tree.threshold,
                "values": tree.value.reshape(-1, 1),
                "node_sample_weight": tree.weight,
            }
        )
    return {
        "trees": trees,
        "base_offset": float(arrays["oblivious.bias"]),
        "input_dtype": np.float32,
        "tree_output": "raw_value",
    }


def _forest_cost(arrays: dict[str, np.ndarray]) -> float:
    """:func:`exact_cost` of a forest's node arrays."""
    sizes = arrays["forest.node_count"]
    starts = np.cumsum([0, *sizes[:-1]])
    leaves = np.add.reduceat((arrays["forest.children_left"] < 0).astype(np.int64), starts)
    return exact_cost(leaves.tolist(), arrays["forest.max_depth"].tolist())


def artifact_explainer(scoring: Artifact) -> MatrixExplainer:
    """:func:`row_explainer` for a scoring artifact (serving: no pickled model): encoded
    feature matrices in, contributions per raw input column out. The same explainers on the
    same trees and coefficients: the native boosters, a forest's node arrays, a ridge's
    coefficients against its stored, encoded background."""
    family, arrays = scoring.family, scoring.arrays
    if family == "ridge":
        if scoring.background is None or not len(scoring.background):
            raise NoBackground(NO_BACKGROUND)
        coef = (arrays["coef"], float(arrays["intercept"]))
        explainer: Any = shap.LinearExplainer(coef, scoring.background)
    elif family == "random_forest":
        explainer = shap.TreeExplainer(_forest(arrays))
    elif family == "catboost":
        explainer = shap.TreeExplainer(_symmetric(arrays))
    else:
        explainer = shap.TreeExplainer(scoring.booster)  # path-dependent: see the module doc
    cost = _forest_cost(arrays) if family == "random_forest" else 0.0

    def explain(matrix: np.ndarray) -> pd.DataFrame:
        data: Any = matrix
        if family == "xgboost":  # its categorical features are told apart by their types
            import xgboost

            types = scoring.booster.feature_types
            data = xgboost.DMatrix(matrix, feature_types=types, enable_categorical=True)
        if family == "ridge":
            values = explainer.shap_values(matrix)
        else:
            approximate = cost * len(matrix) > EXACT_BUDGET
            values = explainer.shap_values(data, check_additivity=False, approximate=approximate)
        return per_field(values, explainer, scoring.features, pd.RangeIndex(len(matrix)))

    return explain


def explain_rows(model: Any, frame: pd.DataFrame, background: pd.DataFrame | None) -> pd.DataFrame:
    """Per-row SHAP contributions per raw input column, plus ``base_value``, in log price.

    ``model`` is a registered model, loaded as pyfunc or sklearn; ``background`` its
    version's background sample (:func:`row_explainer`). For every row, ``base_value`` + the
    contributions = log(predicted price); exp(contribution) is the factor the column multiplies
    the price by; ``base_value`` is the same for every row.
    """
    return row_explainer(model, background)(frame)


def global_importance(
    model: Any, frame: pd.DataFrame, background: pd.DataFrame | None
) -> pd.Series:
    """Mean |SHAP| per raw input column over ``frame`` (log-price units), largest first."""
    contributions = explain_rows(model, frame, background).drop(columns=[BASE_VALUE])
    return contributions.abs().mean().sort_values(ascending=False).rename("importance")


def importance_diff(new: pd.Series, previous: pd.Series | None) -> pd.DataFrame:
    """Columns ``feature, new, previous, change``, ordered by the new model's importance."""
    table = pd.DataFrame({"new": new})
    table["previous"] = previous.reindex(table.index) if previous is not None else np.nan
    table["change"] = table["new"] - table["previous"]
    return table.rename_axis("feature").reset_index()


def diff_sentence(diff: pd.DataFrame, previous_version: int | None = None) -> str:
    """One generated sentence: what matters most, or what gained and lost most."""
    top = diff.sort_values("new", ascending=False)["feature"].tolist()
    if previous_version is None or diff["previous"].isna().all():
        return f"{top[0]} matters most, then {top[1]} and {top[2]} (no previous model to compare)."
    gained = diff.loc[diff["change"].idxmax()]
    lost = diff.loc[diff["change"].idxmin()]
    return (
        f"Against production version {previous_version}, {gained.feature} gained most "
        f"({gained.change:+.3f}) and {lost.feature} lost most ({lost.change:+.3f}); "
        f"{top[0]} now matters most."
    )


def plot_diff(diff: pd.DataFrame, title: str) -> bytes:
    """A horizontal bar chart of the two models' importances, as PNG bytes."""
    # Here, not at the top: serving explains with this module, and its image has no matplotlib.
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    ordered = diff.sort_values("new")
    y = np.arange(len(ordered))
    fig = Figure(figsize=(7, 0.45 * len(ordered) + 1.2))
    ax = fig.subplots()
    has_previous = not ordered["previous"].isna().all()
    height = 0.4 if has_previous else 0.8
    ax.barh(y + (height / 2 if has_previous else 0), ordered["new"], height, label="new model")
    if has_previous:
        ax.barh(y - height / 2, ordered["previous"], height, label="previous production")
    ax.set_yticks(y, ordered["feature"])
    ax.set_xlabel("mean |SHAP| (log price)")
    ax.set_title(title)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


@dataclass(frozen=True)
class Explanation:
    """Both models' SHAP importances side by side, a sentence on what changed, and a PNG chart."""

    diff: pd.DataFrame
    sentence: str
    png: bytes


@dataclass(frozen=True)
class Explained:
    """A model and its version's background sample (what :func:`row_explainer` needs)."""

    model: Any
    background: pd.DataFrame | None


@timings.step("shap")  # benchmarks/loop.py times it
def explain_change(
    new: Explained,
    previous: Explained | None,
    frame: pd.DataFrame,
    previous_version: int | None,
    title: str,
) -> Explanation:
    """Both models explained on the very same rows, each against its own background."""
    now = global_importance(new.model, frame, new.background)
    before = (
        global_importance(previous.model, frame, previous.background)
        if previous is not None
        else None
    )
    diff = importance_diff(now, before)
    return Explanation(
        diff=diff,
        sentence=diff_sentence(diff, previous_version if before is not None else None),
        png=plot_diff(diff, title),
    )

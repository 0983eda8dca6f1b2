from pathlib import Path

import optuna
import pytest

from experiments.families import FAMILIES, build_model
from experiments.spaces import (
    DEFAULT_DIR,
    SearchSpaceError,
    load_space,
    load_spaces,
    spaces_from_json,
    spaces_to_json,
    suggest,
)

GOOD = """\
family: xgboost
params:
  max_depth: {type: int, low: 2, high: 6}
fixed:
  max_bin: 64
"""


def test_shipped_spaces_cover_boosting_bagging_and_linear_families():
    spaces = load_spaces()
    assert set(spaces) == {"xgboost", "lightgbm", "catboost", "random_forest", "ridge"}
    assert set(spaces) <= set(FAMILIES)


def test_the_catboost_space_builds_one_thread_models_with_native_text_columns():
    space = load_spaces(families=["catboost"])["catboost"]
    assert {"depth", "learning_rate", "iterations", "l2_leaf_reg", "one_hot_max_size"} <= set(
        space.params
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    name, params, smoothing = suggest(study.ask(), {"catboost": space})
    estimator = build_model(name, params, smoothing=smoothing).regressor[-1]
    settings = estimator.get_params()
    assert settings["thread_count"] == 1 and settings["max_ctr_complexity"] == 1
    assert {c.split("__")[1] for c in settings["cat_features"]} == {
        "status",
        "state",
        "zip_code_3",
        "city",
        "zip_code",
        "brokered_by",
    }


@pytest.mark.parametrize(
    ("line", "reason"),
    [("  max_ctr_complexity: 2\n", "set by the platform"), ("  deepth: 6\n", "not a parameter")],
)
def test_a_catboost_space_may_not_set_what_the_artifact_relies_on(
    tmp_path: Path, line: str, reason: str
):
    text = (DEFAULT_DIR / "catboost.yaml").read_text().replace("fixed:\n", "fixed:\n" + line)
    (tmp_path / "catboost.yaml").write_text(text)
    with pytest.raises(SearchSpaceError, match=reason):
        load_spaces(tmp_path)


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        (GOOD.replace("low: 2", "low: 9"), "params.max_depth", "must be below high"),
        (GOOD.replace("max_depth", "max_dept"), "params.max_dept", "not a parameter"),
        (GOOD.replace("type: int", "type: integer"), "params.max_depth", "type"),
        (GOOD.replace("low: 2", "lo: 2"), "params.max_depth", "low"),
        (GOOD.replace("max_bin", "n_jobs"), "fixed.n_jobs", "set by the platform"),
        (GOOD.replace("xgboost", "h2o_gbm"), "family", "unknown family"),
        (GOOD + "color: blue\n", "color", "Extra inputs"),
        (
            GOOD.replace(
                "{type: int, low: 2, high: 6}", "{type: float, low: 0, high: 1, log: true}"
            ),
            "params.max_depth",
            "log scale needs low > 0",
        ),
        (GOOD.replace("}", ""), "cannot read YAML", ""),
    ],
)
def test_malformed_space_names_the_file_and_key(tmp_path: Path, text, key, reason):
    path = tmp_path / "xgboost.yaml"
    path.write_text(text)
    with pytest.raises(SearchSpaceError) as err:
        load_space(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ")
    assert key in message and reason in message


def test_file_name_must_match_its_family_and_requested_families_must_exist(tmp_path: Path):
    (tmp_path / "lightgbm.yaml").write_text(GOOD)
    with pytest.raises(SearchSpaceError, match=r"lightgbm\.yaml: family"):
        load_spaces(tmp_path)
    (tmp_path / "lightgbm.yaml").rename(tmp_path / "xgboost.yaml")
    assert list(load_spaces(tmp_path)) == ["xgboost"]
    with pytest.raises(SearchSpaceError, match="no search space for ridge"):
        load_spaces(tmp_path, families=["ridge"])
    assert list(load_spaces(DEFAULT_DIR, families=["ridge"])) == ["ridge"]


def test_trial_params_round_trip_to_a_buildable_model():
    spaces = spaces_from_json(spaces_to_json(load_spaces()), "study x")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        name, params, smoothing = suggest(trial, spaces)
        seen.add(name)
        assert all(k.startswith(f"{name}.") for k in trial.params if k != "family")
        assert spaces[name].from_trial(trial.params) == (params, smoothing)
        assert 1 <= smoothing <= 50
        build_model(name, params, smoothing=smoothing)  # every sampled point is a valid model
        study.tell(trial, 1.0)
    assert seen == set(spaces)
    assert spaces["lightgbm"].fixed == {"subsample_freq": 1}


def test_space_admits_only_params_inside_its_ranges():
    space = load_spaces(families=["ridge"])["ridge"]
    inside = {"family": "ridge", "ridge.alpha": 1.0, "ridge.smoothing": 5.0}
    assert space.admits(inside)
    assert not space.admits({**inside, "ridge.alpha": 1e6})
    assert not space.admits({"family": "ridge"})  # parameters missing

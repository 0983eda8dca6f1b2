"""Models page (streamlit AppTest) against the world's real MLflow registry and CLEAN database."""

from __future__ import annotations

import re
from collections.abc import Callable

import pandas as pd
from mlflow import MlflowClient
from streamlit.testing.v1 import AppTest

from experiments import promotions, registry
from tasador.core import db, shadow_store
from tasador.core.services import free_port
from tasador.core.tables.raw import shadow_predictions
from tests.helpers import REPO
from tests.helpers.shadow import rows
from tests.helpers.ui import World

PAGE = str(REPO / "app" / "views" / "models.py")
LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")


def page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=60).run()


def run_of(world: World, version: str) -> tuple[str, str]:
    """(experiment id, run id) of a registered version, read from MLflow itself."""
    uri = world.settings.mlflow.mlflow_tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = client.get_model_version(world.settings.mlflow.model_name, version).run_id
    return client.get_run(run_id).info.experiment_id, run_id


def texts(block: object) -> list[str]:
    return [m.value for m in block.markdown]  # type: ignore[attr-defined]


def links(block: object) -> dict[str, str]:
    return {label: url for m in texts(block) for label, url in LINK.findall(m)}


def test_every_version_is_listed_with_lineage_metrics_and_promotion(
    world: World, ui_env: Callable
) -> None:
    at = page()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert world.settings.mlflow.model_name in at.caption[0].value
    first, second = world.versions
    table = at.dataframe[0].value.set_index("version")
    assert list(table.index) == [int(second), int(first)]  # newest first
    assert table.loc[int(second), "serving"] == "yes" and table.loc[int(first), "serving"] == ""
    assert table["family"].to_dict() == {int(second): "lightgbm", int(first): "xgboost"}
    one, two = world.batch_ids
    assert table["batches"].to_dict() == {int(second): f"{one}-{two}", int(first): str(one)}
    # What register() logged on each run, and the dollars and shares logged on the second.
    assert table["holdout RMSLE"].tolist() == ["0.500", "0.500"]
    assert table["holdout MAE"].tolist() == ["$182,408", "-"]
    assert table["holdout MAPE"].tolist() == ["35.8%", "-"]
    assert table["improvement"].tolist() == ["+6.1% to +13.8%", "-"]
    assert table["decided by"].tolist() == ["evidence", "first version"]
    assert table["promoted"].tolist() == ["yes", "yes"]
    assert "95% confidence" in " ".join(c.value for c in at.caption)
    assert table["decided"].notna().all()

    assert [e.label for e in at.expander] == [f"Version {second} — serving now", f"Version {first}"]
    newest, oldest = at.expander
    assert f"**Trained on batches** {one}, {two}" in texts(newest)
    assert f"**Trained on batches** {one}" in texts(oldest)
    assert "Retrain. test model lightgbm" in texts(newest)
    assert "Retrain. test model xgboost" in texts(oldest)
    assert f"**Champion/challenger**: Version {second} promoted." in texts(newest)


def test_links_point_at_each_version_run_and_the_study(world: World, ui_env: Callable) -> None:
    ui_env(mlflow_public_url="https://mlflow.example/", optuna_dashboard_url="http://optuna.ex")
    at = page()
    assert not at.exception and not at.error, [e.value for e in at.error]
    name = world.settings.mlflow.model_name
    for expander, version in zip(at.expander, reversed(world.versions), strict=True):
        experiment, run_id = run_of(world, version)
        found = links(expander)
        assert found["training run"] == (
            f"https://mlflow.example/#/experiments/{experiment}/runs/{run_id}"
        )
        assert found["model version in MLflow"] == (
            f"https://mlflow.example/#/models/{name}/versions/{version}"
        )
        assert found[f"Optuna study `{name}-batches-1-2`"] == "http://optuna.ex/dashboard"


def test_without_public_urls_links_use_the_tracking_uri(world: World, ui_env: Callable) -> None:
    at = page()
    experiment, run_id = run_of(world, world.versions[1])
    found = links(at.expander[0])
    uri = world.settings.mlflow.mlflow_tracking_uri
    assert found["training run"] == f"{uri}/#/experiments/{experiment}/runs/{run_id}"
    assert not any(label.startswith("Optuna study") for label in found)  # no dashboard set
    assert any(
        f"study `{world.settings.mlflow.model_name}-batches-1-2`" in m
        for m in texts(at.expander[0])
    )


def test_shap_change_of_the_second_version_against_the_first(
    world: World, ui_env: Callable
) -> None:
    at = page()
    first = world.versions[0]
    newest, oldest = at.expander

    heading = (
        f"**What changed in the model (SHAP)** against version {first}, production at the time"
    )
    assert heading in texts(newest)
    change = newest.dataframe[0].value
    assert list(change.columns) == ["feature", "new", "previous", "change"]
    assert {"house_size", "zip_code", "state", "city", "bed", "bath"} <= set(change["feature"])
    assert change["previous"].notna().all()
    pd.testing.assert_series_equal(
        change["change"], change["new"] - change["previous"], check_names=False
    )
    sentence = next(m for m in texts(newest) if m.startswith("Against production version"))
    gained = change.loc[change["change"].idxmax()]
    lost = change.loc[change["change"].idxmin()]
    top = change.loc[change["new"].idxmax(), "feature"]
    assert sentence == (
        f"Against production version {first}, {gained.feature} gained most "
        f"({gained.change:+.3f}) and {lost.feature} lost most ({lost.change:+.3f}); "
        f"{top} now matters most."
    )
    assert len(newest.image) == 1  # the importance bar chart

    # The first version had nothing to be compared with: its own importance only.
    assert "**What changed in the model (SHAP)**" in texts(oldest)
    assert any("(no previous model to compare)" in m for m in texts(oldest))
    assert oldest.dataframe[0].value["previous"].isna().all()
    assert len(oldest.image) == 1
    # Both models were explained on the same rows: the first version's importance is the
    # second version's "previous" column.
    previous = change.set_index("feature")["previous"]
    own = oldest.dataframe[0].value.set_index("feature")["new"]
    pd.testing.assert_series_equal(previous.sort_index(), own.sort_index(), check_names=False)


def test_mlflow_down_is_said_in_words(world: World, ui_env: Callable) -> None:
    port = free_port()
    ui_env(mlflow_tracking_uri=f"http://127.0.0.1:{port}")
    at = page()
    assert not at.exception
    [error] = at.error
    assert error.value.startswith("The model history (MLflow registry")
    assert f"127.0.0.1:{port}" in error.value
    assert "Traceback" not in error.value
    assert not at.dataframe and not at.expander


def test_clean_down_is_said_in_words(world: World, ui_env: Callable) -> None:
    ui_env(clean_db_url=f"postgresql://tasador:secret@127.0.0.1:{free_port()}/clean")
    at = page()
    assert not at.exception
    [error] = at.error
    assert "promotion records in CLEAN" in error.value and "connection failed" in error.value
    assert "secret" not in error.value
    assert not at.dataframe and not at.expander


def test_an_operator_rolls_back_to_the_previous_version(world: World, ui_env: Callable) -> None:
    first, second = world.versions
    settings = world.settings
    client = registry.connect(settings)
    try:
        at = page()
        [choice] = at.selectbox
        assert choice.value == int(first)  # default: the version production replaced
        at.text_input[0].input("prices off in Texas")
        at.button[0].click().run()  # not confirmed: nothing moves
        assert [w.value for w in at.warning] == ["Tick the confirmation to roll back."]
        assert registry.production_version(client, settings).version == second

        at.checkbox[0].check()
        at.button[0].click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert registry.production_version(client, settings).version == first
        assert at.success[0].value.startswith(f"Version {first} is production again")
        audit = at.dataframe[1].value.iloc[0]  # under the versions table
        move = promotions.alias_history(
            db.engine("clean", settings.databases), settings.mlflow.model_name
        )[-1]
        assert audit["id"] == move.id and audit["reason"] == "prices off in Texas"
        assert (audit["cause"], audit["version"], audit["previous_version"]) == (
            "rollback",
            int(first),
            int(second),
        )
        table = at.dataframe[0].value.set_index("version")  # re-run: the table shows it
        assert table.loc[int(first), "serving"] == "yes"
    finally:
        registry.set_production(client, settings.mlflow, second)  # the world is shared


def test_a_rollback_without_a_reason_is_refused(world: World, ui_env: Callable) -> None:
    at = page()
    at.checkbox[0].check()
    at.button[0].click().run()
    assert [e.value for e in at.error] == ["Give a reason: it is the audit record."]
    client = registry.connect(world.settings)
    assert registry.production_version(client, world.settings).version == world.versions[1]


def test_challenger_disagreement_on_live_traffic(world: World, ui_env: Callable) -> None:
    first, second = world.versions  # second serves
    at = page()
    assert "No challenger other than the version serving" in " ".join(c.value for c in at.caption)
    settings = world.settings
    client = registry.connect(settings)
    client.set_registered_model_alias(settings.mlflow.model_name, registry.CHALLENGER_ALIAS, first)
    shadowed = rows([1.0, 1.05, 1.3], "Texas") + rows([0.5], "Ohio")
    for row in shadowed:
        row.update(model_name=settings.mlflow.model_name, challenger_version=first)
        row["production_version"] = second
    engine = db.engine("raw", settings.databases)
    try:
        shadow_store.write(engine, shadowed)
        at = page()
        assert not at.exception and not at.error, [e.value for e in at.error]
        sentence = f"Challenger version {first} against production version {second} on 4 live"
        assert any(m.value.startswith(sentence) for m in at.markdown)
        assert any("50.0% priced within ±10%" in m.value for m in at.markdown)
        states = at.dataframe[1].value
        assert states["state"].tolist() == ["Ohio", "Texas"]  # largest disagreement first
        assert len(at.get("vega_lite_chart")) == 1  # the histogram
    finally:
        client.delete_registered_model_alias(settings.mlflow.model_name, registry.CHALLENGER_ALIAS)
        with engine.begin() as conn:
            conn.execute(shadow_predictions.delete())

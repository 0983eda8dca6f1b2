import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.tree import DecisionTreeRegressor

from datasource.calibrate import calibrate, dump, main
from datasource.generator import generate_listings
from datasource.price_fit import TREE_LEAVES, TREE_MIN_LEAF, US_STATES, residual_tree
from datasource.world import CALIBRATION_PATH, MISSING, eval_tree
from tests.helpers.listings import write_realtor_csv


@pytest.fixture(scope="module")
def generated_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough generated listings that their calibration settles near the committed figures."""
    path = tmp_path_factory.mktemp("calibrate") / "listings.csv"
    return write_realtor_csv(generate_listings(20_000, seed=2), path)


@pytest.mark.slow
def test_the_script_writes_what_calibrate_derives_and_is_deterministic(
    generated_csv: Path, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    for out in (first, second):
        main(["--csv", str(generated_csv), "--out", str(out)])
    assert first.read_text() == second.read_text()
    assert first.read_text() == dump(calibrate(pd.read_csv(generated_csv)))
    # The committed file is in the script's own layout, as if written by it.
    assert dump(json.loads(CALIBRATION_PATH.read_text())) == CALIBRATION_PATH.read_text()


def test_calibrating_generated_rows_recovers_the_committed_figures(generated_csv: Path) -> None:
    """Generate from the committed calibration, calibrate again: the figures come back."""
    committed = json.loads(CALIBRATION_PATH.read_text())
    again = calibrate(pd.read_csv(generated_csv))
    for name, beta in committed["price"]["betas"].items():
        assert again["price"]["betas"][name] == pytest.approx(beta, abs=0.03), name
    assert again["price"]["intercept"] == pytest.approx(committed["price"]["intercept"], abs=0.1)
    assert again["price"]["noise_sd"] == pytest.approx(committed["price"]["noise_sd"], abs=0.03)
    for status, figures in committed["statuses"].items():
        assert again["statuses"][status]["weight"] == pytest.approx(figures["weight"], abs=0.02)
    for column, share in committed["loose_missing"].items():
        assert again["loose_missing"][column] == pytest.approx(share, abs=0.003), column
    weights = pd.DataFrame(
        {
            "committed": {s: f["weight"] for s, f in committed["states"].items()},
            "again": {s: f["weight"] for s, f in again["states"].items()},
        }
    )
    assert weights.corr().iloc[0, 1] > 0.97


def test_calibration_covers_every_state_with_cities_and_holds_no_rows(
    listings_csv: Path,
) -> None:
    figures = calibrate(pd.read_csv(listings_csv))
    assert list(figures["states"]) == list(US_STATES)
    assert all(state["cities"] for state in figures["states"].values())
    text = dump(figures)
    # Figures, not rows: no street id of the sample is in the file.
    streets = pd.read_csv(listings_csv)["street"].dropna().astype(int).astype(str).head(200)
    assert not any(f"{s}.0" in text or f'"{s}"' in text for s in streets)


def test_main_refuses_a_csv_without_the_realtor_columns(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("price,state\n1,Texas\n")
    with pytest.raises(SystemExit, match="missing columns"):
        main(["--csv", str(bad), "--out", str(tmp_path / "out.json")])
    assert not (tmp_path / "out.json").exists()


def test_the_stored_residual_tree_predicts_as_the_fitted_one() -> None:
    """calibrate stores its tree as arrays; world.eval_tree must give what sklearn gives."""
    rng = np.random.default_rng(0)
    # On a 0.01 grid: the stored thresholds (4 decimals) split it exactly as sklearn's do.
    X = np.round(rng.normal(size=(3_000, 5)), 2)
    X[rng.random(3_000) < 0.2, 1] = MISSING
    step = np.where(X[:, 0] > 0.5, 1.0, 0.0) * np.where(X[:, 1] < 0, 1, -1)
    resid = step + rng.normal(size=3_000)
    stored = residual_tree(X, resid)
    sk = DecisionTreeRegressor(
        max_leaf_nodes=TREE_LEAVES, min_samples_leaf=TREE_MIN_LEAF, random_state=0
    ).fit(X, resid - resid.mean())
    assert np.allclose(eval_tree(stored, X), sk.predict(X), atol=1e-3)
    assert stored["depth"] > 1

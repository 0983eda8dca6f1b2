import numpy as np
import pandas as pd
import pytest

from experiments.families import FAMILIES, build_model
from experiments.features import (
    CategoryCodes,
    ListingFrame,
    SmoothedMeanEncoder,
    feature_source,
)
from experiments.inputs import INPUT_COLUMNS
from tasador.core.metrics import rmsle
from tests.helpers.models import SMALL


def test_listing_frame_takes_fields_as_they_arrive():
    raw = pd.DataFrame(
        {
            "zip_code": [2134.0, "27253", None],
            "brokered_by": [40618.0, "7", np.nan],
            "state": ["Massachusetts", " Texas ", ""],
            "city": ["Boston", "Austin", "Nowhere"],
            "prev_sold_date": ["2021-01-01", pd.Timestamp("2000-07-02"), None],
            "house_size": ["1105", 900.0, None],
            "batch_id": [1, 1, 2],  # extra column: ignored
        }
    )
    out = ListingFrame().fit_transform(raw)
    assert out["zip_code"].tolist() == ["02134", "27253", None]
    assert out["zip_code_3"].tolist() == ["021", "272", None]
    assert out["brokered_by"].tolist() == ["40618", "7", None]
    assert out["state"].tolist() == ["Massachusetts", "Texas", None]
    assert out["city"].tolist() == ["Massachusetts|boston", "Texas|austin", "?|nowhere"]
    assert out["prev_sold_year"].iloc[0] == 2021.0
    assert 2000.4 < out["prev_sold_year"].iloc[1] < 2000.6
    assert out["house_size"].tolist()[:2] == [1105.0, 900.0]
    assert out["bed"].isna().all()  # a missing column is all unknown, not an error
    with pytest.raises(TypeError, match="DataFrame"):
        ListingFrame().transform([[1, 2]])


def test_smoothed_means_never_see_a_rows_own_target_in_training():
    keys = pd.DataFrame({"city": ["a"] * 50 + ["rare"]})
    y = np.r_[np.zeros(50), 100.0]
    enc = SmoothedMeanEncoder(smoothing=1.0)
    trained = enc.fit_transform(keys, y)
    # Cross-fitted: the lone "rare" row is encoded without its own target (the fold prior).
    assert trained["city"].iloc[-1] < 5
    # At prediction time the statistics of every training row apply, smoothed towards the prior.
    prior = y.mean()
    assert enc.transform(pd.DataFrame({"city": ["rare", "unseen"]}))["city"].tolist() == [
        pytest.approx((100.0 + prior) / 2),
        pytest.approx(prior),
    ]


def test_per_sqft_encoding_estimates_log_price_per_square_foot():
    frame = pd.DataFrame({"zip": ["1", "1", "2", "2"], "size": [1000.0, 2000.0, 500.0, np.nan]})
    log_price = np.log([100_000.0, 200_000.0, 150_000.0, 1.0])
    enc = SmoothedMeanEncoder(smoothing=0.0, size_column="size").fit(frame, log_price)
    out = enc.transform(frame)
    assert list(out.columns) == ["zip"]
    assert out["zip"].iloc[0] == pytest.approx(np.log(100.0))
    assert out["zip"].iloc[2] == pytest.approx(np.log(300.0))  # the row without size is unused


def test_category_codes_fix_categories_and_drop_rare_or_unseen_values():
    enc = CategoryCodes(min_count=2).fit(pd.DataFrame({"state": ["A", "A", "B", None]}))
    out = enc.transform(pd.DataFrame({"state": ["B", "A", "Z"]}))
    assert list(out["state"].cat.categories) == ["A"]
    assert out["state"].isna().tolist() == [True, False, True]


def test_feature_source_maps_encoded_names_to_raw_columns():
    assert feature_source("ppsf__zip_code_3") == "zip_code"
    assert feature_source("onehot__state_New York") == "state"
    assert feature_source("numeric__missingindicator_prev_sold_year") == "prev_sold_date"
    with pytest.raises(ValueError, match="street"):
        feature_source("numeric__street")


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_learns_from_raw_fields_and_serves_any_column_order(name, clean_sample):
    train, test = clean_sample.iloc[:3000], clean_sample.iloc[3000:4000]
    model = build_model(name, SMALL[name]).fit(train.drop(columns="price"), train["price"])
    served = test.drop(columns="price").iloc[:, ::-1].assign(batch_id=7)
    # Far better than predicting the training median for everyone (1.15 on these rows).
    assert rmsle(test["price"], model.predict(served)) < 0.85
    without_bath = model.predict(served.drop(columns="bath"))
    assert np.all(np.isfinite(without_bath) & (without_bath > 0))
    names = model.regressor_[:-1].get_feature_names_out()
    assert {feature_source(n) for n in names} <= set(INPUT_COLUMNS) - {"street"}


def test_platform_parameters_cannot_be_overridden():
    with pytest.raises(ValueError, match="n_jobs"):
        build_model("xgboost", {"n_jobs": 8})

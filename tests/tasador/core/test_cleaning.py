"""Each cleaning rule on hand-made raw rows (text, as RAW stores them)."""

import pandas as pd
import pytest

from tasador.core.cleaning import clean_frame
from tasador.core.columns import RAW_COLUMNS

GOOD = {
    "brokered_by": "40618.0",
    "status": "for_sale",
    "price": "239800.0",
    "bed": "3.0",
    "bath": "2.0",
    "acre_lot": "0.28",
    "street": "1693508.0",
    "city": "Graham",
    "state": "North Carolina",
    "zip_code": "7253.0",
    "house_size": "1105.0",
    "prev_sold_date": "2021-10-22",
}


def frame(*overrides: dict) -> pd.DataFrame:
    return pd.DataFrame([{**GOOD, **o} for o in overrides], dtype=object)


def test_good_row_is_typed_and_kept():
    clean, report = clean_frame(frame({}))
    row = clean.iloc[0]
    assert report.rows_in == report.rows_out == 1
    assert row["price"] == 239800.0 and row["bed"] == 3.0
    assert row["zip_code"] == "07253"  # leading zero restored
    assert row["brokered_by"] == "40618" and row["street"] == "1693508"
    assert row["prev_sold_date"] == pd.Timestamp("2021-10-22")
    assert sum(report.dropped.values()) == 0 and sum(report.fixed.values()) == 0


@pytest.mark.parametrize("price", [None, "", "N/A"])
def test_missing_or_unparseable_target_drops_the_row(price):
    clean, report = clean_frame(frame({}, {"price": price}))
    assert len(clean) == 1
    assert report.dropped["missing_target"] == 1
    assert report.fixed["type_error_price"] == (1 if price == "N/A" else 0)


def test_impossible_and_outlier_prices_drop():
    clean, report = clean_frame(
        frame({"price": "0"}, {"price": "-5"}, {"price": "1"}, {"price": "250000000"}, {})
    )
    assert len(clean) == 1
    assert report.dropped["impossible_price"] == 2
    assert report.dropped["price_outlier"] == 2


def test_wrong_types_blank_the_feature_and_keep_the_row():
    clean, report = clean_frame(
        frame(
            {"bed": "three", "prev_sold_date": "last year", "zip_code": "abc", "house_size": "big"}
        )
    )
    assert len(clean) == 1
    for col in ("bed", "prev_sold_date", "zip_code", "house_size"):
        assert report.fixed[f"type_error_{col}"] == 1
        assert pd.isna(clean.iloc[0][col])


def test_impossible_feature_values_are_blanked():
    clean, report = clean_frame(
        frame(
            {
                "bed": "99",
                "bath": "-1",
                "house_size": "-20",
                "acre_lot": "-3",
                "prev_sold_date": "1850-01-01",
            }
        )
    )
    assert report.rows_out == 1
    for col in ("bed", "bath", "house_size", "acre_lot", "prev_sold_date"):
        assert report.fixed[f"impossible_{col}"] == 1
        assert pd.isna(clean.iloc[0][col])


def test_unknown_status_is_blanked_and_known_ones_normalised():
    clean, report = clean_frame(frame({"status": " For Sale "}, {"status": "auction"}))
    assert list(clean["status"].fillna("?")) == ["for_sale", "?"]
    assert report.fixed["unknown_status"] == 1


def test_exact_duplicates_after_typing_are_dropped():
    # "3.0" and "3" are the same bedroom count once typed
    clean, report = clean_frame(frame({}, {"bed": "3"}, {"city": "Durham"}))
    assert len(clean) == 2
    assert report.dropped["duplicate_in_batch"] == 1


def test_missing_features_are_kept_and_counted():
    clean, report = clean_frame(frame({"bed": None, "bath": None, "acre_lot": None}))
    assert len(clean) == 1
    assert report.missing == {"bed": 1, "bath": 1, "acre_lot": 1}


def test_missing_column_is_a_clear_error():
    with pytest.raises(ValueError, match="house_size"):
        clean_frame(frame({}).drop(columns=["house_size"]))


def test_generated_sample_cleans_with_expected_figures(listings_csv):
    raw = pd.read_csv(listings_csv, dtype=object, keep_default_na=False, na_values=[""])
    clean, report = clean_frame(raw)
    assert report.rows_in == 5000
    assert 4900 < report.rows_out <= 5000
    assert list(clean.columns) == list(RAW_COLUMNS)
    assert clean["zip_code"].dropna().str.fullmatch(r"\d{5}").all()
    assert clean["price"].between(1_000, 100_000_000).all()


def test_ids_too_large_for_int64_are_blanked_and_counted():
    rows = frame(
        {"brokered_by": "9223372036854775808"},  # 2**63: int64's max + 1
        {"brokered_by": "1e30", "street": "inf"},
        {"street": "9223372036854775807.0"},  # rounds to 2**63 as a float: out of range too
        {"brokered_by": "9007199254740992.0", "street": "12.0"},
    )
    clean, report = clean_frame(rows)
    assert len(clean) == 4  # a bad id is a feature, not the target: rows are kept
    assert report.fixed["id_out_of_range_brokered_by"] == 2
    assert report.fixed["id_out_of_range_street"] == 2
    assert clean["brokered_by"].isna().tolist() == [True, True, False, False]
    assert clean["street"].isna().tolist() == [False, True, True, False]
    assert clean.iloc[3]["brokered_by"] == "9007199254740992"
    assert not clean["brokered_by"].astype("string").str.startswith("-").any()

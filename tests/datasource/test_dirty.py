import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from datasource.dirty import NUMBER_WORDS, DirtyKnobs, corrupt
from datasource.generator import generate_listings


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return generate_listings(4_000, seed=2, complete=True)


def _strings(column: pd.Series) -> pd.Series:
    return column.map(lambda v: isinstance(v, str))


def test_no_knobs_no_change(clean: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(corrupt(clean, DirtyKnobs(), np.random.default_rng(0)), clean)


def test_each_kind_of_dirt_at_about_its_rate(clean: pd.DataFrame) -> None:
    knobs = DirtyKnobs(
        missing_rate=0.1, duplicate_rate=0.05, impossible_rate=0.04, wrong_type_rate=0.04
    )
    dirty = corrupt(clean, knobs, np.random.default_rng(1))
    assert len(dirty) == len(clean)
    assert dirty["house_size"].isna().mean() == pytest.approx(0.1, abs=0.03)
    assert dirty["state"].notna().all()  # location stays
    assert dirty.astype(str).duplicated().mean() == pytest.approx(0.05, abs=0.015)
    numbers = {c: pd.to_numeric(dirty[c], errors="coerce") for c in ("price", "bed", "house_size")}
    impossible = (
        (numbers["price"] == 0).sum()
        + (numbers["price"] > 1e8).sum()
        + (numbers["bed"] == 99).sum()
        + (numbers["house_size"] < 0).sum()
        + (dirty["acre_lot"] < 0).sum()
    )
    assert impossible / len(dirty) == pytest.approx(0.04, abs=0.015)
    wrong = sum(_strings(dirty[c]).sum() for c in ("price", "bed", "bath", "house_size"))
    assert wrong / len(dirty) == pytest.approx(0.04, abs=0.015)
    assert set(dirty["price"][_strings(dirty["price"])]) == {"N/A"}
    assert dirty["bed"][_strings(dirty["bed"])].isin(NUMBER_WORDS).all()


def test_duplicates_are_exact_copies_of_rows_in_the_batch(clean: pd.DataFrame) -> None:
    dirty = corrupt(clean, DirtyKnobs(duplicate_rate=0.1), np.random.default_rng(2))
    repeated = dirty[dirty.duplicated(keep="first")]
    assert len(repeated) > 200
    originals = dirty.drop_duplicates()
    assert repeated.merge(originals, how="left", indicator=True)["_merge"].eq("both").all()


def test_same_generator_state_same_dirt(clean: pd.DataFrame) -> None:
    knobs = DirtyKnobs(missing_rate=0.05, wrong_type_rate=0.05)
    a = corrupt(clean, knobs, np.random.default_rng(9))
    pd.testing.assert_frame_equal(a, corrupt(clean, knobs, np.random.default_rng(9)))
    assert not a.equals(corrupt(clean, knobs, np.random.default_rng(10)))


def test_rates_are_validated() -> None:
    with pytest.raises(ValidationError):
        DirtyKnobs(missing_rate=1.5)
    with pytest.raises(ValidationError):
        DirtyKnobs(typo_rate=0.1)

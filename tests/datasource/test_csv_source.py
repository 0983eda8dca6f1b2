import json
from pathlib import Path

import pandas as pd
import pytest

from datasource.csv_source import CsvSource, partition, read_rows
from datasource.generator import generate_listings
from datasource.scenarios import ScenarioError, load_scenario
from tasador.core.columns import RAW_COLUMNS


@pytest.fixture(scope="module")
def realtor_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small realtor CSV: listings with the real file's missingness, plus unparseable values."""
    rows = generate_listings(6_000, seed=21)
    rows["price"] = rows["price"].astype(object)
    rows.loc[:4, "price"] = "N/A"
    path = tmp_path_factory.mktemp("csv") / "realtor-data.csv"
    rows.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def file_rows(realtor_csv: Path) -> pd.DataFrame:
    return read_rows(realtor_csv)


def _spill(folder: Path, number: int) -> pd.DataFrame:
    return read_rows(folder / f"batch_{number}.csv")


def test_partition_routes_complete_rows_by_status_and_price(
    realtor_csv: Path, file_rows: pd.DataFrame, tmp_path: Path
) -> None:
    course = load_scenario("course")
    folder = partition(realtor_csv, course, tmp_path)
    batches = [_spill(folder, k) for k in range(6)]
    counts = json.loads((folder / "counts.json").read_text())
    assert counts == [len(b) for b in batches]
    complete = file_rows.dropna()
    # Every complete row fits one course batch, except the one state's rows up to $10k.
    one_state = complete["state"].isin(course.batches[3].states)
    assert sum(counts) == len(complete) - (one_state & (complete["price"] <= 10_000)).sum()
    in_band = complete["price"].between(10_000, 300_000, inclusive="right")
    assert counts[3] == (one_state & in_band).sum() > 0
    assert all(not b.isna().any().any() for b in batches)
    for k in (0, 1):
        assert set(batches[k]["status"]) == {"for_sale"} and batches[k]["price"].max() <= 300_000
    assert set(batches[2]["status"]) == {"sold"}
    assert set(batches[3]["state"]) == set(course.batches[3].states)
    assert batches[4]["price"].between(300_000, 500_000, inclusive="right").all()
    assert batches[5]["price"].gt(500_000).all()
    # Batches 0 and 1 share a filter; rows split between them by their planned sizes.
    share = counts[1] / (counts[0] + counts[1])
    assert share == pytest.approx(94_551 / (73_784 + 94_551), abs=0.08)
    # Values come back as the file has them.
    merged = pd.concat(batches).merge(complete, how="left", indicator=True)
    assert merged["_merge"].eq("both").all()
    assert batches[0]["zip_code"].dtype == float
    assert batches[0]["prev_sold_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()


def test_partition_in_small_chunks_keeps_every_row(realtor_csv: Path, tmp_path: Path) -> None:
    course = load_scenario("course")
    whole = partition(realtor_csv, course, tmp_path / "a")
    chunked = partition(realtor_csv, course, tmp_path / "b", chunk_rows=250)
    rows = [pd.concat([_spill(f, k) for k in range(6)]) for f in (whole, chunked)]
    key = list(RAW_COLUMNS)
    pd.testing.assert_frame_equal(
        rows[0].sort_values(key).reset_index(drop=True),
        rows[1].sort_values(key).reset_index(drop=True),
    )


def test_partition_is_built_once_and_reused(realtor_csv: Path, tmp_path: Path) -> None:
    course = load_scenario("course")
    folder = partition(realtor_csv, course, tmp_path)
    stamp = (folder / "counts.json").stat().st_mtime_ns
    assert partition(realtor_csv, course, tmp_path) == folder
    assert (folder / "counts.json").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "csv").iterdir()] == [folder.name]


def test_batches_subsample_deterministically_in_file_order(
    realtor_csv: Path, tmp_path: Path
) -> None:
    course = load_scenario("course")
    full = CsvSource(realtor_csv, course, scale=1.0, seed=1, state_dir=tmp_path)
    half = CsvSource(realtor_csv, course, scale=0.5, seed=1, state_dir=tmp_path)
    assert full.batch_sizes() == full.counts
    big = max(range(6), key=lambda k: full.counts[k])
    everything = full.batch(1, None, big)
    assert len(everything) == full.counts[big]
    part = half.batch(1, None, big)
    assert len(part) == max(course.min_rows, round(full.counts[big] * 0.5))
    positions = everything.reset_index().merge(part, on=list(RAW_COLUMNS))["index"]
    assert len(positions) == len(part) and positions.is_monotonic_increasing
    again = CsvSource(realtor_csv, course, scale=0.5, seed=1, state_dir=tmp_path)
    pd.testing.assert_frame_equal(part, again.batch(1, None, big))
    assert not part.equals(half.batch(2, None, big))
    assert half.key != full.key


def test_small_batches_are_served_whole(realtor_csv: Path, tmp_path: Path) -> None:
    source = CsvSource(realtor_csv, load_scenario("course"), scale=0.01, seed=1, state_dir=tmp_path)
    assert source.batch_sizes() == [min(c, 200) for c in source.counts]


def test_not_a_realtor_csv_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("price,state\n100,Texas\n")
    with pytest.raises(ValueError, match="missing columns"):
        partition(bad, load_scenario("course"), tmp_path)
    with pytest.raises(FileNotFoundError):
        partition(tmp_path / "absent.csv", load_scenario("course"), tmp_path)


def test_generator_only_knobs_are_refused(realtor_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="state_boost"):
        CsvSource(realtor_csv, load_scenario("drift-zoo"), 1.0, 1, tmp_path)

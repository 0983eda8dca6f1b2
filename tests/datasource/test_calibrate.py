from pathlib import Path

import pandas as pd
import pytest

from datasource.calibrate import US_STATES, calibrate, dump, main
from datasource.world import CALIBRATION_PATH


def test_committed_calibration_is_what_the_script_derives_from_the_sample(
    sample_csv: Path,
) -> None:
    assert dump(calibrate(pd.read_csv(sample_csv))) == CALIBRATION_PATH.read_text()


def test_calibration_covers_every_state_with_cities_and_holds_no_rows(sample_csv: Path) -> None:
    figures = calibrate(pd.read_csv(sample_csv))
    assert list(figures["states"]) == list(US_STATES)
    assert all(state["cities"] for state in figures["states"].values())
    text = dump(figures)
    # Figures, not rows: no street id of the sample is in the file.
    streets = pd.read_csv(sample_csv)["street"].dropna().astype(int).astype(str).head(200)
    assert not any(f"{s}.0" in text or f'"{s}"' in text for s in streets)


def test_main_refuses_a_csv_without_the_realtor_columns(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("price,state\n1,Texas\n")
    with pytest.raises(SystemExit, match="missing columns"):
        main(["--csv", str(bad), "--out", str(tmp_path / "out.json")])
    assert not (tmp_path / "out.json").exists()

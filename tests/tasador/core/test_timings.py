"""Step timings: one JSON line per step when the setting is on, nothing when it is off."""

from __future__ import annotations

import pytest

from tasador.core import timings
from tasador.core.config import get_settings


@pytest.fixture
def timings_file(tmp_path, monkeypatch):
    path = tmp_path / "timings.jsonl"
    monkeypatch.setenv("TASADOR_TIMINGS_FILE", str(path))
    get_settings.cache_clear()
    yield path
    monkeypatch.delenv("TASADOR_TIMINGS_FILE")
    get_settings.cache_clear()


def test_a_step_records_time_memory_and_its_fields(timings_file):
    with timings.step("outer") as outer:
        with timings.step("inner", rows=3):
            block = bytearray(64 * 2**20)  # 64 MiB, touched
            block[::4096] = b"x" * len(block[::4096])
            del block
        outer["rows"] = 7
    inner, outer_record = timings.read(timings_file)
    assert (inner["step"], inner["rows"], outer_record["step"], outer_record["rows"]) == (
        "inner",
        3,
        "outer",
        7,
    )
    assert inner["peak_rss_mb"] >= 64 and outer_record["peak_rss_mb"] >= inner["peak_rss_mb"]
    assert outer_record["wall_s"] >= inner["wall_s"] >= 0 and not inner["failed"]


def test_a_decorated_function_is_timed_each_call_and_failures_are_marked(timings_file):
    @timings.step("work")
    def work(fail: bool) -> int:
        if fail:
            raise ValueError("no")
        return 1

    assert work(False) == 1
    with pytest.raises(ValueError):
        work(True)
    assert [r["failed"] for r in timings.read(timings_file)] == [False, True]


def test_without_the_setting_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("TASADOR_TIMINGS_FILE", raising=False)
    get_settings.cache_clear()
    with timings.step("quiet") as fields:
        fields["rows"] = 1
    assert timings.timings_file() is None and list(tmp_path.iterdir()) == []

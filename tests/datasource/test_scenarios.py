from pathlib import Path

import pytest

from datasource.scenarios import SCENARIO_DIR, ScenarioError, list_scenarios, load_scenario

# REALTOR.md's table of the course API's batches.
COURSE_ROWS = [73_784, 94_551, 230_366, 4_055, 320_696, 361_457]


def test_shipped_scenarios_load() -> None:
    names = list_scenarios()
    assert {"course", "drift-zoo"} <= set(names)
    for name in names:
        assert load_scenario(name).batches


def test_course_mirrors_the_course_plan() -> None:
    course = load_scenario("course")
    assert [b.rows for b in course.batches] == COURSE_ROWS
    assert [b.rows_at(1.0, course.min_rows) for b in course.batches] == COURSE_ROWS
    assert all(b.complete for b in course.batches)
    b0, b1, b2, b3, b4, b5 = course.batches
    assert b0.status == b1.status == {"for_sale": 1} and b0.price_max == 300_000
    assert b0.generator_knobs() == b1.generator_knobs()
    assert b2.status == {"sold": 1} and b2.price_max == 300_000
    assert b3.states is not None and len(b3.states) == 1
    assert all(b.exclude_states == b3.states for b in (b0, b1, b2))
    assert (b3.price_min, b3.price_max) == (10_000, 300_000)
    assert (b4.status, b4.price_min, b4.price_max) == (None, 300_000, 500_000)
    assert (b5.status, b5.price_min, b5.price_max) == (None, 500_000, None)


def test_scale_shrinks_batches_but_not_below_min_rows() -> None:
    course = load_scenario("course")
    sizes = [b.rows_at(0.01, course.min_rows) for b in course.batches]
    assert sizes == [738, 946, 2304, 200, 3207, 3615]
    assert [b.rows_at(1e-6, 50) for b in course.batches] == [50] * 6


def test_defaults_apply_unless_a_batch_overrides(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(
        "defaults: {complete: true, price_max: 100000}\n"
        "batches:\n"
        "  - {name: a, rows: 10}\n"
        "  - {name: b, rows: 20, complete: false}\n"
    )
    scenario = load_scenario(path)
    assert scenario.name == "mine"
    assert [b.complete for b in scenario.batches] == [True, False]
    assert [b.price_max for b in scenario.batches] == [100_000, 100_000]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("batches:\n  - {name: a, rows: 10, price_multiplyer: 2}\n", "batches.0.price_multiplyer"),
        ("batches:\n  - {name: a, rows: -1}\n", "batches.0.rows"),
        ("batches:\n  - {name: a, rows: 5, states: [Narnia]}\n", "batches.0.states"),
        ("batches:\n  - {name: a, rows: 5, dirty: {missing_rate: 2}}\n", "batches.0.dirty"),
        ("batches: []\n", "batches"),
        ("batches: [\n", "not valid YAML"),
    ],
)
def test_a_bad_scenario_names_the_file_and_the_key(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as error:
        load_scenario(path)
    assert str(path) in str(error.value)
    assert where in str(error.value)


def test_unknown_scenario_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match="course"):
        load_scenario("no-such-scenario")
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario(Path("/nonexistent/x.yaml"))


def test_fingerprint_changes_with_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("name: s\nbatches: [{name: x, rows: 10}]\n")
    b.write_text("name: s\nbatches: [{name: x, rows: 11}]\n")
    assert load_scenario(a).fingerprint == load_scenario(a).fingerprint
    assert load_scenario(a).fingerprint != load_scenario(b).fingerprint


def test_the_readme_example_is_a_valid_scenario(tmp_path: Path) -> None:
    readme = (SCENARIO_DIR.parent / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "example.yaml"
    path.write_text(example)
    scenario = load_scenario(path)
    assert [b.name for b in scenario.batches] == ["baseline", "sold-in-the-south"]
    assert scenario.batches[1].dirty.duplicate_rate == 0.02

"""The one Dockerfile and each image target: hadolint-clean, pinned, small, non-root, healthy,
consistent with the lock and its dependency groups."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import tomllib

import pytest

from tests.helpers.dockerfile import (
    DOCKER_DIR,
    DOCKERFILE,
    REPO,
    build_stages,
    context_files,
    copies,
    dependency_groups,
    exec_form,
    final_stage,
    healthcheck_command,
    image_names,
    left_out_packages,
    stages,
    start_command,
)
from tests.helpers.tools import tool

IMAGES = image_names()
LOCK = tomllib.loads((REPO / "uv.lock").read_text())
LOCKED = {p["name"]: p["version"] for p in LOCK["package"]}
PINNED = re.compile(r"^[\w./-]+:(?P<tag>[\w.-]*\d[\w.-]*)$")
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "cargo", "rustc")


# The dependency group each image installs on the core (pyproject.toml); optuna-dashboard installs
# its few packages by name, pinned by the lock.
GROUP_OF = {
    "airflow": {"airflow"},
    "app": {"ui"},
    "datasource": {"datasource"},
    "mlflow": {"tracking"},
    "optuna-dashboard": set(),
    "serving": {"serving"},
}


def test_the_project_owns_the_six_images() -> None:
    assert IMAGES == ["airflow", "app", "datasource", "mlflow", "optuna-dashboard", "serving"]


def test_every_image_is_a_target_of_one_dockerfile() -> None:
    assert not list(DOCKER_DIR.glob("*/Dockerfile")), "one docker/Dockerfile, a target per image"


@pytest.mark.parametrize("image", IMAGES)
def test_each_image_installs_only_its_dependency_group(image: str) -> None:
    assert dependency_groups(image) == GROUP_OF[image]


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_images_are_pinned_versions() -> None:
    names: set[str] = set()
    for stage in stages():
        if stage.base not in names:
            m = PINNED.match(stage.base)
            assert m and m["tag"] != "latest", f"{stage.name}: unpinned base image {stage.base!r}"
        if stage.name:
            names.add(stage.name)


@pytest.mark.parametrize("image", IMAGES)
def test_final_stage_is_small_non_root_and_healthy(image: str) -> None:
    final = final_stage(image)
    user = final.last("USER")
    assert user is not None, f"{image}: no USER"
    uid = user.args.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{image}: run as a numeric non-root uid"
    assert healthcheck_command(final)
    assert start_command(final)
    assert final.last("EXPOSE")
    # The build tool (uv) and compilers stay out of the final stage.
    for _sources, _destination, options in copies(final):
        assert options.get("from") != "uv", f"{image}: uv copied into the final stage"
    runs = " ".join(i.args for i in final.all("RUN"))
    for build_tool in BUILD_TOOLS:
        assert not re.search(rf"apt-get install[^&;]*\b{re.escape(build_tool)}\b", runs)
    if not final.base.startswith("apache/airflow:"):
        assert len(build_stages(image)) >= 3, f"{image}: multi-stage (uv, build, final)"


@pytest.mark.parametrize("image", IMAGES)
def test_commands_are_exec_form(image: str) -> None:
    final = final_stage(image)
    assert exec_form(final.last("CMD").args)


def test_python_images_share_the_same_base_and_uv() -> None:
    every_stage = stages()
    python = {s.base for s in every_stage if s.base.startswith("python:")}
    uv = {s.base for s in every_stage if s.name == "uv"}
    assert len(python) == 1, f"one Python base for every image: {python}"
    assert len(uv) == 1, f"one uv version for every image: {uv}"


def test_airflow_image_is_the_locked_airflow_on_the_project_python() -> None:
    base = final_stage("airflow").base
    python = re.search(r"\d+\.\d+", LOCK["requires-python"])[0]
    assert base == f"apache/airflow:{LOCKED['apache-airflow']}-python{python}"


def test_left_out_packages_are_locked_packages() -> None:
    assert left_out_packages() <= set(LOCKED)


def _ignored(relative: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; parents count."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        glob = pattern[1:] if negate else pattern
        glob = glob.rstrip("/").removeprefix("**/")
        if any(
            fnmatch.fnmatch(c, glob) or fnmatch.fnmatch(c.split("/")[-1], glob) for c in candidates
        ):
            ignored = not negate
    return ignored


DOCKERIGNORE = [
    line.strip()
    for line in (REPO / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]


def test_copied_files_exist_and_are_in_the_build_context() -> None:
    for stage in stages():
        for sources, _destination, options in copies(stage):
            if "from" in options:
                continue
            for source in sources:
                assert (REPO / source).exists(), f"{stage.name}: COPY {source}: no such file"
                assert not _ignored(source, DOCKERIGNORE), f"{source} is .dockerignored"


def test_the_build_context_leaves_out_secrets_state_and_tests() -> None:
    for path in (".env", ".git", ".venv", ".tasador", "tests", "mlruns", "docs"):
        assert _ignored(path, DOCKERIGNORE), f"{path} would be sent to the Docker builder"


@pytest.mark.parametrize("image", IMAGES)
def test_healthcheck_and_scripts_are_copied_into_the_image(image: str) -> None:
    final = final_stage(image)
    shipped = context_files(final)
    assert "/usr/local/bin/healthcheck" in shipped
    assert "/usr/local/bin/check-secrets" in shipped
    program = healthcheck_command(final)[0]
    assert f"/usr/local/bin/{program}" in shipped

"""The GitHub Actions workflows: actionlint-clean, and doing what the deployment rule says."""

from __future__ import annotations

import subprocess

from tests.deploy.dockerfile import DOCKER_DIR, REPO, image_names
from tests.deploy.tools import search_path, tool
from tests.deploy.workflows import step_using, steps, workflow, workflow_files


def test_every_workflow_passes_actionlint() -> None:
    # actionlint also runs shellcheck on every `run:` script when it finds it on PATH.
    tool("shellcheck")
    result = subprocess.run(
        [tool("actionlint"), "-color=false", *map(str, workflow_files())],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={"PATH": search_path()},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_pass_shellcheck() -> None:
    scripts = sorted(DOCKER_DIR.rglob("*.sh"))
    assert scripts, "docker/smoke.sh is missing"
    result = subprocess.run(
        [tool("shellcheck"), *map(str, scripts)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_runs_lint_and_tests_on_every_push_and_pull_request() -> None:
    ci = workflow("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    assert (ci["on"]["push"] or {}).get("branches") is None  # every branch
    runs = [step.get("run", "") for step in steps("ci.yml", "test")]
    assert "make test" in runs  # ruff check + ruff format --check + pytest (Makefile)


def test_images_build_on_pull_requests_and_push_on_main_and_tags() -> None:
    images = workflow("images.yml")
    assert "pull_request" in images["on"]
    assert images["on"]["push"]["branches"] == ["main"]
    assert images["on"]["push"]["tags"]
    build = step_using("images.yml", "build", "docker/build-push-action")["with"]
    assert build["push"] == "${{ github.event_name != 'pull_request' }}"
    assert build["file"] == "docker/${{ matrix.image }}/Dockerfile"
    assert build["tags"] == "${{ steps.meta.outputs.tags }}"
    assert build["cache-from"].startswith("type=gha")
    assert build["cache-to"].startswith("type=gha")


def test_images_are_tagged_by_metadata_action_and_pushed_with_repository_secrets() -> None:
    meta = step_using("images.yml", "build", "docker/metadata-action")["with"]
    assert meta["images"].endswith("/tasador-${{ matrix.image }}")
    assert "type=semver" in meta["tags"]
    login = step_using("images.yml", "build", "docker/login-action")
    assert login["if"] == "github.event_name != 'pull_request'"
    assert login["with"] == {
        "username": "${{ secrets.DOCKERHUB_USERNAME }}",
        "password": "${{ secrets.DOCKERHUB_TOKEN }}",
    }


def test_the_matrix_builds_every_dockerfile() -> None:
    matrix = workflow("images.yml")["jobs"]["build"]["strategy"]["matrix"]["image"]
    assert sorted(matrix) == image_names()


def test_the_smoke_job_runs_the_stack_from_the_just_built_images() -> None:
    smoke = workflow("images.yml")["jobs"]["smoke"]
    assert smoke["needs"] == "build"
    runs = "\n".join(step.get("run", "") for step in smoke["steps"])
    assert '--cache-from "type=gha,scope=${image}"' in runs  # the build job's layers
    assert "docker/smoke.sh" in runs
    assert (DOCKER_DIR / "smoke.sh").stat().st_mode & 0o111, "docker/smoke.sh must be executable"

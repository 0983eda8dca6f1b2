"""The GitHub Actions workflows: actionlint-clean, and doing what the deployment rule says."""

from __future__ import annotations

import re
import subprocess

from tests.helpers import compose
from tests.helpers.dockerfile import DOCKER_DIR, REPO, image_names
from tests.helpers.tools import search_path, tool
from tests.helpers.workflows import matrix_images, step_using, steps, workflow, workflow_files


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


def test_images_build_on_pull_requests_and_publish_on_main_and_tags() -> None:
    images = workflow("images.yml")
    assert "pull_request" in images["on"]
    assert images["on"]["push"]["branches"] == ["main"]
    assert images["on"]["push"]["tags"]
    build = step_using("images.yml", "build", "docker/build-push-action")["with"]
    assert build["push"] is False  # the build job never pushes, on any event
    assert build["file"] == "docker/Dockerfile"  # one Dockerfile, a target per image
    assert build["target"] == "${{ matrix.image }}"
    assert build["outputs"].startswith("type=docker,dest=")  # kept as a file for smoke + publish
    assert build["cache-from"].startswith("type=gha")
    assert build["cache-to"].startswith("type=gha")


def _pushing_jobs() -> set[str]:
    """Jobs that log in to a registry, push an image, or build with push enabled."""
    found = set()
    for name, job in workflow("images.yml")["jobs"].items():
        for step in job.get("steps", []):
            action = step.get("uses", "").split("@")[0]
            pushes = action == "docker/login-action" or "docker push" in step.get("run", "")
            if action == "docker/build-push-action":
                pushes = step["with"].get("push") is not False
            if pushes:
                found.add(name)
    return found


def _needs(job: dict) -> set[str]:
    needs = job.get("needs", [])
    return {needs} if isinstance(needs, str) else set(needs)


def _upstream(name: str) -> set[str]:
    jobs = workflow("images.yml")["jobs"]
    seen: set[str] = set()
    todo = list(_needs(jobs[name]))
    while todo:
        job = todo.pop()
        if job not in seen:
            seen.add(job)
            todo += _needs(jobs[job])
    return seen


def test_nothing_is_pushed_before_the_tests_and_the_smoke_test_succeed() -> None:
    assert _pushing_jobs() == {"publish"}
    publish = workflow("images.yml")["jobs"]["publish"]
    assert {"tests", "smoke", "build"} <= _upstream("publish")
    assert publish["if"] == "github.event_name == 'push'"  # never from a pull request
    assert "always()" not in publish["if"]  # a failed or skipped need stops it
    # It pushes the very files the smoke job ran, never a rebuild.
    assert not any(
        s.get("uses", "").startswith("docker/build-push-action") for s in publish["steps"]
    )
    loads = [s for s in publish["steps"] if "docker load" in s.get("run", "")]
    assert loads and "docker push" in loads[0]["run"]
    assert publish["strategy"]["matrix"]["image"] == matrix_images()


def test_the_tests_gate_is_the_ci_workflow() -> None:
    tests = workflow("images.yml")["jobs"]["tests"]
    assert tests["uses"] == "./.github/workflows/ci.yml"
    assert "workflow_call" in workflow("ci.yml")["on"]


def test_latest_and_version_tags_move_only_on_a_release() -> None:
    meta = step_using("images.yml", "publish", "docker/metadata-action")["with"]
    assert meta["images"].endswith("/tasador-${{ matrix.image }}")
    assert meta["flavor"] == "latest=false"
    tags = [line.strip() for line in meta["tags"].splitlines() if line.strip()]
    latest = [t for t in tags if "value=latest" in t]
    assert latest == ["type=raw,value=latest,enable=${{ startsWith(github.ref, 'refs/tags/v') }}"]
    assert "type=semver,pattern={{version}}" in tags  # a release tag v1.2.3 gives 1.2.3
    login = step_using("images.yml", "publish", "docker/login-action")
    assert login["with"] == {
        "username": "${{ secrets.DOCKERHUB_USERNAME }}",
        "password": "${{ secrets.DOCKERHUB_TOKEN }}",
    }


def test_env_example_deploys_a_pinned_release() -> None:
    tag = compose.env_file()["TAG"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"TAG={tag}: pin a release, not a moving tag"


def test_the_matrix_builds_every_target() -> None:
    assert sorted(matrix_images()) == image_names()


def test_the_smoke_job_runs_the_stack_from_the_just_built_images() -> None:
    smoke = workflow("images.yml")["jobs"]["smoke"]
    assert smoke["needs"] == "build"
    assert smoke["env"]["TAG"] == "${{ github.sha }}"
    build = step_using("images.yml", "build", "docker/build-push-action")["with"]
    assert build["tags"] == (
        "${{ env.STAGING_NAMESPACE }}/tasador-${{ matrix.image }}:${{ github.sha }}"
    )
    assert workflow("images.yml")["env"]["STAGING_NAMESPACE"] == smoke["env"]["DOCKERHUB_NAMESPACE"]
    runs = "\n".join(step.get("run", "") for step in smoke["steps"])
    assert "docker load" in runs
    assert "docker/smoke.sh" in runs
    assert (DOCKER_DIR / "smoke.sh").stat().st_mode & 0o111, "docker/smoke.sh must be executable"


def test_the_smoke_test_runs_the_whole_loop() -> None:
    script = (DOCKER_DIR / "smoke.sh").read_text()
    for step in (
        "compose up --detach --wait",  # every healthcheck
        'airflow dags trigger "$INGEST_DAG"',  # collect + decide
        'wait_for_run "$TRAIN_DAG"',  # tiny search + champion/challenger + promotion
        "/predict",
        '"${UI}/"',
    ):
        assert step in script, step

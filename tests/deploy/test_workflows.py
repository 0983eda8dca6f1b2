"""The GitHub Actions workflows: actionlint-clean, and doing what the deployment rule says."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.helpers import compose
from tests.helpers.dockerfile import DOCKER_DIR, DOCKERFILE, REPO, image_names
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


def _step_index(job: str, action: str) -> int:
    return steps("images.yml", job).index(step_using("images.yml", job, action))


def test_every_built_image_is_scanned_and_a_fixable_critical_vulnerability_fails_it() -> None:
    build = step_using("images.yml", "build", "docker/build-push-action")["with"]
    built = build["outputs"].removeprefix("type=docker,dest=")
    scans = [
        s
        for s in steps("images.yml", "build")
        if s.get("uses", "").startswith("aquasecurity/trivy-action@")
    ]
    gate = next(s["with"] for s in scans if "exit-code" in s["with"])
    assert gate["input"] == built  # the very file the smoke test loads and publish pushes
    assert gate["exit-code"] == "1"
    assert gate["severity"] == "CRITICAL"
    assert gate["ignore-unfixed"] is True
    # Before the image is kept: a failed scan leaves nothing for smoke or publish.
    assert _step_index("build", "aquasecurity/trivy-action") < _step_index(
        "build", "actions/upload-artifact"
    )
    assert {"build"} <= _upstream("smoke") and {"build"} <= _upstream("publish")


def test_the_scanner_is_pinned_by_commit() -> None:
    # Its version tags were once rewritten to malicious code: a tag is not enough for it.
    for step in steps("images.yml", "build"):
        if step.get("uses", "").startswith("aquasecurity/"):
            assert re.fullmatch(r"aquasecurity/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]


def test_every_action_is_pinned_by_version_or_commit() -> None:
    for path in workflow_files():
        for job in workflow(path.name)["jobs"].values():
            for step in job.get("steps", []):
                uses = step.get("uses")
                if uses and not uses.startswith("./"):
                    assert re.search(r"@(v\d[\w.]*|[0-9a-f]{40})$", uses), f"{path.name}: {uses}"


def test_each_pushed_image_gets_its_sbom_and_provenance_attested() -> None:
    sbom = next(
        s["with"]
        for s in steps("images.yml", "build")
        if s.get("with", {}).get("format") == "spdx-json"
    )
    kept = step_using("images.yml", "build", "actions/upload-artifact")["with"]["path"]
    assert sbom["output"] in kept.splitlines()  # travels with the image to publish
    publish = workflow("images.yml")["jobs"]["publish"]
    assert publish["permissions"]["id-token"] == "write"  # Sigstore signs the attestations
    assert publish["permissions"]["attestations"] == "write"
    attests = [s for s in publish["steps"] if s.get("uses", "").startswith("actions/attest@")]
    push = next(s for s in publish["steps"] if s.get("id") == "push")
    assert "GITHUB_OUTPUT" in push["run"] and "digest=" in push["run"]
    assert "set -o pipefail" in push["run"]  # `docker push | tee` must still fail on a failure
    image = "docker.io/${{ env.DOCKERHUB_NAMESPACE }}/tasador-${{ matrix.image }}"
    for attest in attests:
        assert attest["with"]["subject-name"] == image
        assert attest["with"]["subject-digest"] == "${{ steps.push.outputs.digest }}"
        assert attest["with"]["push-to-registry"] is True
        assert publish["steps"].index(attest) > publish["steps"].index(push)
    kinds = sorted("sbom-path" in a["with"] for a in attests)
    assert kinds == [False, True]  # one provenance (the default), one SBOM
    sbom_path = next(a["with"]["sbom-path"] for a in attests if "sbom-path" in a["with"])
    assert sbom_path.endswith("/image/" + sbom["output"].rsplit("/", 1)[1])


def test_dependabot_proposes_updates_of_the_lock_the_base_images_and_the_actions() -> None:
    config = yaml.safe_load((REPO / ".github" / "dependabot.yml").read_text())
    watched = {(u["package-ecosystem"], u["directory"]) for u in config["updates"]}
    assert watched == {("uv", "/"), ("docker", "/docker"), ("github-actions", "/")}
    assert (REPO / "uv.lock").exists() and (DOCKER_DIR / "Dockerfile").exists()
    # Dependabot reads base images from FROM lines only, never from an ARG.
    froms = [line for line in DOCKERFILE.read_text().splitlines() if line.startswith("FROM ")]
    assert froms and not [line for line in froms if "$" in line]


def test_the_smoke_job_checks_the_distributed_path_on_the_stack_it_left_running() -> None:
    """docker/distributed_check.py (what tests/deploy/test_distributed.py runs here) runs against
    the containers after docker/smoke.sh, which leaves them up for it; the last step always stops
    the stack."""
    smoke = steps("images.yml", "smoke")
    runs = [step.get("run", "") for step in smoke]
    at = {name: next(i for i, run in enumerate(runs) if name in run) for name in (
        "docker/smoke.sh", "docker/distributed_check.py", "down --volumes"
    )}  # fmt: skip
    assert at["docker/smoke.sh"] < at["docker/distributed_check.py"] < at["down --volumes"]
    assert smoke[at["docker/smoke.sh"]]["env"]["SMOKE_KEEP_UP"] == "1"
    assert smoke[at["down --volumes"]]["if"] == "always()"
    check = smoke[at["docker/distributed_check.py"]]
    for variable in ("CHECK_KILL_SEARCH_WORKER", "CHECK_RESTART_SEARCH_WORKER", "CHECK_CLEAN_SQL"):
        assert variable in check["run"], variable
    assert "KEEP_UP" in (DOCKER_DIR / "smoke.sh").read_text()

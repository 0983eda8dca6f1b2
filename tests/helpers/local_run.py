"""Run an image's start command here, as a plain process, and probe it with its healthcheck.

What differs from the container, and why (all forced by a shared machine without Docker):
- the image's exposed port becomes a free port, in the command and in the healthcheck;
- other services' addresses (``postgres-raw:5432``, ``minio:9000``...) become local
  equivalents given by the test;
- container folders (``/opt/airflow``, ``/var/lib/tasador``) become temporary folders, and
  files the image copies from the repository are used from the repository;
- what the image does not install (dev dependencies, packages a Dockerfile leaves out) cannot
  be imported, so a start command that needs one fails here as it would in the container.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

from tests.helpers.dockerfile import REPO, Stage, context_files

VENV_BIN = Path(sys.executable).parent
_URL = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+]*)://(?:(?P<userinfo>[^@/\s]*)@)?"
    r"(?P<host>[a-z][a-z0-9-]*):(?P<port>\d+)(?P<path>/[^?\s,]*)?(?:\?(?P<query>[^\s,]*))?"
)


class CommandMissing(RuntimeError):
    """The start command names a CLI command that does not exist (yet)."""


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_packages(groups: set[str] | None = None) -> tuple[set[str], set[str]]:
    """(installed, all) locked packages of the core plus these dependency groups (every group
    but dev when not given), resolved from uv.lock as `uv sync --group ...` installs them."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    root = next(p for p in lock["package"] if p.get("source", {}).get("editable") == ".")

    def closure(start: list[dict]) -> set[str]:
        seen: set[str] = set()
        todo = list(start)
        while todo:
            dep = todo.pop()
            package = packages[dep["name"]]
            todo += [
                d
                for extra in dep.get("extra", [])
                for d in package.get("optional-dependencies", {}).get(extra, [])
            ]
            if dep["name"] not in seen:
                seen.add(dep["name"])
                todo += package.get("dependencies", [])
        return seen

    installed = {k: v for k, v in root.get("dev-dependencies", {}).items() if k != "dev"}
    chosen = installed if groups is None else {g: installed[g] for g in groups}
    start = root.get("dependencies", []) + [d for deps in chosen.values() for d in deps]
    return closure(start), set(packages) - {root["name"]}


def packages_not_in_images(left_out: set[str], groups: set[str] | None = None) -> set[str]:
    """Locked packages absent from an image: those outside the core and its dependency groups,
    and those the Dockerfile leaves out."""
    installed, every = installed_packages(groups)
    return every - (installed - left_out)


def modules_of(distributions: set[str]) -> set[str]:
    """Top-level import names provided only by these distributions."""
    wanted = {_normalize(d) for d in distributions}
    return {
        module
        for module, dists in packages_distributions().items()
        if dists and all(_normalize(d) in wanted for d in dists)
    }


def write_import_blocker(folder: Path, modules: set[str]) -> Path:
    """A ``sitecustomize`` that makes ``modules`` unimportable (put ``folder`` on PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        f"_ABSENT = {sorted(modules)!r}\n"
        "class _NotInImage(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.partition('.')[0] in _ABSENT:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (not in the image)',"
        " name=name)\n"
        "sys.meta_path.insert(0, _NotInImage())\n"
    )
    return folder


@dataclass
class Localizer:
    """Rewrites container addresses and paths into local ones."""

    services: set[str]  # the compose services: the host names to rewrite
    postgres: Callable[[str, str], str]  # (service, database) -> local postgresql:// URL
    http: Mapping[str, str]  # "minio:9000" -> "127.0.0.1:PORT"
    paths: Mapping[str, Path]  # container folder -> local folder
    unreachable: str  # host:port where nothing listens

    def url(self, match: re.Match[str]) -> str:
        host, port = match["host"], match["port"]
        if host not in self.services:
            return match[0]
        if host.startswith("postgres-"):
            local = self.postgres(host, (match["path"] or "/").lstrip("/"))
            return f"{match['scheme']}://{local.split('://', 1)[1]}"
        address = self.http.get(f"{host}:{port}", self.unreachable)
        userinfo = f"{match['userinfo']}@" if match["userinfo"] is not None else ""
        query = f"?{match['query']}" if match["query"] else ""
        return f"{match['scheme']}://{userinfo}{address}{match['path'] or ''}{query}"

    def mirror(self, shipped: Mapping[str, Path]) -> None:
        """Link what an image copies into a mapped folder (e.g. /opt/airflow/dags) there."""
        for container, source in shipped.items():
            for root, local in self.paths.items():
                if container.startswith(root + "/") and not source.is_relative_to(local):
                    target = local / container[len(root) + 1 :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if not target.exists():
                        target.symlink_to(source)

    def value(self, text: str) -> str:
        text = _URL.sub(self.url, text)
        for container, local in self.paths.items():
            if text == container or text.startswith(container + "/"):
                return str(local) + text[len(container) :]
        return text


def replace_port(args: list[str], old: int, new: int) -> list[str]:
    return [re.sub(rf"\b{old}\b", str(new), arg) for arg in args]


def localize_args(args: list[str], stage: Stage, localizer: Localizer) -> list[str]:
    """Files the image copies from the repository are run from the repository."""
    shipped = context_files(stage)
    result = []
    for i, arg in enumerate(args):
        path = arg if arg.startswith("/") else f"/usr/local/bin/{arg}" if i == 0 else None
        if path in shipped:
            source = shipped[path]
            result += [sys.executable, str(source)] if i == 0 else [str(source)]
        else:
            result.append(localizer.value(arg))
    return result


def base_env(home: Path, blocker: Path) -> dict[str, str]:
    """A clean environment: nothing leaks from the test process (no TASADOR_*, MLFLOW_*)."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.pathsep.join([str(VENV_BIN), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(blocker),
    }


@contextmanager
def started(
    args: list[str], env: Mapping[str, str], cwd: Path, log: Path
) -> Iterator[subprocess.Popen]:
    """The process (in its own session, so its children stop with it) while the block runs."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            args,
            env=dict(env),
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_healthy(
    process: subprocess.Popen,
    probe: list[str],
    env: Mapping[str, str],
    log: Path,
    timeout_s: float,
) -> None:
    """Run the healthcheck until it passes; fail with the log when the process dies or stalls."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")
            if "No such command" in output:
                raise CommandMissing(output.strip().splitlines()[-1])
            raise AssertionError(f"exited with {process.returncode}:\n{output[-4000:]}")
        if subprocess.run(probe, env=dict(env), capture_output=True).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError(
        f"healthcheck {probe} did not pass within {timeout_s:.0f}s:\n"
        + log.read_text(errors="replace")[-4000:]
    )

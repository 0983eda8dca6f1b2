"""Just enough of a Dockerfile parser for the deployment tests: instructions, stages, exec forms."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import REPO

DOCKER_DIR = REPO / "docker"
DOCKERFILE = DOCKER_DIR / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case, e.g. "RUN"
    args: str  # the rest of the logical line, continuations joined
    line: int


@dataclass
class Stage:
    base: str  # the FROM image (ARG defaults substituted) or an earlier stage's name
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


def image_names() -> list[str]:
    """Every image the project owns: a target of docker/Dockerfile that has a start command."""
    return sorted(s.name for s in stages() if s.name and s.last("CMD"))


def dockerfile_path(image: str | None = None) -> Path:
    """The one Dockerfile every image is a target of."""
    return DOCKERFILE


def instructions(text: str) -> list[Instruction]:
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        logical = " ".join(part for part in pending if part)
        pending = []
        keyword, _, args = logical.partition(" ")
        found.append(Instruction(keyword.upper(), args.strip(), start))
    return found


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], m[0]), value)


def stages(path: Path = DOCKERFILE) -> list[Stage]:
    """The build stages in order; global ARG defaults are substituted into FROM."""
    global_args: dict[str, str] = {}
    result: list[Stage] = []
    for ins in instructions(path.read_text()):
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            base = _substitute(words[0], global_args)
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            result.append(Stage(base=base, name=name))
        elif not result:
            if ins.keyword == "ARG" and "=" in ins.args:
                key, _, value = ins.args.partition("=")
                global_args[key.strip()] = value.strip().strip('"')
        else:
            result[-1].instructions.append(ins)
    return result


def final_stage(image: str) -> Stage:
    """The image's target as built: the stages it is FROM, merged (the base image at the root)."""
    by_name = {s.name: s for s in stages() if s.name}
    if image not in by_name:
        raise LookupError(f"docker/Dockerfile has no target {image!r}")
    chain = [by_name[image]]
    while chain[-1].base in by_name:
        chain.append(by_name[chain[-1].base])
    merged = Stage(base=chain[-1].base, name=image)
    for stage in reversed(chain):
        merged.instructions += stage.instructions
    return merged


def build_stages(image: str) -> list[Stage]:
    """The target and every stage it copies from, directly or not (its whole build)."""
    by_name = {s.name: s for s in stages() if s.name}
    todo, seen = [image], []
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.append(name)
        stage = by_name[name]
        todo.append(stage.base)
        todo += [options["from"] for _s, _d, options in copies(stage) if "from" in options]
        todo += re.findall(r"--mount=from=([\w.-]+)", " ".join(i.args for i in stage.all("RUN")))
    return [by_name[name] for name in seen]


def dependency_groups(image: str) -> set[str]:
    """The pyproject dependency groups the image's build installs (``--group NAME``)."""
    runs = " ".join(i.args for stage in build_stages(image) for i in stage.all("RUN"))
    return set(re.findall(r"--group\s+([\w-]+)", runs))


def exec_form(args: str) -> list[str]:
    """The JSON array of a CMD, ENTRYPOINT or HEALTHCHECK CMD; shell forms are refused."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not an exec form (JSON array): {args!r}") from exc
    if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"not a JSON array of strings: {args!r}")
    return value


def healthcheck_command(stage: Stage) -> list[str]:
    ins = stage.last("HEALTHCHECK")
    if ins is None:
        raise LookupError("no HEALTHCHECK")
    _options, marker, command = ins.args.partition("CMD ")
    if not marker:
        raise ValueError(f"HEALTHCHECK without CMD: {ins.args!r}")
    return exec_form(command.strip())


def start_command(stage: Stage) -> list[str]:
    """ENTRYPOINT + CMD of the final stage, as the container runs them."""
    entry = stage.last("ENTRYPOINT")
    cmd = stage.last("CMD")
    if cmd is None:
        raise LookupError("no CMD")
    return (exec_form(entry.args) if entry else []) + exec_form(cmd.args)


def exposed_port(stage: Stage) -> int:
    ins = stage.last("EXPOSE")
    if ins is None:
        raise LookupError("no EXPOSE")
    return int(ins.args.split("/")[0])


def env_vars(stage: Stage) -> dict[str, str]:
    """The ENV of a stage (``KEY=value`` pairs, shell-quoted values allowed)."""
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        for pair in shlex.split(ins.args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def copies(stage: Stage) -> list[tuple[list[str], str, dict[str, str]]]:
    """(sources, destination, options) of each COPY of a stage."""
    result = []
    for ins in stage.all("COPY"):
        words = ins.args.split()
        options = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
        paths = [w for w in words if not w.startswith("--")]
        result.append((paths[:-1], paths[-1], options))
    return result


def context_files(stage: Stage) -> dict[str, Path]:
    """Container path -> repository path, for what the stage copies from the build context."""
    mapping = {}
    for sources, destination, options in copies(stage):
        if "from" in options:
            continue
        for source in sources:
            target = destination
            if destination.endswith("/"):
                target = destination + Path(source).name
            mapping[target.rstrip("/")] = REPO / source
    return mapping


def left_out_packages(path: Path = DOCKERFILE) -> set[str]:
    """Locked packages the images deliberately do not install."""
    return set(re.findall(r"--no-(?:install|emit)-package\s+([\w.-]+)", path.read_text()))

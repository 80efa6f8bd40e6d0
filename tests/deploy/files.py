"""Readers for the deployment files the tests check: Dockerfile, YAML manifests, README."""

from __future__ import annotations

import importlib.util
import json
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"


@dataclass
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the (joined) line

    def exec_form(self) -> list[str]:
        """The JSON array of ENTRYPOINT/CMD/HEALTHCHECK CMD (a shell form is an error)."""
        text = self.args.split("CMD", 1)[1] if self.keyword == "HEALTHCHECK" else self.args
        value = json.loads(text)
        assert isinstance(value, list), f"{self.keyword} is not in exec form: {self.args}"
        return [str(v) for v in value]


def dockerfile(path: Path = ROOT / "Dockerfile") -> list[list[Instruction]]:
    """The Dockerfile's build stages, each a list of instructions (line continuations joined,
    comments dropped); instructions before the first FROM (global ARGs) form stage 0."""
    stages: list[list[Instruction]] = [[]]
    logical = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        keyword, _, args = logical.partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            stages.append([])
        stages[-1].append(Instruction(keyword.upper(), args.strip()))
    return stages


def yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def readme_first_command() -> list[list[str]]:
    """The commands of the README's first shell block (split at ``&&`` and line ends), each
    an argument list: how the README installs and starts ovtrio."""
    text = (ROOT / "README.md").read_text()
    block = text.split("```sh\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    lines = [x for x in block.splitlines() if x.strip() and not x.lstrip().startswith("#")]
    return [shlex.split(part, comments=True) for line in lines for part in line.split("&&")]


def healthcheck() -> Any:
    """deploy/docker/healthcheck.py (the image's health check) as a module."""
    spec = importlib.util.spec_from_file_location("healthcheck", HEALTHCHECK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flag_values(args: list[str]) -> dict[str, str]:
    """``--name=value`` and ``--name value`` pairs of a command line (argparse's two forms),
    read as the image's health check reads ovtrio's command line."""
    values: dict[str, str] = healthcheck().flags(args)
    return values

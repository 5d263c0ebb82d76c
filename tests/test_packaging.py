"""pyproject.toml and environment.yml declare the same dependencies; the CLI starts."""

from __future__ import annotations

import re
import subprocess
import sys

import tomllib
import yaml

from .conftest import ROOT


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ]", req, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r): r for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    have = {_name(r): r for r in pip}
    assert set(wanted) == set(have)
    for name in ("torch", "torchvision"):
        assert wanted[name].replace(" ", "") == have[name].replace(" ", "")
    assert "torch==2.14.1" in project["dependencies"] and "torchvision==0.29.1" in project["dependencies"]


def test_console_script_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "kairos_curate.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("value", "embed"):
        assert command in out


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in ci and "make test" in readme and "make repro" in readme


def test_scale_extra_and_environment_hold_ray_and_faiss():
    """The Ray and FAISS tests get their packages from the project's own files."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    for reqs in (project["optional-dependencies"]["scale"], project["optional-dependencies"]["dev"], pip):
        names = {_name(r) for r in reqs}
        assert {"ray", "faiss-cpu", "psutil"} <= names
        assert "ray[data]==2.60.0" in [r.replace(" ", "") for r in reqs]
    assert "More than one machine" in (ROOT / "README.md").read_text()

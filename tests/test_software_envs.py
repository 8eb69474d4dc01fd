"""The cluster environments in envs/ agree with pyproject.toml: each names every dependency of
ficomm and of the extras it installs, with a version inside pyproject's range (an exact pin in
pyproject must be the same pin), and installs ficomm itself with extras that exist."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def reqs_by_name(lines) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in lines]
    return {canonicalize_name(r.name): r for r in reqs}


def pip_section(doc: dict) -> list[str]:
    sections = [d["pip"] for d in doc["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(sections) == 1, "one pip section"
    return sections[0]


def test_the_three_environments_exist():
    assert {p.stem for p in ENV_FILES} >= {"cpu", "cuda", "sc2"}


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_environment_matches_pyproject(path):
    text = path.read_text()
    doc = yaml.safe_load(text)
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert f"conda env create -f envs/{path.name}" in header, "one-line install command"
    assert doc["name"] == f"ficomm-{path.stem}"

    pythons = [d for d in doc["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    assert len(pythons) == 1
    python = pythons[0].split("=", 1)[1]
    assert SpecifierSet(PYPROJECT["requires-python"]).contains(python + ".0")

    lines = pip_section(doc)
    own = [line for line in lines if line.startswith("-e ")]
    assert len(own) == 1, "ficomm itself, installed once"
    match = re.fullmatch(r"-e \.\.\[([\w,-]+)\]", own[0])
    assert match, f"expected '-e ..[extras]', got {own[0]!r}"
    extras = match.group(1).split(",")
    assert set(extras) <= set(PYPROJECT["optional-dependencies"]), extras

    named = reqs_by_name(line for line in lines if not line.startswith("-"))
    wanted = reqs_by_name(PYPROJECT["dependencies"])
    for extra in extras:
        wanted |= reqs_by_name(PYPROJECT["optional-dependencies"][extra])

    for name, declared in wanted.items():
        assert name in named, f"{path.name} does not name ficomm's dependency {name}"
        req = named[name]
        pins = [s for s in req.specifier if s.operator == "=="]
        assert len(pins) == 1 and len(req.specifier) == 1, f"{path.name}: pin {name} exactly"
        version = pins[0].version
        assert declared.specifier.contains(version, prereleases=True), (
            f"{path.name}: {name}=={version} is outside pyproject's {declared}"
        )
        exact = [s.version for s in declared.specifier if s.operator == "=="]
        assert not exact or exact == [version], f"{path.name}: {name} must be {exact[0]}"
        assert declared.extras <= req.extras, f"{path.name}: {name} needs extras {declared.extras}"


def test_sc2_environment_resolves_the_protobuf_conflict():
    doc = yaml.safe_load((ROOT / "envs" / "sc2.yaml").read_text())
    lines = pip_section(doc)
    named = reqs_by_name(line for line in lines if not line.startswith("-"))
    from ficomm.envs.sc2 import SMAC_GIT

    assert named["smac"].url == SMAC_GIT  # pinned to the commit the adapter names
    protobuf = next(iter(named["protobuf"].specifier)).version
    # wandb 0.25.0 declares protobuf>=3.19.0,<7,!=4.21.0,!=5.28.0 for Linux, Python 3.11
    # (envs/README.md); later releases require protobuf>4.21
    assert next(iter(named["wandb"].specifier)).version == "0.25.0"
    wandb_protobuf = SpecifierSet(">=3.19.0,<7,!=4.21.0,!=5.28.0")
    assert wandb_protobuf.contains(protobuf) and SpecifierSet("<3.21").contains(protobuf)
    # the jax stack stays out of the StarCraft II environment
    assert "jax" not in named and "jaxmarl" not in named

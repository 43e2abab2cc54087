"""Docker cannot build here, so the container files are checked against what is tested:
the Dockerfile installs exactly the README's steps (pinned torch, then the project), runs a
console script the project declares, and its settings and paths are ones the server reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from server import Settings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "docker" / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
DOCKER_README = (ROOT / "docker" / "README.md").read_text()
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions(name: str) -> list[str]:
    """Dockerfile instructions of one kind, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.startswith(name + " ")]


def pip_installs() -> list[str]:
    commands = [c.strip() for run in instructions("RUN") for c in run.split("&&")]
    return [c for c in commands if c.startswith("pip install")]


def torch_pin() -> str:
    (dep,) = [d for d in PYPROJECT["project"]["dependencies"] if d.startswith("torch")]
    return dep.split("#")[0].strip()


def test_dockerfile_installs_exactly_the_readme_steps():
    default_index = re.search(r"ARG TORCH_INDEX=(\S+)", DOCKERFILE).group(1)
    assert pip_installs() == [
        f'pip install --index-url "${{TORCH_INDEX}}" {torch_pin()}',
        "pip install .",
    ]
    for step in (f"pip install --index-url {default_index} {torch_pin()}", "pip install ."):
        assert step in DOCKER_README


def test_dockerfile_copies_every_package_pip_install_needs():
    copied = {c.split()[0] for c in instructions("COPY")}
    for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in copied
    assert {"pyproject.toml", "README.md"} <= set(instructions("COPY")[0].split()[:-1])


def test_image_runs_a_declared_script_as_a_non_root_user_with_a_healthcheck():
    (cmd,) = instructions("CMD")
    assert cmd.strip('[]"') in PYPROJECT["project"]["scripts"]
    (user,) = instructions("USER")
    assert user not in ("root", "0")
    (health,) = instructions("HEALTHCHECK")
    assert '"-m", "server.healthcheck"' in health
    assert (ROOT / "server" / "healthcheck.py").is_file()


def asl_settings(env: dict) -> dict:
    return {k[4:].lower(): v for k, v in env.items() if k.startswith("ASL_")}


def test_container_settings_are_settings_the_server_reads():
    fields = set(Settings.model_fields)
    env = dict(re.findall(r"(ASL_\w+)=(\S+)", " ".join(instructions("ENV"))))
    service = COMPOSE["services"]["asl-serve"]
    for variables in (env, service["environment"]):
        assert asl_settings(variables), "no ASL_ settings found"
        assert set(asl_settings(variables)) <= fields
    assert env["ASL_PORT"] == instructions("EXPOSE")[0]


def test_compose_mounts_the_store_and_checkpoint_it_points_at():
    service = COMPOSE["services"]["asl-serve"]
    assert (
        ROOT / "docker" / service["build"]["context"] / service["build"]["dockerfile"]
    ).is_file()
    (volume,) = service["volumes"]
    _, target, mode = volume.split(":")
    assert mode == "ro"
    for key in ("ASL_STORE", "ASL_CHECKPOINT"):
        assert service["environment"][key].startswith(target + "/")

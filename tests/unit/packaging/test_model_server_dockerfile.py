"""docker/model-server/Dockerfile without a Docker engine: what it copies exists, what it runs our CLI accepts."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from testsupport import REPO

from mlops_airflow.cli import build_parser, serve_config
from mlops_airflow.serving.config import ENV, ServerConfig

DOCKERFILE = REPO / "docker" / "model-server" / "Dockerfile"
SHA = "0" * 64


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        joined.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def one(name: str) -> str:
    found = [args for instruction, args in instructions() if instruction == name]
    assert len(found) == 1, f"expected one {name}, found {found}"
    return found[0]


def image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in instructions():
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_base_image_port_user_and_install() -> None:
    assert one("FROM") == "python:3.11-slim"
    assert one("EXPOSE") == "8080"
    user = one("USER")
    assert user not in ("root", "0") and user.isdigit()  # numeric: runAsNonRoot can verify it
    run = one("RUN")
    assert "pip install --constraint constraints.txt ." in run
    assert "useradd --uid " + user in run
    assert image_env()["MLOPS_AIRFLOW_SERVER_PORT"] == "8080"


def test_everything_it_copies_exists_and_is_not_ignored() -> None:
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    copies = [args for instruction, args in instructions() if instruction == "COPY"]
    assert copies
    for args in copies:
        *sources, _destination = shlex.split(args)
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            assert f"!{source}" in ignore or f"!{source}/**" in ignore, f"{source} is excluded from the context"
    copied = {source for args in copies for source in shlex.split(args)[:-1]}
    assert {"constraints.txt", "pyproject.toml", "mlops_airflow"} <= copied


def test_the_healthcheck_probes_health_with_what_the_image_has() -> None:
    healthcheck = one("HEALTHCHECK")
    command = healthcheck.split(" CMD ", 1)[1]
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-c"]  # the slim image has no curl
    assert "/health" in argv[2]
    compile(argv[2], "HEALTHCHECK", "exec")


@pytest.fixture
def container_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for variable in ENV.values():
        monkeypatch.delenv(variable, raising=False)
    env = image_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def config_for(argv: list[str]) -> ServerConfig:
    entrypoint = json.loads(one("ENTRYPOINT"))
    assert entrypoint[0] == "mlops-airflow"
    return serve_config(build_parser().parse_args(["--registry", "/tmp/registry", *entrypoint[1:], *argv]))


def test_entrypoint_and_cmd_are_accepted_by_our_cli(container_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert json.loads(one("ENTRYPOINT")) == ["mlops-airflow", "serve"]
    cmd = json.loads(one("CMD"))
    monkeypatch.setenv("MLOPS_AIRFLOW_MODEL_NAME", "taxi")  # CMD names no model: the environment does
    got = config_for(cmd)
    assert (got.model_name, got.host, got.port, got.alias) == ("taxi", "0.0.0.0", 8080, "champion")


def test_the_kubernetes_deployment_s_arguments_are_accepted(container_env: dict[str, str]) -> None:
    # what the Deployment runs: mlops-airflow serve NAME --version N --expect-sha256 HEX --host 0.0.0.0 --port 8080
    got = config_for(["taxi", "--version", "3", "--expect-sha256", SHA, "--host", "0.0.0.0", "--port", "8080"])
    assert (got.model_name, got.version, got.expect_sha256, got.host, got.port) == ("taxi", 3, SHA, "0.0.0.0", 8080)
    assert got.pinned


def test_without_a_model_name_the_container_serves_every_model(container_env: dict[str, str]) -> None:
    everything = config_for([])
    assert (everything.model_name, everything.models) == (None, ())
    assert config_for(["trips_*"]).models == ("trips_*",)


def test_the_build_context_is_the_repository_root() -> None:
    assert Path(REPO / "pyproject.toml").is_file()
    assert "docker build -f docker/model-server/Dockerfile" in DOCKERFILE.read_text()

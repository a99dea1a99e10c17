"""docker-compose.yaml and the Airflow image's Dockerfile, checked without a Docker engine.

No Docker runs where these tests run, so what can be checked statically is: the file against
the Compose Specification's JSON schema (vendored in tests/schemas), every file and build
context it names, and that the services agree with one another (one Airflow configuration,
one registry, every dependency and volume declared).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
COMPOSE = REPO / "docker-compose.yaml"
SCHEMA = REPO / "tests" / "schemas" / "compose-spec.json"
AIRFLOW_SERVICES = {"airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
                    "airflow-dag-processor": "dag-processor", "airflow-worker": "celery worker",
                    "airflow-triggerer": "triggerer", "airflow-init": None}
SHARED_AIRFLOW_ENV = ("AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__AUTH_MANAGER", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                      "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CORE__FERNET_KEY",
                      "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
                      "MLOPS_AIRFLOW_REGISTRY_URI", "AIRFLOW_CONN_MLOPS_S3", "AWS_ENDPOINT_URL")
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ``${V}``, ``${V:-default}``, ``${V-default}``, ``${V:?error}``, ``$$``."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"] or ""
        current = env.get(name)
        if op in (":?", "?") and (current is None or (op == ":?" and current == "")):
            raise ValueError(f"required variable {name} is missing a value: {arg}")
        if op in (":-",) and not current:
            return arg
        if op == "-" and current is None:
            return arg
        return current or ""

    return _VARIABLE.sub(value, text.replace("$$", "\0")).replace("\0", "$")


def load(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as compose reads it: variables interpolated, then YAML with anchors and merges."""
    return yaml.safe_load(interpolate(COMPOSE.read_text(), {"AIRFLOW_JWT_SECRET": "x" * 64, **(env or {})}))


def load_dag_param(name: str) -> Any:
    """The default of one of the example CT DAG's Params, read from its source (no Airflow import here)."""
    source = (REPO / "dags" / "mlops_continuous_training.py").read_text()
    match = re.search(rf'"{name}": Param\("([^"]*)"', source)
    assert match, f"no Param {name} in the example DAG"
    return match.group(1)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_the_compose_file_is_valid_against_the_compose_spec_schema(compose: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)
    # The schema is strict enough to notice a mistake of the kind a hand edit makes.
    broken = copy.deepcopy(compose)
    broken["services"]["model-server"]["depends_on"]["minio-init"]["condition"] = "service_ready"
    broken["services"]["redis"]["healthcheck"]["interval_seconds"] = 10
    assert len(list(validator.iter_errors(broken))) == 2


def test_the_stack_has_the_official_services_and_ours(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*AIRFLOW_SERVICES, "postgres", "redis", "minio", "minio-init", "model-server", "mlflow"}
    for name, command in AIRFLOW_SERVICES.items():
        if command:
            assert services[name]["command"] == command
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
        assert services[name]["image"] == "mlops-airflow:local"


def test_the_jwt_secret_must_be_set_no_published_default_exists() -> None:
    with pytest.raises(ValueError, match="AIRFLOW_JWT_SECRET"):
        interpolate(COMPOSE.read_text(), {})
    assert load({"AIRFLOW_JWT_SECRET": "s3cr3t"})["services"]["airflow-apiserver"]["environment"][
        "AIRFLOW__API_AUTH__JWT_SECRET"] == "s3cr3t"


def test_every_airflow_service_shares_one_configuration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    reference = environment(services["airflow-apiserver"])
    for key in SHARED_AIRFLOW_ENV:
        assert reference.get(key), f"{key} is not set for the api-server"
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        mismatched = {key: env.get(key) for key in SHARED_AIRFLOW_ENV if env.get(key) != reference[key]}
        assert not mismatched, f"{name} differs from airflow-apiserver: {mismatched}"
    # Where they point must exist in this file.
    assert "@postgres/" in reference["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert "@redis:6379/" in reference["AIRFLOW__CELERY__BROKER_URL"]
    assert reference["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert "8080:8080" in services["airflow-apiserver"]["ports"]


def test_registry_s3_and_model_server_settings_agree(compose: dict[str, Any]) -> None:
    services = compose["services"]
    airflow, server = environment(services["airflow-worker"]), environment(services["model-server"])
    registry = airflow["MLOPS_AIRFLOW_REGISTRY_URI"]
    assert registry.startswith("s3://") and server["MLOPS_AIRFLOW_REGISTRY_URI"] == registry
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION"):
        assert server[key] == airflow[key], key
    minio = environment(services["minio"])
    assert (airflow["AWS_ACCESS_KEY_ID"], airflow["AWS_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"], minio["MINIO_ROOT_PASSWORD"])
    assert airflow["AWS_ENDPOINT_URL"] == "http://minio:9000"
    # The tasks' connection names the same S3 as the environment.
    for conn_id, conn_type in (("MLOPS_S3", "mlops_s3"), ("AWS_DEFAULT", "aws")):
        conn = json.loads(airflow[f"AIRFLOW_CONN_{conn_id}"])
        assert conn["conn_type"] == conn_type
        assert (conn["login"], conn["password"]) == (airflow["AWS_ACCESS_KEY_ID"], airflow["AWS_SECRET_ACCESS_KEY"])
        assert conn["extra"]["endpoint_url"] == airflow["AWS_ENDPOINT_URL"]
    # The deploy task waits for the model server at the URL it listens on, and it serves the
    # example DAG's model; the image's entrypoint is `mlops-airflow serve`, the command its arguments.
    command = services["model-server"]["command"]
    dockerfile = (REPO / services["model-server"]["build"]["dockerfile"]).read_text()
    assert re.search(r'^ENTRYPOINT \["mlops-airflow", "serve"\]$', dockerfile, re.M)
    assert command[0] == "trip_tips" == load_dag_param("model_name")
    port = command[command.index("--port") + 1]
    assert airflow["MLOPS_AIRFLOW_SERVER_URL"] == f"http://model-server:{port}"
    assert f"{port}:{port}" in services["model-server"]["ports"]


def test_minio_init_makes_every_bucket_the_stack_uses(compose: dict[str, Any]) -> None:
    services = compose["services"]
    made = set(re.findall(r"mc mb --ignore-existing local/([a-z0-9.-]+)", services["minio-init"]["command"][0]))
    used = {environment(services["airflow-worker"])["MLOPS_AIRFLOW_REGISTRY_URI"]}
    command = services["mlflow"]["command"]
    used.add(command[command.index("--artifacts-destination") + 1])
    assert {uri.removeprefix("s3://").split("/")[0] for uri in used} == made
    for name, service in services.items():
        if "AWS_ENDPOINT_URL" in environment(service):
            assert service["depends_on"]["minio-init"]["condition"] == "service_completed_successfully", name


def test_dependencies_and_volumes_are_declared(compose: dict[str, Any]) -> None:
    services, declared = compose["services"], set(compose["volumes"])
    used = set()
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{name} waits for {target} to be healthy; it has no healthcheck"
            if rule["condition"] == "service_completed_successfully":
                assert "restart" not in services[target], f"{name} waits for {target} to exit, but it restarts"
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
                used.add(source)
    assert used == declared


def test_every_referenced_file_and_build_context_exists(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        build = service.get("build")
        if build:
            context = REPO / build["context"]
            assert context.is_dir(), f"{name}: build context {context} is missing"
            assert (context / build.get("dockerfile", "Dockerfile")).is_file(), (
                f"{name}: {build.get('dockerfile')} is missing")
        for volume in service.get("volumes") or []:
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (REPO / source).exists(), f"{name}: bind-mount source {source} is missing"
    assert (REPO / "dags" / "mlops_continuous_training.py").is_file()
    assert (REPO / "include" / "trips_validation.yaml").is_file()


def test_mlflow_is_an_optional_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["mlflow"]["profiles"] == ["mlflow"]
    for name, service in services.items():
        if name != "mlflow":
            assert "profiles" not in service, f"{name} would not start by default"
            assert "mlflow" not in (service.get("depends_on") or {}), f"{name} needs the optional mlflow service"
    command = services["mlflow"]["command"]
    assert command[0] == "server" and command[command.index("--port") + 1] == "5000"
    # Its SQLite store lives on its volume, in a folder the image makes writable for the stack's user.
    store = command[command.index("--backend-store-uri") + 1].removeprefix("sqlite:///")
    (mount,) = [v.split(":", 1)[1] for v in services["mlflow"]["volumes"] if v.startswith("mlflow-data:")]
    assert Path(store).parent == Path(mount)
    assert f"mkdir -p {mount}" in (REPO / "Dockerfile").read_text()
    assert services["mlflow"]["user"] == services["airflow-worker"]["user"]
    assert environment(services["airflow-worker"])["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_the_image_installs_the_bundle_with_the_repositorys_pins() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)
    assert pinned
    base = re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:(\S+)$", dockerfile, re.M)
    assert base and base.group(1).split("-")[0] == pinned.group(1), "the base image's Airflow differs from constraints.txt"
    assert re.search(r"^FROM \$\{AIRFLOW_IMAGE\}$", dockerfile, re.M)
    assert "--constraint constraints.txt" in dockerfile and '"/opt/mlops-airflow[aws,mlflow]"' in dockerfile
    for line in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, re.M):
        for source in line.split():
            assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".airflow", ".git"} <= set(ignored)
    assert not {"mlops_airflow", "dags", "include", "pyproject.toml", "constraints.txt"} & set(ignored)

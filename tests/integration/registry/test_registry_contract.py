"""The registry's promises, checked on every backend: a local disk, S3 over HTTP (moto's server), and a real
MLflow server (SQLite store, artifacts on the S3 server) whose missing guarantees the backend compensates."""

from __future__ import annotations

import json
import multiprocessing
import os
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from testsupport import candidate_fields

from mlops_airflow.exceptions import AliasConflict, ModelNotFound, RegistryError
from mlops_airflow.records import validate_record
from mlops_airflow.registry import ModelRegistry, RegistryBackend, open_registry
from mlops_airflow.storage import open_store

pytestmark = pytest.mark.integration
RACERS = 8


def build_registry(spec: dict[str, Any], client: Any = None) -> ModelRegistry:
    """The backend ``spec`` names, built through the same factory the CLI, hooks and server use."""
    if spec["backend"] in {"s3", "mlflow"}:
        import boto3

        client = client or boto3.client("s3", endpoint_url=spec["endpoint"], region_name="us-east-1")
    registry = open_registry(spec["uri"], s3_client=client)
    if spec["backend"] == "mlflow":
        registry.client  # noqa: B018 - import mlflow now, so that racers race on registering, not on importing
    return registry


@pytest.fixture(params=["local", "s3", "mlflow"])
def spec(request: pytest.FixtureRequest, tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return {"backend": "local", "uri": str(tmp_path / "registry")}
    endpoint = request.getfixturevalue("s3_endpoint")
    if request.param == "mlflow":
        return {"backend": "mlflow", "uri": request.getfixturevalue("mlflow_registry_uri"), "endpoint": endpoint}
    bucket = request.getfixturevalue("s3_bucket")
    return {"backend": "s3", "uri": f"s3://{bucket}/registry", "endpoint": endpoint}


def mlflow_alias(registry: Any, model: str, alias: str) -> int | None:
    """What MLflow itself says the alias points at (None: unset) — the mirror of our CAS record."""
    aliases = registry.client.get_registered_model(model).aliases
    return int(aliases[alias]) if alias in aliases else None


def test_backend_declares_its_capabilities_and_compensates_what_it_lacks(spec: dict[str, Any]) -> None:
    registry = build_registry(spec)
    assert isinstance(registry, RegistryBackend)
    promised = {"alias_cas", "concurrent_register", "idempotent_register", "atomic_commit"}
    assert all(registry.capabilities[name] for name in promised)
    assert registry.capabilities["multi_host"] is (spec["backend"] != "local")
    lacking = {name for name, native in registry.native_capabilities.items() if not native}
    assert lacking == set(registry.compensations)  # every missing guarantee says how it is made up for
    if spec["backend"] == "mlflow":
        assert lacking == {"alias_cas", "concurrent_register", "idempotent_register"}


def candidate(registry: ModelRegistry, payload: bytes, model: str = "m") -> dict[str, Any]:
    return registry.put_artifact(model, payload, candidate_fields())


def test_register_numbers_versions_and_resolves_aliases(spec: dict[str, Any]) -> None:
    registry = build_registry(spec)
    first = registry.register("m", candidate(registry, b"one"), idempotency_key="d/r1/register/-1")
    second = registry.register("m", candidate(registry, b"two"), idempotency_key="d/r2/register/-1")
    assert (first["version"], second["version"]) == (1, 2)
    assert registry.list_models() == ["m"]
    assert registry.list_versions("m") == [1, 2]
    registry.set_alias("m", "champion", 1, expected=None, by="test", reason="first")
    registry.set_alias("m", "champion", 2, expected=1, by="test", reason="better")
    assert registry.resolve("m", alias="champion")["sha256"] == second["sha256"]
    assert registry.get_alias("m", "champion")["previous"] == 1
    assert registry.aliases("m") == {"champion": 2}
    assert registry.get_version("m", 2) == second
    validate_record("manifest", second)
    if spec["backend"] == "mlflow":
        assert mlflow_alias(registry, "m", "champion") == 2
        assert second["artifact_uri"].startswith("mlflow-artifacts:/")


def test_alias_compare_and_swap_refuses_a_stale_expectation(spec: dict[str, Any]) -> None:
    registry = build_registry(spec)
    for i in range(3):
        registry.register("m", candidate(registry, bytes([i])), idempotency_key=f"k{i}")
    registry.set_alias("m", "champion", 1, expected=None, by="t", reason="r")
    registry.set_alias("m", "champion", 2, expected=1, by="t", reason="r")
    with pytest.raises(AliasConflict, match="is at version 2, expected 1"):
        registry.set_alias("m", "champion", 3, expected=1, by="t", reason="r")
    with pytest.raises(AliasConflict):
        registry.set_alias("m", "champion", 3, expected=None, by="t", reason="r")
    assert registry.get_alias("m", "champion")["version"] == 2
    validate_record("alias", registry.get_alias("m", "champion"))
    if spec["backend"] == "mlflow":
        assert mlflow_alias(registry, "m", "champion") == 2  # a lost CAS never reaches MLflow's alias
    registry.remove_alias("m", "champion", expected=2)
    assert registry.get_alias("m", "champion") is None
    if spec["backend"] == "mlflow":
        assert mlflow_alias(registry, "m", "champion") is None


def test_retried_register_returns_the_same_version(spec: dict[str, Any]) -> None:
    registry = build_registry(spec)
    record = candidate(registry, b"model")
    first = registry.register("m", record, idempotency_key="dag/run/register/-1")
    again = registry.register("m", record, idempotency_key="dag/run/register/-1")
    assert again["version"] == first["version"] == 1
    assert registry.list_versions("m") == [1]
    # A re-created run with the same run id but a different candidate must not reuse it.
    other = registry.register("m", candidate(registry, b"other"), idempotency_key="dag/run/register/-1")
    assert other["version"] == 2


def test_register_refuses_a_missing_artifact(spec: dict[str, Any]) -> None:
    registry = build_registry(spec)
    with pytest.raises(RegistryError, match="no stored artifact"):
        registry.register("m", {"sha256": "0" * 64}, idempotency_key="k")
    assert registry.list_versions("m") == []


def test_unknown_model_version_and_alias_are_named(spec: dict[str, Any]) -> None:
    registry = build_registry(spec)
    with pytest.raises(ModelNotFound, match="no model named 'nope'"):
        registry.resolve("nope")
    registry.register("m", candidate(registry, b"x"), idempotency_key="k")
    with pytest.raises(ModelNotFound, match="has no version 7"):
        registry.resolve("m", version=7)
    with pytest.raises(ModelNotFound, match="has no alias 'champion'"):
        registry.resolve("m", alias="champion")


def _race_register(spec: dict[str, Any], index: int, barrier: Any, results: Any) -> None:
    registry = build_registry(spec)
    record = candidate(registry, f"model-{index}".encode())
    barrier.wait()
    results.put(registry.register("m", record, idempotency_key=f"dag/run-{index}/register/-1")["version"])


def _race_alias(spec: dict[str, Any], index: int, barrier: Any, results: Any) -> None:
    registry = build_registry(spec)
    barrier.wait()
    try:
        registry.set_alias("m", "champion", index + 1, expected=None, by=f"racer-{index}", reason="race")
        results.put("won")
    except AliasConflict:
        results.put("lost")


def _run_racers(target: Any, spec: dict[str, Any]) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(RACERS), ctx.Queue()
    procs = [ctx.Process(target=target, args=(spec, i, barrier, results)) for i in range(RACERS)]
    for proc in procs:
        proc.start()
    out = [results.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
        assert proc.exitcode == 0
    return out


def test_parallel_processes_never_share_a_version(spec: dict[str, Any]) -> None:
    versions = _run_racers(_race_register, spec)
    assert sorted(versions) == list(range(1, RACERS + 1))
    registry = build_registry(spec)
    shas = {registry.get_version("m", v)["sha256"] for v in versions}
    assert len(shas) == RACERS


def test_parallel_alias_creation_has_exactly_one_winner(spec: dict[str, Any]) -> None:
    registry = build_registry(spec)
    for i in range(RACERS):
        registry.register("m", candidate(registry, bytes([i])), idempotency_key=f"k{i}")
    outcomes = _run_racers(_race_alias, spec)
    assert outcomes.count("won") == 1
    assert outcomes.count("lost") == RACERS - 1
    if spec["backend"] == "mlflow":
        assert mlflow_alias(registry, "m", "champion") == registry.get_alias("m", "champion")["version"]


class _InjectedClient:
    """A real S3 client with scripted faults: 409 conflicts, and PUTs whose answer is lost."""

    def __init__(self, real: Any, *, conflicts: int = 0, lose_answer_for: str | None = None) -> None:
        self.real = real
        self.conflicts = conflicts
        self.lose_answer_for = lose_answer_for
        self.puts: list[str] = []

    def put_object(self, **kwargs: Any) -> Any:
        self.puts.append(kwargs["Key"])
        if self.conflicts and "IfNoneMatch" in kwargs:
            self.conflicts -= 1
            raise ClientError(
                {"Error": {"Code": "ConditionalRequestConflict", "Message": "conflict"},
                 "ResponseMetadata": {"HTTPStatusCode": 409}},
                "PutObject",
            )
        answer = self.real.put_object(**kwargs)
        if self.lose_answer_for and self.lose_answer_for in kwargs["Key"]:
            self.lose_answer_for = None
            raise EndpointConnectionError(endpoint_url="http://lost-response")
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _s3_spec(s3_endpoint: str, s3_bucket: str) -> dict[str, Any]:
    return {"backend": "s3", "uri": f"s3://{s3_bucket}/reg", "endpoint": s3_endpoint}


def test_s3_conflict_409_retries_the_same_version(s3_endpoint: str, s3_bucket: str, s3_client: Any) -> None:
    client = _InjectedClient(s3_client, conflicts=2)
    registry = build_registry(_s3_spec(s3_endpoint, s3_bucket), client)
    record = registry.register("m", candidate(registry, b"x"), idempotency_key="k")
    assert record["version"] == 1
    assert client.puts.count("reg/m/versions/1.json") >= 1
    assert registry.list_versions("m") == [1]


def test_s3_lost_response_is_recognised_as_our_own_version(s3_endpoint: str, s3_bucket: str, s3_client: Any) -> None:
    client = _InjectedClient(s3_client, lose_answer_for="versions/1.json")
    registry = build_registry(_s3_spec(s3_endpoint, s3_bucket), client)
    record = registry.register("m", candidate(registry, b"x"), idempotency_key="k")
    assert record["version"] == 1
    assert client.puts.count("reg/m/versions/1.json") == 2  # the lost PUT and its retry (412)
    assert registry.list_versions("m") == [1]
    stored = json.loads(registry.store.read_bytes("m/versions/1.json"))
    assert stored["idempotency_key"] == "k"


def test_local_registry_that_cannot_be_written_says_where(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from mlops_airflow.exceptions import StorageError

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the registry folder should be")
    registry = ModelRegistry(open_store(str(blocked / "registry")))
    with pytest.raises(StorageError, match="cannot write"):
        registry.put_artifact("m", b"x", {})
    assert not os.path.isdir(blocked)


def test_an_invalid_manifest_is_never_committed(spec: dict[str, Any]) -> None:
    registry = build_registry(spec)
    record = candidate(registry, b"x")
    del record["feature_schema"]
    with pytest.raises(RegistryError, match="invalid manifest: <record>: 'feature_schema' is a required property"):
        registry.register("m", record, idempotency_key="k")
    unblessed = {**candidate(registry, b"y"), "verdict": {**candidate_fields()["verdict"], "blessed": False}}
    with pytest.raises(RegistryError, match="invalid manifest: verdict.blessed"):
        registry.register("m", unblessed, idempotency_key="k2")
    assert registry.list_versions("m") == []


def test_records_from_a_newer_format_are_refused_not_misread(spec: dict[str, Any]) -> None:
    registry = build_registry(spec)
    registry.register("m", candidate(registry, b"x"), idempotency_key="k")
    future = {**registry.get_version("m", 1), "format_version": 99}
    if spec["backend"] == "mlflow":
        registry.client.set_model_version_tag("m", "1", "mlops.manifest", json.dumps(future))
    else:
        registry.store.write_bytes("m/versions/1.json", json.dumps(future).encode())
    with pytest.raises(RegistryError, match="format 99, newer than this mlops-airflow reads"):
        registry.get_version("m", 1)


def test_s3_lost_answer_to_an_alias_write_is_our_own_success(s3_endpoint: str, s3_bucket: str, s3_client: Any) -> None:
    plain = build_registry(_s3_spec(s3_endpoint, s3_bucket), s3_client)
    for i in range(2):
        plain.register("m", candidate(plain, bytes([i])), idempotency_key=f"k{i}")
    client = _InjectedClient(s3_client, lose_answer_for="aliases/champion.json")
    registry = build_registry(_s3_spec(s3_endpoint, s3_bucket), client)
    registry.set_alias("m", "champion", 1, expected=None, by="t", reason="first")  # create: answer lost
    client.lose_answer_for = "aliases/champion.json"
    registry.set_alias("m", "champion", 2, expected=1, by="t", reason="second")  # replace: answer lost
    assert registry.get_alias("m", "champion")["version"] == 2


def test_listing_reads_the_index_and_sees_past_a_stale_summary(spec: dict[str, Any],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_airflow.registry.overview import model_listing

    registry = build_registry(spec)
    for model in ("b", "a"):
        registry.register(model, candidate(registry, model.encode(), model), idempotency_key="k")
    registry.put_artifact("rejected", b"r", candidate_fields())  # only a candidate: not a model
    registry.set_alias("a", "champion", 1, expected=None, by="t", reason="r")
    assert registry.list_models() == ["a", "b"] and registry.list_models("b*") == ["b"]
    first = model_listing(registry, limit=1)
    assert (first.total, first.more, first.unindexed) == (2, True, 0)
    assert {k: first.rows[0][k] for k in ("name", "versions", "latest", "aliases")} == {
        "name": "a", "versions": 1, "latest": 1, "aliases": {"champion": 1}}

    def crash(model: str) -> str:
        raise OSError("the process died after its commit")

    with monkeypatch.context() as patch:
        patch.setattr(registry.index, "refresh", crash)
        registry.register("b", candidate(registry, b"b2", "b"), idempotency_key="k2")
    assert json.loads(registry.store.read_bytes("_index/models/b.json"))["latest"] == 1  # stale, and marked so:
    assert [row["latest"] for row in model_listing(registry).rows] == [1, 2]
    registry.index.rebuild()
    assert json.loads(registry.store.read_bytes("_index/models/b.json"))["latest"] == 2

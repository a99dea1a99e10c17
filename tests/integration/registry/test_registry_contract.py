"""The registry's promises, checked on every backend: a local disk, S3 over HTTP (moto's server), and a real
MLflow server (SQLite store, artifacts on the S3 server) whose missing guarantees the backend compensates."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
#: Trials of 2-4 overlapping attempts of one task, and how far apart their starts may fall.
TRIALS, SPREAD = 10, 0.3
#: Added to store requests in the overlap trials: tens of ms a request, as S3 seen from another
#: region; the zombie, stalled on its host, takes longer to create a version's manifest.
LATENCY, ZOMBIE_LATENCY = 0.01, 0.35


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


class _Distant:
    """A store whose requests take ``latency`` longer (``only``: just this method on keys containing that)."""

    def __init__(self, store: Any, latency: float, only: tuple[str, str] | None = None) -> None:
        self._store, self._latency, self._only = store, latency, only

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def slow(*args: Any, **kwargs: Any) -> Any:
            if self._only is None or (name == self._only[0] and self._only[1] in str(args[:1])):
                time.sleep(self._latency)
            return attr(*args, **kwargs)

        return slow


def _zombie_and_retries(spec: dict[str, Any], retries: int, key: str, rng: random.Random,
                        takeover_after: float) -> list[int]:
    """One attempt of a task stalls while committing; its retries start 0-SPREAD s after it claimed.

    Returns the version each attempt got. The zombie's requests on version keys take
    :data:`ZOMBIE_LATENCY`, the retries' every request :data:`LATENCY` (S3 seen from afar).
    """
    attempts = [build_registry(spec) for _ in range(1 + retries)]
    for index, registry in enumerate(attempts):
        registry.takeover_after = takeover_after
        if spec["backend"] != "mlflow":  # MLflow's own calls are slow enough
            registry.store = _Distant(registry.store, *((ZOMBIE_LATENCY, ("create", "/versions/")) if index == 0 else (LATENCY,)))
    record = candidate(attempts[0], key.encode())
    started = "m/locks" if spec["backend"] == "mlflow" else "m/claims"
    claims = len(attempts[0].store.list(started)) if spec["backend"] != "mlflow" else 0

    def attempt(registry: ModelRegistry, offset: float | None) -> int:
        if offset is not None:  # a retry: once the zombie holds its claim (or MLflow's lock), after offset s
            deadline = time.monotonic() + 60
            while len(registry.store.list(started)) <= claims:
                assert time.monotonic() < deadline, "the zombie never claimed"
                time.sleep(0.005)
            time.sleep(offset)
        return int(registry.register("m", record, idempotency_key=key)["version"])

    offsets = [None] + [rng.uniform(0, SPREAD) for _ in range(retries)]
    with ThreadPoolExecutor(len(attempts)) as pool:
        return list(pool.map(attempt, attempts, offsets))


def test_overlapping_attempts_of_one_task_make_one_version(spec: dict[str, Any]) -> None:
    """A zombie attempt and 1-3 retries overlapping it, in many trials: each trial adds one version, which
    every attempt of it returns. In every other trial, waiters take the claim over at their first look,
    from a zombie alive and busy, which must be just as safe."""
    registry = build_registry(spec)
    for index in range(8):  # a model with history: a retry that scans it gives the zombie time to commit
        registry.register("m", candidate(registry, bytes([index])), idempotency_key=f"dag/old-{index}/register/-1")
    rng = random.Random(16)
    trials = TRIALS if spec["backend"] != "mlflow" else TRIALS // 2
    outcomes = {}
    for trial in range(trials):
        before = registry.list_versions("m")
        got = _zombie_and_retries(spec, 1 + trial % 3, f"dag/run-{trial}/register/-1", rng,
                                  takeover_after=0.0 if trial % 2 else 30.0)
        outcomes[trial] = (got, registry.list_versions("m")[len(before):])
    bad = {trial: seen for trial, seen in outcomes.items() if len(set(seen[0])) != 1 or seen[1] != seen[0][:1]}
    assert not bad, f"{len(bad)} of {trials} trials (versions returned, versions added): {bad}"


def _die_registering(spec: dict[str, Any], when: str) -> None:
    """Register, and die by SIGKILL right before (or right after) creating the version's manifest."""
    registry = build_registry(spec)
    record = candidate(registry, b"model")
    store, create = registry.store, registry.store.create

    def create_then_die(key: str, data: bytes) -> bool:
        if "/versions/" in key and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        created = create(key, data)
        if "/versions/" in key:
            os.kill(os.getpid(), signal.SIGKILL)
        return created

    store.create = create_then_die  # type: ignore[method-assign]
    registry.register("m", record, idempotency_key="dag/run/register/-1")


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_retry_takes_over_the_claim_of_a_killed_attempt(spec: dict[str, Any], when: str) -> None:
    """kill -9 between claiming and committing (before: no manifest; after: a manifest, claim unfilled)."""
    if spec["backend"] == "mlflow":
        pytest.skip("the MLflow backend registers under a lease lock (see test_registry_backends)")
    dead = multiprocessing.get_context("spawn").Process(target=_die_registering, args=(spec, when))
    dead.start()
    dead.join(timeout=120)
    assert dead.exitcode == -signal.SIGKILL
    registry = build_registry(spec)
    registry.takeover_after = 1.0
    (claim_key,) = registry.store.list("m/claims")
    assert json.loads(registry.store.read_bytes(claim_key))["version"] is None  # left unfinished
    if when == "before":  # meanwhile another run takes the number the dead attempt was about to create
        registry.register("m", candidate(registry, b"other"), idempotency_key="dag/other/register/-1")
    record = candidate(registry, b"model")
    version = registry.register("m", record, idempotency_key="dag/run/register/-1")["version"]
    assert version == (2 if when == "before" else 1)
    assert registry.register("m", record, idempotency_key="dag/run/register/-1")["version"] == version
    assert registry.list_versions("m") == ([1, 2] if when == "before" else [1])
    assert json.loads(registry.store.read_bytes(claim_key))["version"] == version


def test_an_unfinished_claim_of_an_older_release_is_taken_over_and_its_version_found(spec: dict[str, Any]) -> None:
    """Claims written before owners and numbers were recorded: ``{idempotency_key, sha256, version: null}``."""
    if spec["backend"] == "mlflow":
        pytest.skip("the MLflow backend registers under a lease lock, not a claim")
    registry = build_registry(spec)
    registry.takeover_after = 0.5
    record = candidate(registry, b"model")
    first = registry.register("m", record, idempotency_key="dag/run/register/-1")
    (claim_key,) = registry.store.list("m/claims")
    old = {"idempotency_key": "dag/run/register/-1", "sha256": record["sha256"], "version": None}
    registry.store.write_bytes(claim_key, json.dumps(old).encode())  # the old release died before filling it in
    assert registry.register("m", record, idempotency_key="dag/run/register/-1") == first
    assert registry.list_versions("m") == [1]


def test_mlflow_attempt_stalled_past_its_lock_settles_on_its_twins_version(mlflow_registry_uri: str,
                                                                          s3_endpoint: str) -> None:
    """A zombie holds the register lock, stalls past its lease; its retry takes the lock and registers;
    the zombie then creates a version too: it must return the retry's, and commit nothing new."""
    spec = {"backend": "mlflow", "uri": mlflow_registry_uri, "endpoint": s3_endpoint}
    zombie, retry = build_registry(spec), build_registry(spec)
    zombie.lock_ttl = 1.0  # type: ignore[attr-defined]
    record = candidate(zombie, b"model")
    stalled, retried = threading.Event(), threading.Event()
    create = zombie._create_version  # type: ignore[attr-defined]

    def stall_then_create(*args: Any, **kwargs: Any) -> Any:
        stalled.set()
        assert retried.wait(timeout=120), "the retry never registered"
        return create(*args, **kwargs)

    zombie._create_version = stall_then_create  # type: ignore[attr-defined]
    with ThreadPoolExecutor(1) as pool:
        late = pool.submit(zombie.register, "m", record, idempotency_key="dag/run/register/-1")
        assert stalled.wait(timeout=120)
        first = retry.register("m", record, idempotency_key="dag/run/register/-1")
        retried.set()
        assert late.result(timeout=120)["version"] == first["version"] == 1
    assert retry.list_versions("m") == [1]

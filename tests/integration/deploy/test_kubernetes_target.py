"""The Kubernetes deploy target through the REAL kubernetes client against a fake API server.

No cluster is used: the fake (fake_kube.py) stores objects in memory and plays the
Deployment controller; its Service and Pod proxies forward to REAL `mlops-airflow serve`
processes, so the smoke tests and the canary's /metrics are answered by a real server.
The servers follow the champion alias (the pipeline moves it before the rollout), where
real pods would be pinned to the version by their command line.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from testsupport import BIN, SAMPLE, ServerProcess, eventually, free_port

from mlops_airflow.deploy.kubernetes import SHA_ANNOTATION, CanaryPolicy, KubernetesSettings, KubernetesTarget
from mlops_airflow.exceptions import DeployError
from mlops_airflow.pipeline.deploy import run_deployment, smoke_rows
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.storage import open_store

if TYPE_CHECKING:
    from fake_kube import FakeKube

pytestmark = pytest.mark.integration
JAN, BOTH = str(SAMPLE / "trips_2026_01.csv"), str(SAMPLE / "trips_2026_*.csv")
FAST = "sklearn.linear_model.LogisticRegression"  # these tests are about rollouts, not about models
NS = "ml"
# Generous: on a loaded CI machine a server takes a while to import scikit-learn and load a version.
READY_TIMEOUT = 120


def k8s_target(kube_clients: Any, registry: Any, **overrides: Any) -> KubernetesTarget:
    apps_v1, core_v1 = kube_clients
    settings = KubernetesSettings(**{"registry_uri": registry.store.uri, "namespace": NS, "replicas": 2,
                                     "rollout_timeout": 10, "ready_timeout": READY_TIMEOUT, "poll_interval": 0.1,
                                     **overrides})
    return KubernetesTarget(apps_v1=apps_v1, core_v1=core_v1, settings=settings,
                            smoke_rows=lambda name, version: smoke_rows(registry, registry.get_version(name, version)))


def deploy(registry: Any, manifest: dict[str, Any], target: KubernetesTarget) -> dict[str, Any]:
    return run_deployment(registry, model_name=manifest["model_name"], version=manifest["version"],
                          verdict_uri=manifest["verdict_uri"], target=target, by="test")


def served_spec(fake: FakeKube, name: str = "mlops-m") -> tuple[str, str, int]:
    """(pod-env version, pod-template sha256 annotation, generation) of a Deployment as the fake stores it.

    The pod env's sha256 must agree with the annotation, and the ConfigMap must not say a version at all.
    """
    config_map, deployment = fake.get("configmaps", name, NS), fake.get("deployments", name, NS)
    assert config_map and deployment
    assert not {"MLOPS_AIRFLOW_MODEL_VERSION", "MLOPS_AIRFLOW_MODEL_SHA256"} & set(config_map["data"])
    template = deployment["spec"]["template"]
    env = {item["name"]: item.get("value") for item in template["spec"]["containers"][0]["env"]}
    annotation = template["metadata"]["annotations"][SHA_ANNOTATION]
    assert env["MLOPS_AIRFLOW_MODEL_SHA256"] == annotation
    return env["MLOPS_AIRFLOW_MODEL_VERSION"], annotation, deployment["metadata"]["generation"]


def start_server(registry_uri: str, log_path: Path) -> ServerProcess:
    """Another real `mlops-airflow serve m` (the model_server fixture starts one per model name)."""
    port = free_port()
    server = ServerProcess([str(BIN / "mlops-airflow"), "--registry", registry_uri, "serve", "m", "--port", str(port)],
                           port, log_path)
    server.wait_healthy()
    return server


def test_create_then_replace_then_a_stuck_rollout_is_put_back(
    registry: Any, build_version: Any, model_server: Any, fake_kube: FakeKube, kube_clients: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The server wants a bearer token; the target sends the same setting, through the API server's proxy.
    monkeypatch.setenv("MLOPS_AIRFLOW_SERVER_TOKEN", "k8s-s3cret")
    v1 = build_version("m", JAN, promote=False, estimator=FAST)
    fake_kube.default_backend = server_url = model_server("m")
    assert httpx.get(f"{server_url}/metadata", timeout=10).status_code == 401  # the token is required
    result = deploy(registry, v1, k8s_target(kube_clients, registry, token_secret="mlops-m-token",
                                             env={"FEATURE_FLAG": "on", "AWS_ENDPOINT_URL": "http://s3"}))
    assert result["promoted"] is True and result["served"] is True and result["server"]["version"] == 1
    assert served_spec(fake_kube) == ("1", v1["sha256"], 1)
    config_map = fake_kube.get("configmaps", "mlops-m", NS)
    assert config_map is not None and config_map["data"]["MLOPS_AIRFLOW_REGISTRY_URI"] == registry.store.uri
    assert config_map["data"]["FEATURE_FLAG"] == "on"
    stored = json.dumps([fake_kube.get(p, "mlops-m", NS) for p in ("configmaps", "deployments", "services")])
    assert "k8s-s3cret" not in stored and '"secretKeyRef": {"name": "mlops-m-token", "key": "token"}' in stored
    assert fake_kube.get("services", "mlops-m", NS) is not None
    assert fake_kube.calls("POST", "/deployments") == [201]
    # the smoke test went through the Service proxy to the real server: its answers, not the fake's
    assert fake_kube.calls("GET", "/services/mlops-m/proxy/models/m/metadata")[-1] == 200
    assert fake_kube.calls("POST", "/services/mlops-m/proxy/models/m/predict") == [200]

    # The next version: every object exists (409), so each is replaced; what settings dropped goes away.
    v2 = build_version("m", BOTH, promote=False, key="k2", estimator=FAST)
    result = deploy(registry, v2, k8s_target(kube_clients, registry, env={"AWS_ENDPOINT_URL": "http://s3"}))
    assert result["server"]["version"] == 2 and result["previous_version"] == 1
    assert fake_kube.calls("POST", "/deployments") == [201, 409]
    assert fake_kube.calls("PUT", "/deployments/mlops-m") == [200]
    assert fake_kube.calls("PATCH", "/") == []
    assert served_spec(fake_kube) == ("2", v2["sha256"], 2)
    config_map = fake_kube.get("configmaps", "mlops-m", NS)
    assert config_map is not None and "FEATURE_FLAG" not in config_map["data"]
    assert config_map["data"]["AWS_ENDPOINT_URL"] == "http://s3"
    live = fake_kube.get("deployments", "mlops-m", NS)
    assert live is not None
    container = live["spec"]["template"]["spec"]["containers"][0]
    assert "MLOPS_AIRFLOW_SERVER_TOKEN" not in {item["name"] for item in container["env"]}  # no token_secret now
    before = fake_kube.get("deployments", "mlops-m", NS)
    assert before is not None and registry.get_alias("m", "champion")["version"] == 2

    # A version whose pods never come up: the previous spec goes back, and so does the alias.
    v3 = build_version("m", BOTH, promote=False, key="k3", estimator=FAST)
    fake_kube.scenario["mlops-m"] = "stuck"
    with pytest.raises(DeployError) as failure:
        deploy(registry, v3, k8s_target(kube_clients, registry, rollout_timeout=2))
    message = str(failure.value)
    assert "rolled back to v2" in message
    assert "Deployment ml/mlops-m did not roll out within 2s" in message
    assert "ImagePullBackOff" in message  # why, as the pods' status says
    # the ConfigMap first: a Deployment restored before it could start pods on the rejected settings
    assert ("restored ConfigMap mlops-m to its previous spec, restored Deployment mlops-m to its previous spec, "
            "restored Service mlops-m to its previous spec") in message
    assert registry.get_alias("m", "champion")["version"] == 2
    version, sha, generation = served_spec(fake_kube)
    assert (version, sha, generation) == ("2", v2["sha256"], 4)  # created, patched, patched to v3, put back
    after = fake_kube.get("deployments", "mlops-m", NS)
    assert after is not None and after["spec"] == before["spec"]


def test_a_first_rollout_past_its_deadline_leaves_nothing_behind(
    registry: Any, build_version: Any, fake_kube: FakeKube, kube_clients: Any
) -> None:
    v1 = build_version("m", JAN, promote=False, estimator=FAST)
    fake_kube.scenario["mlops-m"] = "deadline"
    with pytest.raises(DeployError, match="rolled back to no champion") as failure:
        deploy(registry, v1, k8s_target(kube_clients, registry))
    assert "ProgressDeadlineExceeded" in str(failure.value)
    assert "deleted Service mlops-m, deleted Deployment mlops-m, deleted ConfigMap mlops-m" in str(failure.value)
    assert all(fake_kube.get(plural, "mlops-m", NS) is None for plural in ("configmaps", "deployments", "services"))
    assert registry.get_alias("m", "champion") is None


def test_a_server_reporting_another_checksum_fails_the_smoke_test(
    registry: Any, registry_uri: str, build_version: Any, model_server: Any, fake_kube: FakeKube, kube_clients: Any,
    tmp_path: Path,
) -> None:
    v1 = build_version("m", JAN, promote=False, estimator=FAST)
    fake_kube.default_backend = model_server("m")
    deploy(registry, v1, k8s_target(kube_clients, registry))
    v2 = build_version("m", BOTH, promote=False, key="k2", estimator=FAST)

    # Pods reading another registry, whose version 2 is a different model: it loads, and says which.
    other_uri = str(tmp_path / "other-registry")
    shutil.copytree(registry_uri, other_uri)
    manifest_path = Path(other_uri) / "m" / "versions" / "2.json"
    manifest_path.write_text(json.dumps({**json.loads(manifest_path.read_text()), "sha256": v1["sha256"]}))
    ModelRegistry(open_store(other_uri)).set_alias("m", "champion", 2, expected=1, by="test", reason="elsewhere")
    other = start_server(other_uri, tmp_path / "other-server.log")
    try:
        fake_kube.default_backend = other.url
        with pytest.raises(DeployError, match="rolled back to v1") as failure:
            deploy(registry, v2, k8s_target(kube_clients, registry))
    finally:
        other.stop()
    assert f"serves m version 2 with sha256 {v1['sha256'][:12]}…, not {v2['sha256'][:12]}…" in str(failure.value)
    assert served_spec(fake_kube) == ("1", v1["sha256"], 3)
    assert registry.get_alias("m", "champion")["version"] == 1


def test_a_canary_is_promoted_when_healthy_and_removed_when_its_errors_are_over_the_limit(
    registry: Any, registry_uri: str, build_version: Any, model_server: Any, fake_kube: FakeKube, kube_clients: Any,
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    # no traffic but the smoke tests, which do not count: nothing to require here
    healthy = CanaryPolicy(share=0.5, window=1.0, max_error_rate=0.0, max_p99_seconds=10.0, min_requests=0)
    v1 = build_version("m", JAN, promote=False, estimator=FAST)
    fake_kube.default_backend = model_server("m")
    deploy(registry, v1, k8s_target(kube_clients, registry, canary=healthy))
    assert fake_kube.calls("POST", "/deployments") == [201]  # nothing served yet: no canary to compare

    canary_server = start_server(registry_uri, tmp_path / "canary-server.log")
    try:
        fake_kube.backends["mlops-m-canary"] = canary_server.url
        v2 = build_version("m", BOTH, promote=False, key="k2", estimator=FAST)
        with caplog.at_level(logging.INFO, logger="mlops_airflow.deploy.kubernetes"):
            result = deploy(registry, v2, k8s_target(kube_clients, registry, canary=healthy))
        assert result["server"]["version"] == 2
        assert fake_kube.calls("POST", "/deployments") == [201, 201, 409]  # the canary, then the main patched
        # on the canary's pod itself: the smoke test, its metrics after it and after the window
        assert fake_kube.calls("POST", "/pods/mlops-m-canary-") == [200]
        assert fake_kube.calls("GET", "/proxy/metrics") == [200, 200]
        assert fake_kube.calls("DELETE", "/deployments/mlops-m-canary")[-1] == 200  # after the main rolled out
        assert fake_kube.get("deployments", "mlops-m-canary", NS) is None
        assert served_spec(fake_kube) == ("2", v2["sha256"], 2)
        passed = [r.getMessage() for r in caplog.records if "passed" in r.getMessage()]
        assert passed and "0 errors (error rate 0.0000)" in passed[0], passed

        # v3's canary gets bad requests during its window: it is removed, the main Deployment never touched.
        v3 = build_version("m", BOTH, promote=False, key="k3", estimator=FAST,
                           gate={"baseline": {"min_improvement": 0.0}, "champion": {"max_drop": 1.0}})
        strict = CanaryPolicy(share=0.5, window=8.0, max_error_rate=0.1, max_p99_seconds=10.0, min_requests=0)
        smoked = len(fake_kube.calls("POST", "/pods/mlops-m-canary-"))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            running = pool.submit(deploy, registry, v3, k8s_target(kube_clients, registry, canary=strict))
            # the bad requests go after the baseline /metrics read that follows the smoke test
            metrics_read = len(fake_kube.calls("GET", "/proxy/metrics"))
            eventually(lambda: (len(fake_kube.calls("POST", "/pods/mlops-m-canary-")) > smoked
                                and len(fake_kube.calls("GET", "/proxy/metrics")) > metrics_read) or running.done(),
                       timeout=READY_TIMEOUT, what="the canary's smoke test and baseline")
            for _ in range(4):
                bad = httpx.post(f"{canary_server.url}/predict", json={"rows": [{"hour": 77}]}, timeout=10)
                assert bad.status_code == 422
            with pytest.raises(DeployError) as failure:
                running.result(timeout=120)
    finally:
        canary_server.stop()
    message = str(failure.value)
    assert "canary of m v3 failed after a 8s window" in message and "rolled back to v2" in message
    # only the window's traffic: the 4 bad requests, not the smoke test's successful one
    assert "(4 of 4)" in message and "is over the limit 0.1" in message and "validation=4" in message
    assert fake_kube.get("deployments", "mlops-m-canary", NS) is None
    assert fake_kube.get("configmaps", "mlops-m-canary", NS) is None
    assert fake_kube.calls("PUT", "/deployments/mlops-m") == [200]  # only v2's promotion
    assert served_spec(fake_kube) == ("2", v2["sha256"], 2)
    assert registry.get_alias("m", "champion")["version"] == 2

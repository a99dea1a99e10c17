"""The Kubernetes target's pure parts: manifests valid against the Kubernetes schema, settings, canary maths."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from mlops_airflow.deploy.kubernetes import (
    SHA_ANNOTATION,
    CanaryFigures,
    CanaryPolicy,
    KubernetesSettings,
    canary_figures,
    default_template_dir,
    histogram_quantile,
    judge_canary,
    render,
    rollout_status,
)
from mlops_airflow.exceptions import ConfigError, DeployError

SHA = "ab" * 32
KUBE_VERSION = "1.33"


def settings(**overrides: Any) -> KubernetesSettings:
    return KubernetesSettings(**{"registry_uri": "s3://models/registry", "namespace": "ml", **overrides})


@pytest.mark.parametrize("track", ["stable", "canary"])
def test_rendered_objects_are_valid_kubernetes_objects(track: str) -> None:
    objects = render(settings(canary=CanaryPolicy(share=0.3), replicas=3), "Taxi Tips", 7, SHA, track=track)
    for obj in objects.values():
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)  # raises on any schema error
    name = "mlops-taxi-tips" if track == "stable" else "mlops-taxi-tips-canary"
    deployment, config_map, service = objects["deployment"], objects["configmap"], objects["service"]
    assert deployment["metadata"]["name"] == config_map["metadata"]["name"] == name
    assert service["metadata"]["name"] == "mlops-taxi-tips"  # one Service for both tracks
    assert deployment["spec"]["replicas"] == (3 if track == "stable" else 1)  # ceil(3 * 0.3)
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"][SHA_ANNOTATION] == SHA
    assert pod["metadata"]["labels"]["mlops-airflow/track"] == track
    assert deployment["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "mlops-taxi-tips",
                                                             "mlops-airflow/track": track}
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "mlops-taxi-tips"}  # every track
    container = pod["spec"]["containers"][0]
    assert container["command"] + container["args"] == [
        "mlops-airflow", "serve", "$(MLOPS_AIRFLOW_MODEL_NAME)", "--version", "$(MLOPS_AIRFLOW_MODEL_VERSION)",
        "--expect-sha256", "$(MLOPS_AIRFLOW_MODEL_SHA256)", "--host", "0.0.0.0", "--port", "8080"]
    assert container["envFrom"][0] == {"configMapRef": {"name": name}}
    assert (container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"]) == (
        "/ready", "/health")
    # the version and checksum are the pod template's own (its ReplicaSet's), not a shared ConfigMap's
    assert config_map["data"] == {"MLOPS_AIRFLOW_MODEL_NAME": "Taxi Tips", "MLOPS_AIRFLOW_REGISTRY_URI": "s3://models/registry"}
    assert container["env"] == [{"name": "MLOPS_AIRFLOW_MODEL_VERSION", "value": "7"},
                                {"name": "MLOPS_AIRFLOW_MODEL_SHA256", "value": SHA}]


@pytest.mark.parametrize(("token_secret", "ref"), [("model-token", {"name": "model-token", "key": "token"}),
                                                    ("shared/server-token", {"name": "shared", "key": "server-token"})])
def test_the_server_token_reaches_the_pods_from_a_secret_only(token_secret: str, ref: dict[str, str]) -> None:
    objects = render(settings(token_secret=token_secret), "m", 3, SHA)
    for obj in objects.values():
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    container = objects["deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["env"][-1] == {"name": "MLOPS_AIRFLOW_SERVER_TOKEN", "valueFrom": {"secretKeyRef": ref}}
    assert "MLOPS_AIRFLOW_SERVER_TOKEN" not in objects["configmap"]["data"]
    plain = render(settings(), "m", 3, SHA)["deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert [item["name"] for item in plain["env"]] == ["MLOPS_AIRFLOW_MODEL_VERSION", "MLOPS_AIRFLOW_MODEL_SHA256"]


@pytest.mark.parametrize("key", ["MLOPS_AIRFLOW_SERVER_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                 "DB_PASSWORD", "my_secret", "GITHUB_TOKEN"])
def test_credentials_are_refused_in_the_configmap_env(key: str) -> None:
    with pytest.raises(ValueError, match=f"env: {key} looks like a credential"):
        settings(env={"AWS_ENDPOINT_URL": "http://s3", key: "hunter2"})
    assert settings(env={"AWS_ENDPOINT_URL": "http://s3", "AWS_ACCESS_KEY_ID_FILE": "/x"}).env  # others pass


def test_settings_reach_the_objects_with_their_types() -> None:
    objects = render(settings(image="registry.example/server:2", replicas=4, rollout_timeout=90.5,
                              env={"AWS_ENDPOINT_URL": "http://minio:9000"}, env_secret="s3-credentials",
                              resources={"limits": {"cpu": "1"}}, service_type="LoadBalancer", service_port=8000,
                              name="tips"), "2024", 1, SHA)
    for obj in objects.values():
        kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    deployment = objects["deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert (deployment["spec"]["replicas"], deployment["spec"]["progressDeadlineSeconds"]) == (4, 91)
    assert container["image"] == "registry.example/server:2" and container["resources"] == {"limits": {"cpu": "1"}}
    assert container["envFrom"][1] == {"secretRef": {"name": "s3-credentials", "optional": True}}
    assert objects["configmap"]["data"]["AWS_ENDPOINT_URL"] == "http://minio:9000"
    assert objects["configmap"]["data"]["MLOPS_AIRFLOW_MODEL_NAME"] == "2024"  # a name stays text
    assert objects["service"]["spec"]["type"] == "LoadBalancer" and objects["service"]["spec"]["ports"][0]["port"] == 8000
    assert deployment["metadata"]["name"] == "tips"


def test_a_users_template_folder_is_used_and_checked(tmp_path: Path) -> None:
    for source in default_template_dir().glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text())
    service = tmp_path / "service.yaml"
    service.write_text(service.read_text().replace("type: ${service_type}", "type: NodePort"))
    assert render(settings(template_dir=str(tmp_path)), "m", 1, SHA)["service"]["spec"]["type"] == "NodePort"

    service.write_text(service.read_text().replace("type: NodePort", "type: ${flavour}"))
    with pytest.raises(ConfigError, match=r"service.yaml: unknown placeholder \$\{flavour\}; known: app, "):
        render(settings(template_dir=str(tmp_path)), "m", 1, SHA)
    service.write_text("kind: Deployment\n")
    with pytest.raises(ConfigError, match="service.yaml must hold one Service object, found 'Deployment'"):
        render(settings(template_dir=str(tmp_path)), "m", 1, SHA)
    service.unlink()
    with pytest.raises(ConfigError, match="no service.yaml in the Kubernetes template folder"):
        render(settings(template_dir=str(tmp_path)), "m", 1, SHA)


def test_the_pods_pin_the_version_and_checksum_whatever_the_template_says(tmp_path: Path) -> None:
    for source in default_template_dir().glob("*.yaml"):
        (tmp_path / source.name).write_text(source.read_text())
    deployment = tmp_path / "deployment.yaml"
    text = deployment.read_text()
    start = text.index("          env:")
    end = text.index("${model_sha256}", start) + len("${model_sha256}")
    deployment.write_text(text[:start] + "          env:\n            - name: MLOPS_AIRFLOW_MODEL_VERSION\n"
                          "              value: \"7\"\n            - name: EXTRA\n              value: kept\n"
                          + text[end + 1:])  # an old template: a stale version, no checksum
    objects = render(settings(template_dir=str(tmp_path)), "m", 3, SHA)
    for container in objects["deployment"]["spec"]["template"]["spec"]["containers"]:
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert (env["MLOPS_AIRFLOW_MODEL_VERSION"], env["MLOPS_AIRFLOW_MODEL_SHA256"], env["EXTRA"]) == ("3", SHA,
                                                                                                          "kept")
        names = [item["name"] for item in container["env"]]
        assert names.count("MLOPS_AIRFLOW_MODEL_VERSION") == 1
        # first, so that the template's own entries may refer to them as $(MLOPS_AIRFLOW_MODEL_VERSION)
        assert names[:2] == ["MLOPS_AIRFLOW_MODEL_VERSION", "MLOPS_AIRFLOW_MODEL_SHA256"]


def test_a_value_cannot_change_the_shape_of_a_template() -> None:
    tricky = "m\nkind: Secret\n${image}: {"
    config_map = render(settings(), tricky, 1, SHA)["configmap"]
    assert config_map["kind"] == "ConfigMap" and config_map["data"]["MLOPS_AIRFLOW_MODEL_NAME"] == tricky


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"registry_uri": ""}, "registry_uri must be a registry URI"),
        ({"namespace": "ML_team"}, "namespace must be a Kubernetes namespace name"),
        ({"name": "x" * 57}, "name must be a DNS label of at most 56 characters"),
        ({"image": "has space"}, "image must be a container image reference"),
        ({"replicas": 0}, r"replicas must be >= 1, got 0"),
        ({"replicas": True}, "replicas must be an integer"),
        ({"rollout_timeout": 0}, r"rollout_timeout must be > 0"),
        ({"env": {"MLOPS_AIRFLOW_MODEL_VERSION": "9"}}, "env: MLOPS_AIRFLOW_MODEL_VERSION is set by the deploy target"),
        ({"env": {"1BAD": "x"}}, "env: '1BAD' is not a valid environment variable name"),
        ({"env": {"PORT": 80}}, "env.PORT must be a string"),
        ({"service_type": "ExternalName"}, "service_type must be ClusterIP, NodePort or LoadBalancer"),
        ({"service_port": 70000}, r"service_port must be \[1, 65535\]"),
        ({"base_url": "mlops.example"}, "base_url must be an http"),
        ({"token_secret": "a/b/c"}, "token_secret must be a Secret name or 'name/key'"),
        ({"token_secret": "name/"}, "token_secret must be a Secret name or 'name/key'"),
    ],
)
def test_settings_name_the_bad_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(**overrides)


def test_the_default_name_is_dns_safe_and_leaves_room_for_the_canary() -> None:
    assert settings().app_name("Taxi_Tips v2!") == "mlops-taxi-tips-v2"
    assert len(settings().app_name("x" * 200)) == 56


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"share": 0}, r"canary.share must be \(0, 1\], got 0"),
        ({"share": 1.5}, r"canary.share must be \(0, 1\]"),
        ({"window": -1}, r"canary.window must be >= 0"),
        ({"max_error_rate": 2}, r"canary.max_error_rate must be \[0, 1\]"),
        ({"max_p99_seconds": "fast"}, "canary.max_p99_seconds must be a number"),
        ({"min_requests": 1.5}, "canary.min_requests must be an integer"),
        ({"shares": 0.1}, r"canary has unknown keys \['shares'\]"),
        ("25%", "canary must be a mapping"),
    ],
)
def test_a_canary_policy_names_the_bad_key(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CanaryPolicy.from_mapping(value)


def deployment(generation: int = 2, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "d", "namespace": "ml", "generation": generation}, "spec": {"replicas": 2},
            "status": status}


@pytest.mark.parametrize(
    ("status", "done", "seen"),
    [
        ({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}, False,
         "the controller has not yet seen generation 2 (observed 1)"),
        ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2}, False,
         "1 of 2 replicas updated"),
        ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}, False,
         "1 old replicas pending termination"),
        ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}, False,
         "1 of 2 updated replicas available"),
        ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}, True,
         "2 of 2 replicas updated and available"),
    ],
)
def test_rollout_status_reads_like_kubectl(status: dict[str, Any], done: bool, seen: str) -> None:
    assert rollout_status(deployment(**status)) == (done, seen)


def test_a_stale_failure_condition_does_not_fail_a_new_generation() -> None:
    # generation 3 was just written; the deadline condition is the controller's verdict on generation 2
    stale = deployment(generation=3, observedGeneration=2, conditions=[
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"},
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "exceeded quota"}])
    assert rollout_status(stale) == (False, "the controller has not yet seen generation 3 (observed 2)")


def test_a_deployment_that_cannot_progress_fails_at_once() -> None:
    stuck = deployment(observedGeneration=2, conditions=[
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}])
    with pytest.raises(DeployError, match="Deployment ml/d: ProgressDeadlineExceeded: timed out"):
        rollout_status(stuck)
    quota = deployment(observedGeneration=2, conditions=[
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": "exceeded quota"}])
    with pytest.raises(DeployError, match="FailedCreate: exceeded quota"):
        rollout_status(quota)


def test_histogram_quantile_matches_prometheus() -> None:
    # 100 observations: 90 under 0.1s, 9 in (0.1, 0.5], 1 in (0.5, 1]
    buckets = {0.1: 90, 0.5: 99, 1.0: 100, math.inf: 100}
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.5)
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1 * 50 / 90)
    assert histogram_quantile(0.995, buckets) == pytest.approx(0.75)
    assert histogram_quantile(0.99, {0.1: 0, math.inf: 10}) == 0.1  # all above the top bound: the top bound
    assert histogram_quantile(0.99, {0.1: 0, math.inf: 0}) is None


POD_A = """# TYPE mlops_requests_total counter
mlops_requests_total{endpoint="/predict",status="200"} 6.0
mlops_requests_total{endpoint="/predict",status="422"} 2.0
mlops_requests_total{endpoint="/ready",status="200"} 40.0
# TYPE mlops_request_errors_total counter
mlops_request_errors_total{kind="validation"} 2.0
# TYPE mlops_request_latency_seconds histogram
mlops_request_latency_seconds_bucket{endpoint="/predict",le="0.01"} 4.0
mlops_request_latency_seconds_bucket{endpoint="/predict",le="0.1"} 8.0
mlops_request_latency_seconds_bucket{endpoint="/predict",le="+Inf"} 8.0
mlops_request_latency_seconds_count{endpoint="/predict"} 8.0
mlops_request_latency_seconds_sum{endpoint="/predict"} 0.3
mlops_request_latency_seconds_bucket{endpoint="/ready",le="0.01"} 40.0
mlops_request_latency_seconds_bucket{endpoint="/ready",le="+Inf"} 40.0
"""
POD_B = """# TYPE mlops_requests_total counter
mlops_requests_total{endpoint="/predict",status="200"} 1.0
mlops_requests_total{endpoint="/predict",status="500"} 1.0
# TYPE mlops_request_errors_total counter
mlops_request_errors_total{kind="internal"} 1.0
# TYPE mlops_request_latency_seconds histogram
mlops_request_latency_seconds_bucket{endpoint="/predict",le="0.01"} 0.0
mlops_request_latency_seconds_bucket{endpoint="/predict",le="0.1"} 0.0
mlops_request_latency_seconds_bucket{endpoint="/predict",le="+Inf"} 2.0
"""


def test_canary_figures_sum_the_pods_predict_traffic() -> None:
    figures = canary_figures([POD_A, POD_B])
    assert (figures.pods, figures.requests, figures.errors) == (2, 10, 3)
    assert figures.error_kinds == {"validation": 2, "internal": 1}
    assert figures.p99_seconds == pytest.approx(0.1)  # rank 9.9 of 10 falls in +Inf: the top finite bound
    assert canary_figures([POD_A, POD_B], client_errors=False).errors == 1  # only the 500


def test_canary_figures_from_a_baseline_count_only_the_later_traffic() -> None:
    # POD_A's baseline: the smoke test's 2 fast successes; POD_B had seen nothing yet
    smoke = """# TYPE mlops_requests_total counter
mlops_requests_total{endpoint="/predict",status="200"} 2.0
# TYPE mlops_request_latency_seconds histogram
mlops_request_latency_seconds_bucket{endpoint="/predict",le="0.01"} 2.0
mlops_request_latency_seconds_bucket{endpoint="/predict",le="0.1"} 2.0
mlops_request_latency_seconds_bucket{endpoint="/predict",le="+Inf"} 2.0
"""
    figures = canary_figures([POD_A, POD_B], baselines=[smoke, ""])
    assert (figures.pods, figures.requests, figures.errors) == (2, 8, 3)
    assert figures.error_kinds == {"validation": 2, "internal": 1}
    # since the baseline: 2 under 0.01s, 4 in (0.01, 0.1], 2 above 0.1s: the p99 is the top finite bound
    assert figures.p99_seconds == pytest.approx(0.1)
    only_smoke = canary_figures([smoke], baselines=[smoke])
    assert (only_smoke.requests, only_smoke.p99_seconds) == (0, None)
    assert judge_canary(only_smoke, CanaryPolicy()) == [
        "only 0 /predict requests reached it (at least 20 needed)"]  # the default asks for real traffic


def test_judging_a_canary_says_what_is_over_the_limit() -> None:
    figures = CanaryFigures(pods=1, requests=10, errors=3, p99_seconds=0.8, error_kinds={"internal": 3})
    problems = judge_canary(figures, CanaryPolicy(max_error_rate=0.05, max_p99_seconds=0.5, min_requests=10))
    assert problems == ["error rate 0.3000 (3 of 10) is over the limit 0.05", "p99 latency 0.8000s is over the limit 0.5s"]
    assert judge_canary(figures, CanaryPolicy(max_error_rate=0.5, max_p99_seconds=1.0, min_requests=10)) == []
    quiet = CanaryFigures(pods=1, requests=0, errors=0, p99_seconds=None, error_kinds={})
    assert judge_canary(quiet, CanaryPolicy(min_requests=5)) == ["only 0 /predict requests reached it (at least 5 needed)"]


def test_live_settings_read_back_what_render_wrote() -> None:
    """A rollback from a shell keeps what the deploy set: read back from the objects the target rendered."""
    from kubernetes.client import ApiClient
    from kubernetes.client.exceptions import ApiException

    from mlops_airflow.deploy.kubernetes import live_settings

    deployed = settings(image="example.org/server:1.2", replicas=3, token_secret="tok/key", env_secret="creds",
                        env={"AWS_ENDPOINT_URL": "http://minio:9000"}, registry_uri="s3://models/prod")
    objects = render(deployed, "m", 4, SHA)

    class Api:
        api_client = ApiClient()

        def __init__(self, obj: dict[str, Any] | None) -> None:
            self.obj = obj

        def read(self, name: str, namespace: str) -> dict[str, Any]:
            if self.obj is None:
                raise ApiException(status=404)
            assert (name, namespace) == ("mlops-m", deployed.namespace)
            return self.obj

        read_namespaced_deployment = read_namespaced_config_map = read

    found = live_settings(Api(objects["deployment"]), Api(objects["configmap"]), deployed.namespace, "mlops-m")  # type: ignore[arg-type]
    assert found == {"image": "example.org/server:1.2", "replicas": 3, "token_secret": "tok/key",
                     "env_secret": "creds", "registry_uri": "s3://models/prod",
                     "env": {"AWS_ENDPOINT_URL": "http://minio:9000"}}
    assert live_settings(Api(None), Api(None), "ns", "mlops-m") == {}  # type: ignore[arg-type]

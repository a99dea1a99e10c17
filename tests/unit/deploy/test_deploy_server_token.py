"""The deploy targets send the model server's bearer token; the server takes it through the API server's proxy too."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx

from mlops_airflow.deploy.local import LocalServerTarget
from mlops_airflow.serving.middleware import PROXY_AUTH_HEADER, bearer_token

if TYPE_CHECKING:
    import pytest

SHA = "1" * 64
META = {"model_name": "taxi", "version": 3, "sha256": SHA, "last_error": None, "refused_version": None}


def recording() -> tuple[httpx.Client, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/predict":
            return httpx.Response(200, json={"version": 3, "predictions": [1]})
        return httpx.Response(200, json=META)

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def test_the_token_is_sent_on_every_call_and_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_AIRFLOW_SERVER_TOKEN", raising=False)
    client, seen = recording()
    target = LocalServerTarget("http://models.test", client=client, token="s3cret")
    target.wait_for_version("taxi", 3, SHA)
    target.predict([{"hour": 1}])
    assert [r.headers.get("authorization") for r in seen] == ["Bearer s3cret", "Bearer s3cret"]
    assert "s3cret" not in repr(target) and "auth=on" in repr(target)


def test_the_token_defaults_to_the_setting_and_is_absent_without_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_AIRFLOW_SERVER_TOKEN", "from-env")
    client, seen = recording()
    LocalServerTarget("http://models.test", client=client).wait_for_version("taxi", 3, SHA)
    assert seen[-1].headers.get("authorization") == "Bearer from-env"
    monkeypatch.delenv("MLOPS_AIRFLOW_SERVER_TOKEN")
    LocalServerTarget("http://models.test", client=client).wait_for_version("taxi", 3, SHA)
    assert "authorization" not in seen[-1].headers


def test_the_server_reads_the_token_from_the_proxy_header_too() -> None:
    # the Kubernetes API server authenticates with Authorization and drops it before the pod
    assert bearer_token({"headers": [(PROXY_AUTH_HEADER.encode(), b"Bearer s3cret")]}) == b"s3cret"
    assert bearer_token({"headers": [(b"authorization", b"Bearer direct")]}) == b"direct"
    assert bearer_token({"headers": [(PROXY_AUTH_HEADER.encode(), b"Basic eA==")]}) is None
    assert bearer_token({"headers": []}) is None

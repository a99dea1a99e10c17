"""LocalServerTarget against a scripted server (httpx.MockTransport): no sockets, no sleeps to speak of."""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from mlops_airflow.deploy.local import LocalServerTarget
from mlops_airflow.exceptions import DeployError

SHA_1 = "1" * 64
SHA_2 = "2" * 64
URL = "http://models.test:8765"


def metadata(version: int, sha: str, **extra: Any) -> dict[str, Any]:
    return {
        "model_name": "taxi",
        "version": version,
        "sha256": sha,
        "last_error": None,
        "refused_version": None,
        **extra,
    }


def scripted(*answers: httpx.Response | Exception) -> tuple[httpx.Client, list[httpx.Request]]:
    """A client whose server gives ``answers`` in turn, then repeats the last one."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.Client(transport=httpx.MockTransport(handler)), seen


def target(client: httpx.Client, timeout: float = 0.3) -> LocalServerTarget:
    return LocalServerTarget(URL + "/", timeout=timeout, poll=0.01, client=client)


def test_waits_until_the_new_version_is_served() -> None:
    client, seen = scripted(
        httpx.Response(503, json={"detail": {"status": "waiting", "reason": "alias missing"}}),
        httpx.Response(200, json=metadata(1, SHA_1)),
        httpx.Response(200, json=metadata(2, SHA_2)),
    )
    meta = target(client, timeout=5).wait_for_version("taxi", 2, SHA_2)
    assert meta["version"] == 2
    assert [str(request.url) for request in seen] == [f"{URL}/models/taxi/metadata"] * 3


def test_a_server_of_other_models_fails_at_once_naming_the_model() -> None:
    client, seen = scripted(httpx.Response(404, json={"detail": "no model named 'taxi' in /registry"}))
    with pytest.raises(DeployError, match="does not serve 'taxi': no model named 'taxi' in /registry"):
        target(client, timeout=30).wait_for_version("taxi", 1, SHA_1)
    assert len(seen) == 1


def test_a_server_without_per_model_routes_is_asked_at_metadata() -> None:
    """A model server from before many models answers FastAPI's own 404 there; its one model is at /metadata."""
    client, seen = scripted(httpx.Response(404, json={"detail": "Not Found"}), httpx.Response(200, json=metadata(1, SHA_1)),
                            httpx.Response(200, json={"predictions": [1]}))
    local = target(client, timeout=5)
    assert local.wait_for_version("taxi", 1, SHA_1)["version"] == 1
    local.predict([{"hour": 7}])
    assert [request.url.path for request in seen] == ["/models/taxi/metadata", "/metadata", "/predict"]


def test_times_out_naming_what_it_saw_last() -> None:
    client, _ = scripted(httpx.Response(200, json=metadata(1, SHA_1, last_error="cannot read the alias")))
    with pytest.raises(DeployError) as info:
        target(client).wait_for_version("taxi", 2, SHA_2)
    assert str(info.value) == (
        f"the model server at {URL} did not report taxi version 2 (sha256 222222222222…) within 0.3s; "
        "last seen: serving version 1 (cannot read the alias)"
    )


def test_times_out_on_a_server_with_no_model() -> None:
    client, _ = scripted(
        httpx.Response(503, json={"detail": {"status": "waiting", "reason": "alias missing"}})
    )
    with pytest.raises(DeployError, match="last seen: the server has no model loaded: alias missing$"):
        target(client).wait_for_version("taxi", 1, SHA_1)


def test_an_unreachable_server_says_how_to_start_one() -> None:
    client, _ = scripted(httpx.ConnectError("Connection refused"))
    with pytest.raises(DeployError) as info:
        target(client).wait_for_version("taxi", 1, SHA_1)
    assert (
        f"last seen: no model server answering at {URL}: start it with `mlops-airflow serve` "
        "(ConnectError: Connection refused)"
    ) in str(info.value)


def test_a_real_refused_connection_is_reported_the_same_way() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with LocalServerTarget(f"http://127.0.0.1:{port}", timeout=0.2, poll=0.05) as local:
        with pytest.raises(
            DeployError, match=rf"no model server answering at http://127.0.0.1:{port}: start it"
        ):
            local.wait_for_version("taxi", 1, SHA_1)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({**metadata(1, SHA_1), "model_name": "fraud"}, "serves 'fraud', not 'taxi': start one with"),
        (metadata(2, SHA_1), "serves taxi version 2 with sha256 111111111111…, not 222222222222…"),
        (
            metadata(1, SHA_1, refused_version=2, last_error="refused version 2: checksum mismatch"),
            "refused taxi version 2: refused version 2: checksum mismatch",
        ),
    ],
    ids=["other-model", "other-checksum", "refused"],
)
def test_fails_at_once_when_waiting_cannot_help(meta: dict[str, Any], message: str) -> None:
    client, seen = scripted(httpx.Response(200, json=meta))
    with pytest.raises(DeployError, match=message.replace("(", r"\(").replace(")", r"\)")):
        target(client, timeout=30).wait_for_version("taxi", 2, SHA_2)
    assert len(seen) == 1


def test_unexpected_answers_are_waited_through_and_reported() -> None:
    client, _ = scripted(httpx.Response(500, text="boom"), httpx.Response(200, text="<html>"))
    with pytest.raises(
        DeployError, match="last seen: GET /models/taxi/metadata answered something that is not server metadata"
    ):
        target(client).wait_for_version("taxi", 1, SHA_1)
    client, _ = scripted(httpx.Response(502, text="bad gateway"))
    with pytest.raises(DeployError, match="last seen: GET /models/taxi/metadata answered 502: bad gateway"):
        target(client).wait_for_version("taxi", 1, SHA_1)


def test_predict_posts_rows_as_json_and_returns_the_answer() -> None:
    answer = {"model_name": "taxi", "version": 1, "predictions": [1], "warnings": []}
    client, seen = scripted(httpx.Response(200, json=answer))
    rows = [
        {"hour": np.int64(7), "fare": np.float64(1.5), "passengers": float("nan"), "payment_type": "card"}
    ]
    assert target(client).predict(rows) == answer
    assert seen[0].method == "POST" and str(seen[0].url) == f"{URL}/predict"
    assert json.loads(seen[0].content) == {
        "rows": [{"hour": 7, "fare": 1.5, "passengers": None, "payment_type": "card"}]
    }


def test_predict_raises_with_the_servers_body() -> None:
    body = {"detail": {"errors": ["hour=77 is outside [0, 23]"], "warnings": []}}
    client, _ = scripted(httpx.Response(422, json=body))
    with pytest.raises(DeployError, match=r"POST .*/predict answered 422: .*hour=77 is outside \[0, 23\]"):
        target(client).predict([{"hour": 77}])
    client, _ = scripted(httpx.ConnectError("refused"))
    with pytest.raises(DeployError, match="no model server answering at"):
        target(client).predict([{"hour": 1}])


def test_constructor_rejects_nonsense_and_does_no_io() -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        LocalServerTarget(URL, timeout=0)
    with pytest.raises(ValueError, match="poll must be positive"):
        LocalServerTarget(URL, poll=-1)
    LocalServerTarget("http://nowhere.invalid").close()

"""The local deploy target: the model server that ``mlops-airflow serve`` runs on this host.

Deploying to it means moving the registry alias (the deploy stage does that) and then
waiting until the server, which follows the alias, reports the new version and checksum.
One server serves every model (``mlops-airflow serve``), so any model deploys to it: the
target asks for the model by name (``/models/<name>/metadata``), which also loads it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from mlops_airflow.exceptions import DeployError
from mlops_airflow.records import json_scalar
from mlops_airflow.serving.paths import model_url


def bearer_header(token: str | None) -> dict[str, str]:
    """``{"Authorization": "Bearer <token>"}``, or no header without a token (the one place it is built)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


#: What :meth:`LocalServerTarget._judge` says of a server with no per-model routes.
_LEGACY = "legacy"


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail"))
    except (ValueError, AttributeError):
        return _body_text(response)


def _body_text(response: httpx.Response, limit: int = 2000) -> str:
    text = response.text
    return text if len(text) <= limit else text[:limit] + "…"


class LocalServerTarget:
    """A model server reached over HTTP at ``base_url`` (the one ``mlops-airflow serve`` starts).

    ``timeout`` bounds :meth:`wait_for_version`; ``poll`` is the pause between attempts.
    Pass ``client`` to control transport and TLS (tests pass an ``httpx.MockTransport``).
    ``token`` is the server's bearer token (sent as ``Authorization: Bearer``); default the
    ``MLOPS_AIRFLOW_SERVER_TOKEN`` setting, none when unset. It is never logged.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60,
        poll: float = 0.5,
        client: httpx.Client | None = None,
        token: str | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if poll <= 0:
            raise ValueError(f"poll must be positive, got {poll}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.poll = poll
        self._owns_client = client is None
        # No I/O here: httpx.Client connects lazily, on the first request.
        self.client = client if client is not None else httpx.Client(timeout=10.0)
        self._model_name: str | None = None
        self._legacy = False  # the server has no per-model routes (found by wait_for_version)
        if token is None:
            from mlops_airflow import settings

            token = settings.server_token()
        self._headers = bearer_header(token)

    def __repr__(self) -> str:  # never show the token
        return f"LocalServerTarget({self.base_url!r}, auth={'on' if self._headers else 'off'})"

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> LocalServerTarget:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _unreachable(self, exc: Exception) -> str:
        return (
            f"no model server answering at {self.base_url}: start it with `mlops-airflow serve` "
            f"({type(exc).__name__}: {exc})"
        )

    def wait_for_version(self, model_name: str, version: int, sha256: str) -> dict[str, Any]:
        """Poll ``GET /metadata`` until the server serves ``model_name`` ``version`` with ``sha256``.

        Returns the server's metadata. Raises :class:`DeployError` naming what the server
        reported last if it does not get there within ``timeout`` seconds, and at once if it
        serves another model, serves that version with another checksum, or refused the
        version (e.g. a checksum mismatch on its side).
        """
        self._model_name = model_name
        url = model_url(self.base_url, model_name, "metadata")
        want = f"{model_name} version {version} (sha256 {sha256[:12]}…)"
        deadline = time.monotonic() + self.timeout
        last_seen = "nothing yet"
        while True:
            try:
                response = self.client.get(url, headers=self._headers)
            except httpx.TransportError as exc:
                last_seen = self._unreachable(exc)
            else:
                seen = self._judge(response, model_name, version, sha256)
                if seen == _LEGACY:  # a server from before many models: its one model at /metadata
                    url, self._legacy = f"{self.base_url}/metadata", True
                    last_seen = "a server of one model, at /metadata"
                    continue
                if seen is None:
                    return dict(response.json())
                last_seen = seen
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeployError(
                    f"the model server at {self.base_url} did not report {want} within {self.timeout:g}s; "
                    f"last seen: {last_seen}"
                )
            time.sleep(min(self.poll, remaining))

    def _judge(self, response: httpx.Response, model_name: str, version: int, sha256: str) -> str | None:
        """None when the response shows the wanted version, else what it shows; raises when waiting is pointless."""
        if response.status_code == 503:
            try:
                detail = response.json().get("detail") or {}
                reason = detail.get("reason") or detail.get("last_error") or _body_text(response)
            except (ValueError, AttributeError):
                reason = _body_text(response)
            return f"the server has no model loaded: {reason}"
        if response.status_code == 404:
            detail = _detail(response)
            if detail == "Not Found":  # no such route, not "no such model"
                return _LEGACY
            raise DeployError(f"the model server at {self.base_url} does not serve {model_name!r}: {detail}")
        if response.status_code != 200:
            return f"GET {response.request.url.path} answered {response.status_code}: {_body_text(response)}"
        try:
            meta = response.json()
            served_model, served_version, served_sha = meta["model_name"], meta["version"], meta["sha256"]
        except (ValueError, KeyError, TypeError):
            return (f"GET {response.request.url.path} answered something that is not server metadata: "
                    f"{_body_text(response)}")
        if served_model != model_name:
            raise DeployError(
                f"the model server at {self.base_url} serves {served_model!r}, not {model_name!r}: "
                f"start one with `mlops-airflow serve {model_name}`"
            )
        if meta.get("refused_version") == version:
            raise DeployError(
                f"the model server at {self.base_url} refused {model_name} version {version}: "
                f"{meta.get('last_error')}"
            )
        if served_version == version:
            if served_sha != sha256:
                raise DeployError(
                    f"the model server at {self.base_url} serves {model_name} version {version} with sha256 "
                    f"{str(served_sha)[:12]}…, not {sha256[:12]}…: is it reading another registry?"
                )
            return None
        return f"serving version {served_version}" + (
            f" ({meta['last_error']})" if meta.get("last_error") else ""
        )

    def predict(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """``POST /predict`` with ``rows`` (records); the server's answer, or DeployError with its body."""
        body = {"rows": [{str(key): json_scalar(value) for key, value in row.items()} for row in rows]}
        if self._model_name and not self._legacy:
            url = model_url(self.base_url, self._model_name, "predict")
        else:
            url = f"{self.base_url}/predict"
        try:
            response = self.client.post(
                url,
                content=json.dumps(body, allow_nan=False, default=str),
                headers={"content-type": "application/json", **self._headers},
            )
        except httpx.TransportError as exc:
            raise DeployError(self._unreachable(exc)) from exc
        if response.status_code != 200:
            raise DeployError(f"POST {url} answered {response.status_code}: {_body_text(response)}")
        try:
            return dict(response.json())
        except ValueError as exc:
            raise DeployError(
                f"POST {url} answered 200 with a body that is not JSON: {_body_text(response)}"
            ) from exc

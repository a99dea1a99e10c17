"""The fake kube-apiserver (no cluster exists here) and kubernetes clients pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_kube import FakeKube


@pytest.fixture
def fake_kube() -> Iterator[FakeKube]:
    fake = FakeKube()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def kube_clients(fake_kube: FakeKube) -> tuple[Any, Any]:
    """The REAL kubernetes client's AppsV1Api and CoreV1Api, configured from a kubeconfig for the fake."""
    from kubernetes import client, config

    api_client = config.new_client_from_config_dict(fake_kube.kubeconfig())
    return client.AppsV1Api(api_client), client.CoreV1Api(api_client)

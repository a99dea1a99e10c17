"""Prediction logs on S3 (moto's server, over HTTP): models and windows found by folder listings, not file listings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mlops_airflow.serving.logs import logged_models, read_prediction_logs
from mlops_airflow.storage.s3 import S3Store

pytestmark = pytest.mark.integration


class CountingClient:
    """The real boto3 client, with each ``list_objects_v2`` request's arguments kept."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.listings: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_paginator(self, name: str) -> Any:
        paginator = self._client.get_paginator(name)
        listings = self.listings

        class Recording:
            def paginate(self, **kwargs: Any) -> Any:
                listings.append(kwargs)
                return paginator.paginate(**kwargs)

        return Recording()


def test_folders_and_windows_on_s3(s3_client: Any, s3_bucket: str) -> None:
    client = CountingClient(s3_client)
    store = S3Store(f"s3://{s3_bucket}/registry", client)
    line = b'{"ts": "2026-01-10T08:00:00+00:00", "model_name": "m", "version": 1, "request_id": "r", "row": 0, ' \
           b'"features": {"hour": 1}, "prediction": 0}\n'
    for key in ("trips_a/date=2026-01-01/version=1/x.jsonl", "trips_a/date=2026-01-10/version=1/x.jsonl",
                "trips_b/date=2026-01-01/version=1/x.jsonl", "churn/date=2026-01-10/version=1/x.jsonl"):
        store.write_bytes(f"predictions/{key}", line)
    s3_client.put_object(Bucket=s3_bucket, Key="registry/predictions/", Body=b"")  # a folder marker some tools make

    assert store.list_dir("predictions")[1] == ["churn", "trips_a", "trips_b"]
    assert store.list_dir("predictions/trips_a/")[1] == ["date=2026-01-01", "date=2026-01-10"]
    assert store.list_dir("nothing/here")[1] == []
    since, until = datetime(2026, 1, 10, tzinfo=UTC), datetime(2026, 1, 11, tzinfo=UTC)
    client.listings.clear()
    assert logged_models(store, since, until, patterns=["trips_*"]) == ["trips_a"]
    assert all(listing.get("Delimiter") == "/" for listing in client.listings)  # no listing of the files below
    client.listings.clear()
    assert len(read_prediction_logs(store, "trips_a", since, until)) == 1
    assert [listing["Prefix"] for listing in client.listings if "Delimiter" not in listing] == [
        "registry/predictions/trips_a/date=2026-01-10/"]

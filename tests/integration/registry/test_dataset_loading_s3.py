"""Datasets read from S3 over HTTP (moto's server), the same code path as local files."""

from __future__ import annotations

import io
from typing import Any

import pandas as pd
import pytest

from mlops_airflow.data.loading import load_dataset
from mlops_airflow.exceptions import DataError

pytestmark = pytest.mark.integration


def put_frame(client: Any, bucket: str, key: str, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    if key.endswith(".parquet"):
        frame.to_parquet(buffer, index=False)
    else:
        frame.to_csv(buffer, index=False)
    client.put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def test_csv_parquet_and_patterns_load_from_s3(s3_client: Any, s3_bucket: str) -> None:
    first = pd.DataFrame({"id": [1, 2], "hour": [3, 4], "y": [0, 1]})
    second = pd.DataFrame({"id": [3], "hour": [5], "y": [1]})
    put_frame(s3_client, s3_bucket, "landing/2026-01.csv", first)
    put_frame(s3_client, s3_bucket, "landing/2026-02.csv", second)
    put_frame(s3_client, s3_bucket, "typed/part.parquet", first)

    single = load_dataset(f"s3://{s3_bucket}/landing/2026-01.csv", s3_client=s3_client)
    assert single.rows == 2 and single.format == "csv"
    both = load_dataset(f"s3://{s3_bucket}/landing/*.csv", s3_client=s3_client)
    assert both.frame["id"].tolist() == [1, 2, 3]
    assert both.files == [f"s3://{s3_bucket}/landing/2026-01.csv", f"s3://{s3_bucket}/landing/2026-02.csv"]
    assert both.fingerprint != single.fingerprint
    assert load_dataset(f"s3://{s3_bucket}/landing/*.csv", s3_client=s3_client).fingerprint == both.fingerprint
    typed = load_dataset(f"s3://{s3_bucket}/typed/part.parquet", s3_client=s3_client)
    assert typed.format == "parquet" and str(typed.frame["hour"].dtype) == "int64"


def test_missing_s3_objects_are_named(s3_client: Any, s3_bucket: str) -> None:
    with pytest.raises(DataError, match=f"data file not found: s3://{s3_bucket}/nope.csv"):
        load_dataset(f"s3://{s3_bucket}/nope.csv", s3_client=s3_client)
    with pytest.raises(DataError, match="no data files match"):
        load_dataset(f"s3://{s3_bucket}/none/*.csv", s3_client=s3_client)

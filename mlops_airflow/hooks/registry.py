"""The hook that turns an Airflow connection into a configured model registry."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from mlops_airflow.registry import ModelRegistry


def endpoint_from(host: str | None, port: int | None) -> str | None:
    """An S3 endpoint URL from a connection's host and port (a scheme in the host is kept)."""
    if not host:
        return None
    url = host if "://" in host else f"http://{host}"
    return f"{url}:{port}" if port else url


def s3_client_from(conn: Connection | None) -> Any:
    """A boto3 S3 client configured from ``conn`` (None: boto3's standard environment chain)."""
    import boto3

    if conn is None:
        return boto3.client("s3")
    extra = conn.extra_dejson
    return boto3.client(
        "s3",
        aws_access_key_id=conn.login or None,
        aws_secret_access_key=conn.password or None,
        endpoint_url=extra.get("endpoint_url") or endpoint_from(conn.host, conn.port),
        region_name=extra.get("region_name"),
    )


class RegistryHook(BaseHook):
    """Builds the :class:`~mlops_airflow.registry.ModelRegistry` at ``registry_uri``.

    For ``s3://`` registries (and ``mlflow+...`` ones whose side store is on S3) the boto3 client is configured from the connection
    ``conn_id`` (login: access key id, password: secret key, extra: ``endpoint_url``,
    ``region_name``); if that connection does not exist, boto3's standard environment
    chain applies (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, instance roles, ...).
    Credentials are never logged or returned.

    :param registry_uri: a local path, ``s3://bucket/prefix`` or ``mlflow+http://host:port?store=...``
        (see :mod:`mlops_airflow.registry.backend`); default: the
        ``MLOPS_AIRFLOW_REGISTRY_URI`` setting (see :mod:`mlops_airflow.settings`).
    :param conn_id: the Airflow connection holding S3 settings.
    """

    conn_name_attr = "conn_id"
    default_conn_name = "mlops_s3"
    conn_type = "mlops_s3"
    hook_name = "mlops-airflow S3 registry"

    def __init__(self, registry_uri: str | None = None, conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from mlops_airflow import settings

        self.registry_uri = registry_uri or settings.registry_uri()
        self.conn_id = conn_id

    def get_s3_client(self) -> Any:
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = self.get_connection(self.conn_id)
        except AirflowNotFoundException:
            self.log.info("No connection %r: using the standard AWS environment for S3", self.conn_id)
            conn = None
        return s3_client_from(conn)

    @cached_property
    def s3_client(self) -> Any | None:
        from mlops_airflow.registry.backend import store_uri

        return self.get_s3_client() if store_uri(self.registry_uri).startswith("s3://") else None

    def get_registry(self) -> ModelRegistry:
        from mlops_airflow.registry import open_registry

        return open_registry(self.registry_uri, s3_client=self.s3_client)

    def get_conn(self) -> ModelRegistry:
        return self.get_registry()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema"],
            "relabeling": {"login": "AWS access key id", "password": "AWS secret access key", "host": "S3 endpoint host"},
            "placeholders": {"extra": '{"endpoint_url": "http://minio:9000", "region_name": "us-east-1"}'},
        }

"""The trigger behind :class:`~mlops_airflow.sensors.s3.S3NewDataSensor` in deferrable mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class S3NewDataTrigger(BaseTrigger):
    """Poll a prefix until objects newer than the watch's watermark appear, then fire once.

    It only looks: claiming the objects (the write that makes a retry see the same ones)
    happens in the worker when the sensor resumes, so a trigger the triggerer restarts or
    runs twice changes nothing. boto3 is blocking, so each poll runs in a thread.

    Events: ``{"status": "success", "objects": [...]}`` with the new objects (key, uri,
    etag, size, modified), or ``{"status": "error", "message": ...}`` when listing or
    reading the watermark failed.

    :param prefix_uri: ``s3://bucket/prefix`` (or a local folder) to watch.
    :param pattern: shell pattern on keys relative to the prefix (``*`` crosses ``/``).
    :param registry_uri: the registry root holding the watermark record.
    :param state_key: the watch's name (its record is ``_watermarks/<state_key>.json``).
    :param lookback_seconds: see :class:`~mlops_airflow.data.arrivals.ArrivalTracker`.
    :param conn_id: the Airflow connection with S3 settings (absent: the AWS environment).
    :param poke_interval: seconds between polls.
    """

    def __init__(
        self,
        *,
        prefix_uri: str,
        pattern: str,
        registry_uri: str,
        state_key: str,
        lookback_seconds: float,
        conn_id: str = "mlops_s3",
        poke_interval: float = 60.0,
    ) -> None:
        super().__init__()
        self.prefix_uri = prefix_uri
        self.pattern = pattern
        self.registry_uri = registry_uri
        self.state_key = state_key
        self.lookback_seconds = lookback_seconds
        self.conn_id = conn_id
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "prefix_uri": self.prefix_uri,
                "pattern": self.pattern,
                "registry_uri": self.registry_uri,
                "state_key": self.state_key,
                "lookback_seconds": self.lookback_seconds,
                "conn_id": self.conn_id,
                "poke_interval": self.poke_interval,
            },
        )

    @property
    def state_store_uri(self) -> str:
        """Where the watermark record lives: the registry's store (an MLflow registry's side store)."""
        from mlops_airflow.registry.backend import store_uri

        return store_uri(self.registry_uri)

    async def _s3_client(self) -> Any | None:
        if not (self.prefix_uri.startswith("s3://") or self.state_store_uri.startswith("s3://")):
            return None
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        from mlops_airflow.hooks.registry import s3_client_from

        try:
            conn = await BaseHook.aget_connection(self.conn_id)
        except AirflowNotFoundException:
            self.log.info("No connection %r: using the standard AWS environment for S3", self.conn_id)
            conn = None
        return await asyncio.to_thread(s3_client_from, conn)

    def _poll(self, client: Any | None) -> list[dict[str, Any]]:
        from mlops_airflow.data.arrivals import ArrivalTracker, Source
        from mlops_airflow.storage import open_store

        tracker = ArrivalTracker(open_store(self.state_store_uri, s3_client=client), self.state_key,
                                 lookback=timedelta(seconds=self.lookback_seconds))
        return tracker.new_objects(Source(self.prefix_uri, self.pattern, s3_client=client).list())

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            client = await self._s3_client()
            while True:
                found = await asyncio.to_thread(self._poll, client)
                if found:
                    self.log.info("%d new object(s) under %s", len(found), self.prefix_uri)
                    yield TriggerEvent({"status": "success", "objects": found})
                    return
                self.log.info("Nothing new under %s matching %r; next look in %ss",
                              self.prefix_uri, self.pattern, self.poke_interval)
                await asyncio.sleep(self.poke_interval)
        except Exception as exc:  # the sensor turns this into a task failure with the reason
            yield TriggerEvent({"status": "error", "message": f"{type(exc).__name__}: {exc}"})

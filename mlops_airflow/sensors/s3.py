"""Wait for new data under an S3 prefix, and hand the new objects' URIs to the tasks after."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mlops_airflow.data.arrivals import ArrivalTracker, CommitMode
    from mlops_airflow.hooks.registry import RegistryHook


class S3NewDataSensor(BaseSensorOperator):
    """Succeed once objects newer than the last processed watermark appear under a prefix.

    The watermark is a small JSON record in the registry's store (``_watermarks/<state_key>.json``,
    see :mod:`mlops_airflow.data.arrivals`): durable, shared by every worker that reaches the
    registry, and independent of Airflow's metadata DB. The objects found are claimed
    under this task's run: a retry or a cleared task gets exactly the same objects back.
    The result (XCom, one key each) holds ``uris``, ``objects`` (key, uri, etag, size,
    modified), ``count``, ``claim`` and ``state_key``.

    Deferrable by default: after one look, the wait happens in the triggerer and the
    worker slot is free.

    :param prefix_uri: ``s3://bucket/prefix`` to watch; a local folder works too (templated).
    :param pattern: shell pattern on keys relative to the prefix, e.g. ``*.csv``; ``*``
        crosses ``/``. Names starting with ``.`` or ``_`` are never data (templated).
    :param state_key: the watch's name; default ``<dag_id>.<task_id>`` (templated).
    :param registry_uri: the registry root that keeps the watermark; default from settings (templated).
    :param conn_id: Airflow connection with S3 settings, as for :class:`RegistryHook`.
    :param lookback: how far before the watermark objects are still compared one by one
        (late listings, multipart uploads dated by their start).
    :param commit: ``on_claim`` (default) advances the watermark when the sensor claims
        the objects; ``on_success`` leaves the claim pending until a
        :class:`~mlops_airflow.operators.watermark.CommitNewDataOperator` at the end of the
        DAG commits it, so a run that fails leaves the objects new for the next run.
    :param deferrable: wait in the triggerer (default) instead of in a worker slot.
    """

    template_fields: Sequence[str] = ("prefix_uri", "pattern", "state_key", "registry_uri")
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        prefix_uri: str,
        pattern: str = "*",
        state_key: str | None = None,
        registry_uri: str | None = None,
        conn_id: str = "mlops_s3",
        lookback: timedelta = timedelta(days=1),
        commit: CommitMode = "on_claim",
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        from mlops_airflow.data.arrivals import check_commit_mode

        if deferrable and kwargs.get("mode") == "reschedule":
            raise ValueError("mode='reschedule' and deferrable=True conflict: choose one way to free the worker")
        check_commit_mode(commit)
        kwargs.setdefault("multiple_outputs", True)
        super().__init__(**kwargs)
        self.prefix_uri = prefix_uri
        self.pattern = pattern
        self.state_key = state_key
        self.registry_uri = registry_uri
        self.conn_id = conn_id
        self.lookback = lookback
        self.commit = commit
        self.deferrable = deferrable
        self._claimed: list[dict[str, Any]] = []

    @cached_property
    def hook(self) -> RegistryHook:
        from mlops_airflow.hooks.registry import RegistryHook

        return RegistryHook(registry_uri=self.registry_uri or None, conn_id=self.conn_id)

    def _key(self, context: Context) -> str:
        ti = context["ti"]
        return self.state_key or f"{ti.dag_id}.{ti.task_id}"

    def _claimant(self, context: Context) -> str:
        from mlops_airflow.registry import idempotency_key

        ti = context["ti"]
        return idempotency_key(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1))

    def tracker(self, context: Context) -> ArrivalTracker:
        from mlops_airflow.data.arrivals import ArrivalTracker

        return ArrivalTracker(self.hook.get_registry().store, self._key(context), lookback=self.lookback)

    def poke(self, context: Context) -> bool:
        from mlops_airflow.data.arrivals import Source

        client = self.hook.get_s3_client() if self.prefix_uri.startswith("s3://") else None
        listing = Source(self.prefix_uri, self.pattern, s3_client=client).list()
        self._claimed = self.tracker(context).claim(
            self._claimant(context), listing, commit=self.commit, source=self.prefix_uri, pattern=self.pattern
        )
        if not self._claimed:
            self.log.info("Nothing new under %s matching %r", self.prefix_uri, self.pattern)
        return bool(self._claimed)

    def _result(self, context: Context) -> dict[str, Any]:
        for obj in self._claimed:
            self.log.info("New: %s (%s bytes, modified %s)", obj["uri"], obj["size"], obj["modified"])
        return {
            "uris": [obj["uri"] for obj in self._claimed],
            "objects": self._claimed,
            "count": len(self._claimed),
            "claim": self._claimant(context),
            "state_key": self._key(context),
        }

    def _defer(self, context: Context) -> None:
        from mlops_airflow.sensors.triggers.s3 import S3NewDataTrigger

        self.defer(
            trigger=S3NewDataTrigger(
                prefix_uri=self.prefix_uri,
                pattern=self.pattern,
                registry_uri=self.hook.registry_uri,
                state_key=self._key(context),
                lookback_seconds=self.lookback.total_seconds(),
                conn_id=self.conn_id,
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def execute(self, context: Context) -> dict[str, Any]:
        if not self.deferrable:
            super().execute(context)
        elif not self.poke(context):
            self._defer(context)
        return self._result(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Claim what the trigger saw; if another run claimed it first, wait again."""
        from airflow.sdk.exceptions import AirflowException

        if event.get("status") != "success":
            raise AirflowException(f"watching {self.prefix_uri} failed: {event.get('message', event)}")
        if not self.poke(context):
            self.log.info("The new objects were claimed by another run meanwhile: waiting again")
            self._defer(context)
        return self._result(context)

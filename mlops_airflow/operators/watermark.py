"""Commit the new data a :class:`~mlops_airflow.sensors.s3.S3NewDataSensor` claimed, once the run has used it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mlops_airflow.operators.base import MlopsBaseOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class CommitNewDataOperator(MlopsBaseOperator):
    """Advance a watch's watermark past a claim: the last task of a DAG whose sensor says ``commit="on_success"``.

    Idempotent: committing a committed claim changes nothing, and a claim of nothing
    (no new data) commits nothing.

    :param state_key: the sensor's ``state_key`` (wire ``sensor.output["state_key"]``) (templated).
    :param claim: the sensor's ``claim`` (wire ``sensor.output["claim"]``) (templated).
    :param lookback: the sensor's ``lookback`` (it decides which committed objects are remembered).
    """

    template_fields: Sequence[str] = ("registry_uri", "state_key", "claim")
    default_timeout = timedelta(minutes=5)

    def __init__(self, *, state_key: str, claim: str, lookback: timedelta = timedelta(days=1), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state_key = state_key
        self.claim = claim
        self.lookback = lookback

    def run(self, context: Context) -> dict[str, Any]:
        from mlops_airflow.data.arrivals import ArrivalTracker

        objects = ArrivalTracker(self.registry.store, self.state_key, lookback=self.lookback).commit(self.claim)
        self.log.info("Committed %d object(s) of %s for watch %s", len(objects), self.claim, self.state_key)
        return {"committed": len(objects), "state_key": self.state_key}

"""Per-model retraining: the CT run records how to retrain its model, and a drift event for any model retrains it.

Through a real metadata DB. No scheduler process runs here, so the step between the drift
monitor's task and the retraining DAG's tasks is the scheduler's own code, called once: the
schedule's evaluation (``DagModel.dags_needing_dagruns``, which resolves the asset aliases)
and the asset-triggered run's creation with the events it consumes
(``SchedulerJobRunner._create_dag_runs_asset_triggered``). The run's tasks then run as
``dag.test()`` runs them, on that run: ``triggering_asset_events`` reach the tasks from the
run's consumed events, as under a scheduler. Not covered: a scheduler's loop, an executor
and a separate API server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from testsupport import SAMPLE, asset_events, asset_queued_for, load_dag, unpause_dag, xcom_value

pytestmark = pytest.mark.integration
CT = "mlops_continuous_training"
RETRAINING = "mlops_drift_retraining"
# Not the CT DAG's defaults: the retraining must bring back this model's own Params, not the DAG's.
CHURN_CONF = {"data_uri": str(SAMPLE / "trips_2026_02.csv"), "model_name": "churn_x",
              "estimator": "sklearn.linear_model.LogisticRegression", "estimator_params": {"C": 0.5, "max_iter": 300},
              "validation": None}


def test_a_ct_run_records_its_dag_and_params_as_the_way_to_retrain(
    airflow_db: Path, registry: Any, model_server: Any
) -> None:
    model_server("churn_x")  # the deploy stage's target
    run = load_dag(f"{CT}.py").test(run_conf=CHURN_CONF)
    assert str(run.state) == "success"
    manifest = registry.resolve("churn_x", alias="champion")
    trigger = manifest["lineage"]["train"]["trigger"]
    # Every Param of the run, the ones given and the DAG's defaults, as JSON: enough to run it again.
    assert trigger["dag_id"] == CT and trigger["conf"] == {**trigger["conf"], **CHURN_CONF}
    assert set(trigger["conf"]) == set(load_dag(f"{CT}.py").params)
    assert manifest["lineage"]["train"]["run_id"] == run.run_id
    assert registry.candidate("churn_x", manifest["sha256"])["lineage"]["train"]["trigger"] == trigger


def write_logs(registry: Any, model: str, version: int, frame: pd.DataFrame) -> None:
    """What the model server's logger writes for ``frame``'s rows answered by ``version``."""
    from mlops_airflow.serving.logs import PredictionLogger

    logger = PredictionLogger(registry.store, model, sample_rate=1.0, worker_id="test")
    for start in range(0, len(frame), 50):
        chunk = frame.iloc[start:start + 50]
        assert logger.offer(version=version, request_id=f"r{start}", predictions=[0] * len(chunk),
                            values={column: chunk[column].tolist() for column in chunk.columns})
    logger.flush()


def create_asset_triggered_run(dag_id: str) -> str:
    """One scheduler step for ``dag_id``: evaluate its asset schedule and create its run; the run id."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        due, triggered = DagModel.dags_needing_dagruns(session)
        assert dag_id in triggered, f"the queued events do not satisfy {dag_id}'s schedule"
        SchedulerJobRunner(job=Job())._create_dag_runs_asset_triggered(
            dag_models=[model for model in due if model.dag_id == dag_id], session=session)
        run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_type == "asset_triggered")
                              .order_by(DagRun.id.desc())).first()
        assert run is not None
        return str(run.run_id)


def run_tasks_of(dag: Any, run_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run the tasks of the existing run ``run_id`` as ``dag.test()`` runs a run it creates."""
    import airflow.models.dagrun as dagrun_module
    from airflow.models.dagrun import DagRun
    from airflow.utils.state import DagRunState

    def existing_run(*, dag: Any, session: Any, **_: Any) -> DagRun:
        run = session.query(DagRun).filter_by(dag_id=dag.dag_id, run_id=run_id).one()
        run.dag, run.state = dag, DagRunState.RUNNING
        session.commit()
        return run

    monkeypatch.setattr(dagrun_module, "get_or_create_dagrun", existing_run)
    return dag.test()


def test_drift_of_a_non_default_model_retrains_that_model_with_its_recorded_params(
    airflow_db: Path, registry: Any, build_version: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from mlops_airflow.pipeline.retrain import trigger_record

    # churn_x's champion, trained with the lineage a CT run records (the test above checks that it does);
    # quiet_y is served but logged nothing; ghost_z has no champion at all.
    lineage = {"dag_id": CT, "run_id": "manual__0", "task_id": "train", "trigger": trigger_record(CT, CHURN_CONF)}
    churn = build_version("churn_x", str(SAMPLE / "trips_2026_01.csv"), lineage=lineage)
    build_version("quiet_y", str(SAMPLE / "trips_2026_01.csv"))
    january = pd.read_csv(SAMPLE / "trips_2026_01.csv")[[c["name"] for c in churn["feature_schema"]["columns"]]]
    write_logs(registry, "churn_x", churn["version"],
               january.head(200).assign(hour=3, fare_usd=lambda f: f["fare_usd"] * 3, payment_type="cash"))
    unpause_dag(RETRAINING)

    # One monitor run over three models: each judged on its own, one event, for the model that drifted.
    monitor = load_dag("mlops_drift_monitor.py").test(run_conf={
        "models": ["churn_x", "quiet_y", "ghost_z"], "min_rows": 100, "policy": {"ks_pvalue": 0, "chi2_pvalue": 0}})
    assert str(monitor.state) == "success"
    found = xcom_value(monitor, "check_drift")
    assert (found["models"]["churn_x"]["outcome"], found["models"]["churn_x"]["retrain"]) == ("drifted", True)
    assert (found["models"]["quiet_y"]["outcome"], found["models"]["quiet_y"]["rows"]) == ("insufficient_data", 0)
    assert registry.store.exists(found["models"]["quiet_y"]["record_uri"].removeprefix(registry.store.uri + "/"))
    assert found["failed"] == {"ghost_z": "ModelNotFound: model 'ghost_z' has no alias 'champion'"}
    assert found["retrain"] == ["churn_x"]
    assert [e["extra"]["model_name"] for e in asset_events("x-mlops://churn_x/drift", monitor.run_id)] == ["churn_x"]
    assert asset_events("x-mlops://quiet_y/drift", monitor.run_id) == []
    # The retraining DAG names no model's asset: the event reached it through the alias.
    assert asset_queued_for(RETRAINING, "x-mlops://churn_x/drift")

    run_id = create_asset_triggered_run(RETRAINING)
    retraining = run_tasks_of(load_dag(f"{RETRAINING}.py"), run_id, monkeypatch)
    assert str(retraining.state) == "success"
    plan = xcom_value(retraining, "plan", "plan")
    churn_run = next(run for run in plan["runs"] if run["models"] == ["churn_x"])
    assert (churn_run["dag_id"], churn_run["source"], churn_run["conf"]) == (CT, "lineage", CHURN_CONF)
    assert "churn_x: drift event on version 1" in churn_run["reasons"][0]
    with create_session() as session:
        started = session.query(DagRun).filter(DagRun.run_id.like(f"retrain__%__{run_id}")).all()
        try:
            (triggered,) = [run for run in started if run.run_id == f"retrain__churn_x__{run_id}"]
            assert (triggered.dag_id, triggered.conf, triggered.logical_date) == (CT, CHURN_CONF, None)
            params = load_dag(f"{CT}.py").params
            params.update(triggered.conf)
            params.validate()  # the recorded conf is a valid conf for a CT run
        finally:
            for run in started:  # queued only (no scheduler here): leave none behind for other tests
                session.delete(run)
    assert json.dumps(plan)  # the plan is plain JSON in XCom


def test_a_manual_run_retrains_the_models_it_names(airflow_db: Path, registry: Any) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    unpause_dag(CT)  # serialized in the DB: the trigger needs the target DAG there
    run = load_dag(f"{RETRAINING}.py").test(run_conf={"models": ["trip_tips"]})
    assert str(run.state) == "success"
    (triggered,) = xcom_value(run, "plan")
    assert (triggered["trigger_dag_id"], triggered["conf"]) == (CT, {"model_name": "trip_tips"})  # no champion: fallback
    with create_session() as session:
        started = session.query(DagRun).filter_by(dag_id=CT, run_id=triggered["trigger_run_id"]).one()
        assert started.conf == {"model_name": "trip_tips"} and started.logical_date is None
        session.delete(started)  # queued only: no scheduler here; leave no run behind for other tests

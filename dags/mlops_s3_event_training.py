"""Push instead of poll: S3 event notifications through SQS start validation, which starts training.

    S3 "object created" -> SQS queue -> AssetWatcher (MessageQueueTrigger, in the triggerer)
        -> asset event on x-mlops://landing/... -> this DAG: validate
        -> asset event x-mlops://trip_tips/validated -> mlops_asset_training

Set up once: an SQS queue whose policy lets S3 send to it, and an event notification on
the bucket for `s3:ObjectCreated:*` under the prefix, sent to that queue. The watcher
reads the queue with the `aws_default` connection and deletes what it read; the
message batch is in the triggering event's `extra["payload"]`. No worker slot is held
while nothing happens, and no run starts for S3's setup test message (it has no
`Records`).

The watcher's `QueueEventTrigger` is common-messaging's `MessageQueueTrigger`, built in the
triggerer: importing that module loads every queue provider (boto3 for SQS), which the DAG
processor would otherwise pay at every parse. Install the `aws` extra to run it.
"""

from __future__ import annotations

from airflow.sdk import DAG, Asset, AssetWatcher, Param

from mlops_airflow.operators.validate import ValidateDataOperator
from mlops_airflow.sensors.triggers.messaging import QueueEventTrigger

LANDING = "s3://mlops-landing/trips"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/mlops-landing-events"

landing = Asset(
    # An x- scheme: an s3:// asset URI makes Airflow load the Amazon provider (and boto3) to normalise it
    # at every parse. The asset names the landing prefix; the data itself is read from LANDING.
    "x-mlops://landing/mlops-landing/trips",
    watchers=[
        AssetWatcher(
            name="mlops_landing_sqs",
            trigger=QueueEventTrigger(
                scheme="sqs",
                sqs_queue=QUEUE_URL,
                aws_conn_id="aws_default",
                # Only real S3 event notifications: S3's "s3:TestEvent" has no Records.
                message_filtering="jsonpath",
                message_filtering_config="Records[*].s3.object.key",
                waiter_delay=30,
            ),
        )
    ],
)

with DAG(
    dag_id="mlops_s3_event_training",
    description="Validate new S3 data as soon as S3 says it landed; training follows on the validated asset",
    schedule=[landing],
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "continuous-training", "triggers"],
    params={
        "target": Param("tipped", type="string"),
        "model_name": Param("trip_tips", type="string", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"),
        "validation": Param(None, type=["null", "string", "object"]),
    },
) as dag:
    ValidateDataOperator(
        task_id="validate",
        data_uri=f"{LANDING}/*.csv",  # everything so far: the event says when, not what to train on
        target="{{ params.target }}",
        model_name="{{ params.model_name }}",
        validation="{{ params.validation }}",
        retries=0,
    )

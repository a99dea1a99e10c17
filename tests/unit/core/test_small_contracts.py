"""Small promises found in review: masking, endpoints, text Params."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_airflow.data.loading import mask_dsn
from mlops_airflow.hooks.registry import endpoint_from


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://u:hunter2@h/db?table=t", "postgresql://u@h/db?password=hunter2&table=t",
     "postgresql://u@h/db?sslpassword=hunter2"],
)
def test_database_passwords_never_survive_masking(dsn: str) -> None:
    assert "hunter2" not in mask_dsn(dsn)
    assert "table=t" in mask_dsn(dsn) or "table" not in dsn


@pytest.mark.parametrize(
    ("host", "port", "url"),
    [("minio", 9000, "http://minio:9000"), ("minio", None, "http://minio"), ("https://s3.example", None, "https://s3.example"),
     (None, 9000, None)],
)
def test_s3_endpoint_from_a_connection(host: str | None, port: int | None, url: str | None) -> None:
    assert endpoint_from(host, port) == url


def test_params_that_name_things_stay_text_under_native_rendering() -> None:
    import jinja2

    from mlops_airflow.operators.train import TrainModelOperator

    operator = TrainModelOperator(task_id="t", model_name="m", dataset_uri="x", target="y", row_key="k")
    operator.model_name, operator.target, operator.row_key = 2024, 7, None  # as literal_eval would leave them
    operator.render_template_fields({}, jinja2.Environment())
    assert (operator.model_name, operator.target, operator.row_key) == ("2024", "7", None)


def test_a_local_store_refuses_keys_that_lead_out_of_its_root(tmp_path: Path) -> None:
    from mlops_airflow.exceptions import StorageError
    from mlops_airflow.storage.local import LocalStore

    store = LocalStore(tmp_path / "root")
    store.write_bytes("a/b.json", b"{}")
    assert store.read_bytes("a/../a/b.json") == b"{}"  # ".." that stays inside is fine
    for key in ("../outside", "a/../../outside", "/etc/passwd", "a/\x00b"):
        with pytest.raises(StorageError, match="escapes the store root"):
            store.read_bytes(key)

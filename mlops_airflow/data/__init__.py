"""Datasets: loading from local paths and S3, fingerprints, schemas and leak-free splits."""

from mlops_airflow.data.loading import Dataset, load_dataset
from mlops_airflow.data.schema import feature_schema, schema_columns
from mlops_airflow.data.split import Split, hash_split

__all__ = ["Dataset", "Split", "feature_schema", "hash_split", "load_dataset", "schema_columns"]

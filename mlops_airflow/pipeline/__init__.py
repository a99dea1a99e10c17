"""The pipeline's stages as plain functions: what each operator runs, usable without Airflow.

Each stage takes a :class:`~mlops_airflow.registry.ModelRegistry` and small arguments,
does its work through the core packages, and returns a small JSON-serialisable dict.
"""

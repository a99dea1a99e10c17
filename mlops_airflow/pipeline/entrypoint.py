"""The training stage as a process: ``python -m mlops_airflow.training '<json request>'``.

This is what :class:`~mlops_airflow.operators.kubernetes_train.KubernetesTrainOperator` runs
in a pod, and what anyone can run on a laptop or a CI job: the same
:func:`~mlops_airflow.pipeline.train.run_training` the in-process operator calls.

The candidate travels through the artifact store, never through logs: after storing it,
the process writes a small *training claim* at a key derived from the request's ``claim``
(the operator makes it from dag id, run id, task id, map index and try number) and prints
one line of JSON. The operator then reads the claim from the registry by that key, so a
log line lost, truncated or interleaved cannot change what is evaluated.

Exit status: 0 on success; :data:`EXIT_PERMANENT` (2) when retrying cannot help (bad
request, data or spec), with a one-line reason on stderr; 1 for anything else (e.g.
storage), which may be retried. The pod operator fails its task without retries on 2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from mlops_airflow.exceptions import (
    PERMANENT_ERRORS,
    ArtifactNotFound,
    ConfigError,
    MlopsError,
    RegistryError,
)
from mlops_airflow.registry import ModelRegistry
from mlops_airflow.registry.registry import check_name

log = logging.getLogger(__name__)

#: The exit status meaning "retrying cannot help".
EXIT_PERMANENT = 2

#: The request's fields: run_training's arguments, plus ``claim``.
REQUIRED = ("model_name", "dataset_uri", "target")
OPTIONAL = ("estimator", "estimator_params", "row_key", "holdout_fraction", "lineage", "pipeline_factory",
            "search_space", "tuning", "claim")


def check_request(request: Any) -> dict[str, Any]:
    """The request if its fields are known and present; raises :class:`ConfigError` naming a bad field."""
    if not isinstance(request, dict):
        raise ConfigError(f"the training request must be a JSON object, got {type(request).__name__}")
    unknown = sorted(set(request) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        raise ConfigError(f"training request: unknown field {unknown[0]!r} (known: {', '.join(REQUIRED + OPTIONAL)})")
    for name in REQUIRED:
        if not isinstance(request.get(name), str) or not request[name]:
            raise ConfigError(f"training request: {name} is required (a non-empty string)")
    check_mappings(request, (*MAPPING_FIELDS, "lineage"), where="training request: ")
    return request


#: The training arguments that must be mappings (JSON objects) when given.
MAPPING_FIELDS = ("estimator_params", "search_space", "tuning")


def check_mappings(fields: Mapping[str, Any], names: Sequence[str] = MAPPING_FIELDS, *, where: str = "") -> None:
    """Raise :class:`ConfigError` naming the first of ``names`` given in ``fields`` but not a mapping.

    One check for every way training is asked for: the in-process operator, the pod
    operator and the pod's entrypoint.
    """
    for name in names:
        value = fields.get(name)
        if value is not None and not isinstance(value, Mapping):
            raise ConfigError(f"{where}{name} must be a mapping (a JSON object), got {value!r}")


def request_hash(request: dict[str, Any]) -> str:
    """What the claim is bound to: the request minus its claim, canonically encoded."""
    body = {k: v for k, v in request.items() if k != "claim"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def claim_key(model_name: str, claim: str) -> str:
    return f"{check_name(model_name)}/training-claims/{hashlib.sha256(claim.encode()).hexdigest()[:32]}.json"


def run_request(registry: ModelRegistry, request: dict[str, Any]) -> dict[str, Any]:
    """Train as ``request`` says, store the candidate and its claim; returns the small result."""
    from mlops_airflow.pipeline.train import run_training

    request = check_request(request)
    args = {k: v for k, v in request.items() if k != "claim" and v is not None}
    record = run_training(registry, **args)
    result = {"model_name": record["model_name"], "sha256": record["sha256"], "artifact_uri": record["artifact_uri"]}
    claim = request.get("claim")
    if claim:
        key = claim_key(request["model_name"], claim)
        registry.write_record(key, {"format_version": 1, "claim": claim, "request_hash": request_hash(request),
                                    **result})
        result["claim_key"] = key
    return result


def read_claim(registry: ModelRegistry, request: dict[str, Any]) -> dict[str, Any]:
    """The candidate record the process made for ``request`` (found by its claim, checked against the request)."""
    key = claim_key(request["model_name"], request["claim"])
    try:
        claim = json.loads(registry.store.read_bytes(key))
    except ArtifactNotFound as exc:
        raise RegistryError(f"the training process left no claim at {key}: it did not finish storing a candidate") from exc
    if claim.get("claim") != request["claim"] or claim.get("request_hash") != request_hash(request):
        raise RegistryError(f"the training claim at {key} belongs to another request: refusing to use its candidate")
    return registry.candidate(request["model_name"], claim["sha256"])


def main(argv: list[str] | None = None) -> int:
    """``python -m mlops_airflow.training [--registry URI] REQUEST_JSON`` (``-`` reads it from stdin)."""
    import argparse

    from mlops_airflow.registry import open_registry

    parser = argparse.ArgumentParser(
        prog="python -m mlops_airflow.training",
        description="Train a candidate as the request says, store it in the registry, print one line of JSON.",
    )
    parser.add_argument("request", help="the training request as JSON, or - to read it from stdin")
    parser.add_argument("--registry", help="registry URI (default: the MLOPS_AIRFLOW_REGISTRY_URI setting)")
    args = parser.parse_args(argv)
    # Logs go to stderr: stdout carries only the one-line result.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        raw = sys.stdin.read() if args.request == "-" else args.request
        try:
            request = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"the training request is not valid JSON: {exc}") from exc
        result = run_request(open_registry(args.registry), request)
    except MlopsError as exc:
        print(f"training failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_PERMANENT if isinstance(exc, PERMANENT_ERRORS) else 1
    print(json.dumps(result, sort_keys=True))
    return 0

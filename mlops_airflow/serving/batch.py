"""Batch scoring: a dataset scored by a registered model, in bounded-memory chunks, published atomically.

Three steps, which one task can run in a row or an Airflow DAG can spread over mapped tasks:

1. :func:`plan_batch` resolves the alias to one version (every partition then scores with
   the same model even if the alias moves), hashes the input files, splits them into
   partitions and stores the plan;
2. :func:`score_partition` loads that version with the server's safe loader, reads its
   partition chunk by chunk, checks each chunk with the server's own rules
   (:func:`~mlops_airflow.serving.requests.check_frame`) and writes one part per chunk;
3. :func:`publish_batch` writes ``_SUCCESS``, the manifest listing every part: the one
   object whose creation publishes the output.

Layout below ``output_uri``::

    _SUCCESS                                   the manifest (JSON): parts, row counts, model, input fingerprint
    _parts/<key>/plan.json                     the plan
    _parts/<key>/p00000-c00000.parquet         predictions of partition 0, chunk 0
    _parts/<key>/rejects-p00000-c00003.parquet rows set aside under on_invalid: skip, with the reasons
    _parts/<key>/partition-00000.json          what partition 0 wrote

``<key>`` is a hash of the model version, the input's fingerprint and the settings, so a
retried task rewrites the same parts with the same bytes and converges to the same
output, while an attempt with another model or input never touches the published one.
Only what ``_SUCCESS`` lists is the output; other ``_parts/`` folders are leftovers of
unfinished attempts, removed at the next publish. The leading ``_`` keeps Spark, pyarrow
and pandas dataset readers from picking parts up on their own: read through the manifest
(:func:`read_predictions`).
"""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from mlops_airflow.data.chunks import describe_file, input_files, read_chunks, split_partitions
from mlops_airflow.data.loading import files_fingerprint
from mlops_airflow.exceptions import ArtifactNotFound, ConfigError, DataError, DataValidationError
from mlops_airflow.registry.registry import check_name, to_json
from mlops_airflow.serving.loading import feature_names, load_manifest_model
from mlops_airflow.storage import ArtifactStore, open_store, sha256_hex

if TYPE_CHECKING:
    import pandas as pd

    from mlops_airflow.registry import ModelRegistry
    from mlops_airflow.serving.loading import LoadedModel

log = logging.getLogger(__name__)

OnInvalid = Literal["fail", "skip"]
OutputFormat = Literal["parquet", "csv"]
MANIFEST = "_SUCCESS"
PARTS = "_parts"
BATCH_FORMAT_VERSION = 1
DEFAULT_CHUNK_ROWS = 100_000
#: Columns every output row gets; id columns may not take these names.
OUTPUT_COLUMNS = ("prediction", "model_version", "input_fingerprint")
_SHOWN_ERRORS = 10


def plan_batch(
    registry: ModelRegistry,
    *,
    model_name: str,
    input_uri: str,
    output_uri: str,
    alias: str | None = "champion",
    version: int | None = None,
    id_columns: list[str] | None = None,
    ignore_columns: list[str] | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    partitions: int = 1,
    on_invalid: OnInvalid = "fail",
    output_format: OutputFormat = "parquet",
    s3_client: Any | None = None,
) -> dict[str, Any]:
    """Resolve the model, hash and split the input, and store the plan; returns it (``plan_uri``, ``partitions``).

    Raises :class:`ConfigError` for invalid settings, :class:`DataError` for unreadable
    input and :class:`~mlops_airflow.exceptions.ModelNotFound` for an unknown model or alias.
    """
    id_columns = [str(column) for column in id_columns or []]
    ignore_columns = [str(column) for column in ignore_columns or []]
    _check_settings(id_columns, ignore_columns, chunk_rows, partitions, on_invalid, output_format, output_uri)
    check_name(model_name)
    manifest = registry.resolve(model_name, version=version, alias=None if version is not None else alias)
    store, keys = input_files(input_uri, s3_client=s3_client)
    files = []
    for key in keys:
        files.append(describe_file(store, key))
        log.info("Input %s: %d bytes, sha256 %s", files[-1]["uri"], files[-1]["size"], files[-1]["sha256"][:12])
    fingerprint = files_fingerprint([(info["key"], bytes.fromhex(info["sha256"])) for info in files])
    layout = split_partitions(files, partitions)
    settings = {
        "model": {"name": model_name, "alias": alias if version is None else None, "version": int(manifest["version"]),
                  "sha256": manifest["sha256"]},
        "input_uri": input_uri.strip(),
        "input_store": store.uri,
        "input_fingerprint": fingerprint,
        "files": files,
        "output_uri": output_uri,
        "id_columns": id_columns,
        "ignore_columns": ignore_columns,
        "chunk_rows": int(chunk_rows),
        "on_invalid": on_invalid,
        "output_format": output_format,
        "partitions": layout,
    }
    # NB: only what decides the output goes into the key, so a retried plan finds its own parts
    key = sha256_hex(json.dumps(settings, sort_keys=True).encode())[:16]
    out = open_store(output_uri, s3_client=s3_client)
    plan = {"format_version": BATCH_FORMAT_VERSION, "key": key, **settings,
            "plan_uri": out.url(f"{PARTS}/{key}/plan.json")}
    out.write_bytes(f"{PARTS}/{key}/plan.json", to_json(plan))
    log.info("Planned %d partition(s) of %d file(s) for %s v%s: %s", len(layout), len(files), model_name,
             manifest["version"], plan["plan_uri"])
    return plan


def _check_settings(id_columns: list[str], ignore_columns: list[str], chunk_rows: int, partitions: int,
                    on_invalid: str, output_format: str, output_uri: str) -> None:
    if on_invalid not in ("fail", "skip"):
        raise ConfigError(f"on_invalid must be 'fail' or 'skip', got {on_invalid!r}")
    if output_format not in ("parquet", "csv"):
        raise ConfigError(f"output_format must be 'parquet' or 'csv', got {output_format!r}")
    if not isinstance(chunk_rows, int) or isinstance(chunk_rows, bool) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be a positive number of rows, got {chunk_rows!r}")
    if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
        raise ConfigError(f"partitions must be a positive number, got {partitions!r}")
    if not isinstance(output_uri, str) or not output_uri.strip():
        raise ConfigError("output_uri is empty: give a folder path or s3:// prefix for the predictions")
    clashes = sorted(set(id_columns) & {*OUTPUT_COLUMNS, "row", "file", "reasons"})
    clashes += [column for column in id_columns if column.startswith("probability_")]
    if clashes:
        raise ConfigError(f"id_columns {clashes} clash with the columns batch scoring writes: rename them")
    both = sorted(set(id_columns) & set(ignore_columns))
    if both:
        raise ConfigError(f"columns {both} are in both id_columns and ignore_columns")


def partition_descriptors(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """One small JSON-able descriptor per partition of ``plan``: what a mapped task receives."""
    files = plan["files"]
    descriptors = []
    for index, segments in enumerate(plan["partitions"]):
        parts = []
        for segment in segments:
            name = files[segment["file"]]["uri"].rsplit("/", 1)[-1]
            groups = segment["row_groups"]
            parts.append(name if groups is None else f"{name}[row groups {groups[0]}-{groups[1] - 1}]")
        descriptors.append({"plan_uri": plan["plan_uri"], "index": index, "label": ", ".join(parts)})
    return descriptors


def read_plan(plan_uri: str, *, s3_client: Any | None = None) -> tuple[ArtifactStore, dict[str, Any]]:
    """The output store and the plan stored at ``plan_uri``."""
    root, marker, key = plan_uri.rpartition(f"/{PARTS}/")
    if not marker:
        raise ConfigError(f"{plan_uri} is not a batch plan URI (…/{PARTS}/<key>/plan.json)")
    out = open_store(root, s3_client=s3_client)
    try:
        plan = json.loads(out.read_bytes(f"{PARTS}/{key}"))
    except ArtifactNotFound as exc:
        raise ConfigError(f"no batch plan at {plan_uri}: run the plan step first") from exc
    return out, plan


def score_partition(
    registry: ModelRegistry, plan_uri: str, index: int, *, s3_client: Any | None = None,
    loaded: LoadedModel | None = None,
) -> dict[str, Any]:
    """Score partition ``index`` of the plan at ``plan_uri`` and record what it wrote; returns that record.

    Raises :class:`DataValidationError` naming rows, fields and reasons when rows fail the
    model's schema under ``on_invalid: fail``, :class:`DataError` for missing or unknown
    columns (whatever the policy) and unreadable input, and
    :class:`~mlops_airflow.exceptions.UnsafeModelError` for a model that fails its checks.
    """
    out, plan = read_plan(plan_uri, s3_client=s3_client)
    if not 0 <= int(index) < len(plan["partitions"]):
        raise ConfigError(f"partition {index} is not in the plan (it has {len(plan['partitions'])})")
    if loaded is None:
        loaded = _load(registry, plan)
    input_store = open_store(plan["input_store"], s3_client=s3_client)
    scorer = _Scorer(plan, loaded, out, int(index))
    segments = plan["partitions"][int(index)]
    # Parquet footers give the row count up front; a CSV's is known only once it is read
    if all(segment["row_groups"] is not None for segment in segments):
        scorer.rows_total = sum(
            sum(plan["files"][segment["file"]]["row_groups"][slice(*segment["row_groups"])]) for segment in segments
        )
    for segment in segments:
        info = plan["files"][segment["file"]]
        skip = plan["ignore_columns"]
        for first_row, chunk in read_chunks(input_store, info, segment["row_groups"], chunk_rows=plan["chunk_rows"],
                                            skip_columns=skip):
            scorer.score(info, first_row, chunk)
    record = scorer.record()
    out.write_bytes(_partition_key(plan, int(index)), to_json(record))
    log.info("Partition %d/%d done: %d rows scored, %d rejected, %d chunk(s)", int(index) + 1,
             len(plan["partitions"]), record["rows_out"], record["rows_rejected"], record["chunks"])
    return record


def _load(registry: ModelRegistry, plan: dict[str, Any]) -> LoadedModel:
    """The planned version, loaded with the server's checks (checksum, trusted types, skew, schema)."""
    model = plan["model"]
    manifest = registry.get_version(model["name"], model["version"])
    if manifest["sha256"] != model["sha256"]:
        raise DataError(f"{model['name']} v{model['version']} is not the model the batch was planned with")
    loaded = load_manifest_model(registry, manifest)
    for warning in loaded.load_warnings:
        log.warning("%s v%s: %s", model["name"], model["version"], warning)
    return loaded


def _partition_key(plan: dict[str, Any], index: int) -> str:
    return f"{PARTS}/{plan['key']}/partition-{index:05d}.json"


class _Scorer:
    """Scores the chunks of one partition and writes a part per chunk (and a rejects part if any)."""

    def __init__(self, plan: dict[str, Any], loaded: LoadedModel, out: ArtifactStore, partition: int) -> None:
        self.plan, self.loaded, self.out, self.partition = plan, loaded, out, partition
        self.features = feature_names(loaded.feature_schema)
        self.id_columns: list[str] = plan["id_columns"]
        self.parts: list[dict[str, Any]] = []
        self.rejects: list[dict[str, Any]] = []
        self.chunks = self.rows_in = self.rows_out = self.rows_rejected = self.warnings = 0
        self.rows_total: int | None = None

    def score(self, info: dict[str, Any], first_row: int, chunk: pd.DataFrame) -> None:
        from mlops_airflow.serving.requests import check_frame

        uri = info["uri"]
        chunk_index = self.chunks
        self.chunks += 1
        self.rows_in += len(chunk)
        if chunk.empty:
            return
        missing = [column for column in self.id_columns if column not in chunk.columns]
        if missing:
            raise DataError(f"{uri} has no id column(s) {missing} (columns: {', '.join(map(str, chunk.columns))})")
        features = chunk.drop(columns=[c for c in self.id_columns if c not in self.features])
        # CSV has no types: its cells are parsed by the schema; Parquet's types are checked as they are
        checked = check_frame(features, self.loaded.request_checker, first_row=first_row, text=info["format"] == "csv")
        what = f"{self.loaded.model_name} v{self.loaded.version}"
        if checked.column_errors:
            raise DataError(f"{uri} does not fit the feature schema of {what}: " + "; ".join(checked.column_errors)
                            + "; list columns to pass through in id_columns and others to drop in ignore_columns")
        self.warnings += checked.warning_count
        if checked.rejected:
            self._reject(uri, first_row, chunk, checked.rejected, chunk_index, what)
        if checked.frame is not None:
            accepted = chunk.loc[checked.frame.index, self.id_columns].reset_index(drop=True)
            frame = self._predict(checked.frame, accepted)
            self.parts.append(self._write(f"p{self.partition:05d}-c{chunk_index:05d}", frame, chunk_index))
            self.rows_out += len(frame)
        log.info("Partition %d/%d, chunk %d: rows %d-%d of %s; %d of %s rows done, %d scored, %d rejected",
                 self.partition + 1, len(self.plan["partitions"]), chunk_index + 1, first_row,
                 first_row + len(chunk) - 1, uri.rsplit("/", 1)[-1], self.rows_in,
                 self.rows_total if self.rows_total is not None else "?", self.rows_out, self.rows_rejected)

    def _reject(self, uri: str, first_row: int, chunk: pd.DataFrame, rejected: dict[int, list[str]],
                chunk_index: int, what: str) -> None:
        import pandas as pd

        if self.plan["on_invalid"] == "fail":
            messages = [message for reasons in rejected.values() for message in reasons]
            shown = "; ".join(messages[:_SHOWN_ERRORS])
            more = f" (and {len(messages) - _SHOWN_ERRORS} more)" if len(messages) > _SHOWN_ERRORS else ""
            raise DataValidationError(
                f"{len(rejected)} of {len(chunk)} rows from row {first_row} of {uri} do not fit the feature schema "
                f"of {what}, so nothing was published: {shown}{more}; set on_invalid='skip' to score the other rows "
                "and write these to a rejects file",
                summary={"rows_rejected": len(rejected), "errors": messages[:_SHOWN_ERRORS]},
            )
        positions = sorted(rejected)
        frame = chunk.loc[positions, self.id_columns].reset_index(drop=True)
        frame.insert(0, "row", [first_row + position for position in positions])
        frame.insert(1, "file", uri)
        frame["reasons"] = ["; ".join(rejected[position]) for position in positions]
        self.rejects.append(self._write(f"rejects-p{self.partition:05d}-c{chunk_index:05d}", pd.DataFrame(frame),
                                        chunk_index))
        self.rows_rejected += len(positions)

    def _predict(self, features: pd.DataFrame, ids: pd.DataFrame) -> pd.DataFrame:
        import numpy as np

        model = self.loaded.model
        frame = ids.copy()
        frame["prediction"] = np.asarray(model.predict(features))
        if self.loaded.is_classifier and hasattr(model, "predict_proba"):
            probabilities = np.asarray(model.predict_proba(features))
            for position, label in enumerate(self.loaded.classes or []):
                frame[f"probability_{label}"] = probabilities[:, position]
        frame["model_version"] = self.loaded.version
        frame["input_fingerprint"] = self.plan["input_fingerprint"]
        return frame

    def _write(self, name: str, frame: pd.DataFrame, chunk_index: int) -> dict[str, Any]:
        buffer = io.BytesIO()
        if self.plan["output_format"] == "csv":
            frame.to_csv(buffer, index=False, lineterminator="\n")
            key = f"{PARTS}/{self.plan['key']}/{name}.csv"
        else:
            frame.to_parquet(buffer, index=False)
            key = f"{PARTS}/{self.plan['key']}/{name}.parquet"
        data = buffer.getvalue()
        self.out.write_bytes(key, data)
        return {"key": key, "rows": len(frame), "partition": self.partition, "chunk": chunk_index,
                "sha256": sha256_hex(data)}

    def record(self) -> dict[str, Any]:
        return {"format_version": BATCH_FORMAT_VERSION, "plan_key": self.plan["key"], "partition": self.partition,
                "chunks": self.chunks, "rows_in": self.rows_in, "rows_out": self.rows_out,
                "rows_rejected": self.rows_rejected, "warnings": self.warnings, "parts": self.parts,
                "rejects": self.rejects}


def publish_batch(plan_uri: str, *, s3_client: Any | None = None) -> dict[str, Any]:
    """Write ``_SUCCESS`` once every partition of the plan is scored, then remove other attempts' leftovers.

    Raises :class:`ConfigError` if a partition has not been scored (publish must run
    after every scoring task). Returns the manifest.
    """
    out, plan = read_plan(plan_uri, s3_client=s3_client)
    records = []
    for index in range(len(plan["partitions"])):
        try:
            records.append(json.loads(out.read_bytes(_partition_key(plan, index))))
        except ArtifactNotFound:
            raise ConfigError(
                f"partition {index} of {len(plan['partitions'])} in {plan_uri} has not been scored: "
                "publish must run after every scoring task"
            ) from None
    total = {name: sum(record[name] for record in records)
             for name in ("rows_in", "rows_out", "rows_rejected", "warnings", "chunks")}
    manifest = {
        "format_version": BATCH_FORMAT_VERSION,
        "kind": "batch_predictions",
        "model_name": plan["model"]["name"],
        "alias": plan["model"]["alias"],
        "version": plan["model"]["version"],
        "sha256": plan["model"]["sha256"],
        "input_uri": plan["input_uri"],
        "input_fingerprint": plan["input_fingerprint"],
        "files": [{key: info[key] for key in ("uri", "size", "sha256")} for info in plan["files"]],
        "output_uri": out.uri,
        "output_format": plan["output_format"],
        "id_columns": plan["id_columns"],
        "on_invalid": plan["on_invalid"],
        "chunk_rows": plan["chunk_rows"],
        "partitions": len(records),
        **total,
        "parts": [part for record in records for part in record["parts"]],
        "rejects": [part for record in records for part in record["rejects"]],
        "plan_key": plan["key"],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out.write_bytes(MANIFEST, to_json(manifest))
    listed = {part["key"] for part in manifest["parts"] + manifest["rejects"]}
    for key in out.list(PARTS):
        if not key.startswith(f"{PARTS}/{plan['key']}/") and key not in listed:
            out.delete(key)
    log.info("Published %s: %d rows in %d part(s), %d rejected, model %s v%s", out.url(MANIFEST), total["rows_out"],
             len(manifest["parts"]), total["rows_rejected"], manifest["model_name"], manifest["version"])
    return manifest


def score_batch(registry: ModelRegistry, *, s3_client: Any | None = None, **settings: Any) -> dict[str, Any]:
    """Plan, score every partition (loading the model once) and publish, in one process; returns the manifest."""
    plan = plan_batch(registry, s3_client=s3_client, **settings)
    loaded = _load(registry, plan)
    for index in range(len(plan["partitions"])):
        score_partition(registry, plan["plan_uri"], index, s3_client=s3_client, loaded=loaded)
    return publish_batch(plan["plan_uri"], s3_client=s3_client)


def read_manifest(output_uri: str, *, s3_client: Any | None = None) -> dict[str, Any]:
    """The published manifest of a batch output; :class:`DataError` if nothing was published there."""
    out = open_store(output_uri, s3_client=s3_client)
    try:
        return dict(json.loads(out.read_bytes(MANIFEST)))
    except ArtifactNotFound as exc:
        raise DataError(f"no batch output published at {output_uri} (no {MANIFEST})") from exc


def read_predictions(output_uri: str, *, rejects: bool = False, s3_client: Any | None = None) -> pd.DataFrame:
    """All published predictions (or rejected rows) of a batch output, in input order, as one frame.

    Reads the whole output into memory: for tests, notebooks and small outputs.
    """
    import pandas as pd

    manifest = read_manifest(output_uri, s3_client=s3_client)
    out = open_store(output_uri, s3_client=s3_client)
    frames = []
    for part in manifest["rejects" if rejects else "parts"]:
        data = io.BytesIO(out.read_bytes(part["key"]))
        frames.append(pd.read_csv(data) if part["key"].endswith(".csv") else pd.read_parquet(data))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

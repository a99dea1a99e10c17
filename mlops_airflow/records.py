"""Versioned records: each kind has a ``format_version`` and a JSON schema shipped with the package.

Writers validate before writing, so a record that would mislead a later reader is never
stored. Readers accept every format up to :data:`FORMAT_VERSION` and refuse newer ones
with a clear message instead of misreading them.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
from importlib import resources
from typing import Any, Literal

from mlops_airflow.exceptions import RegistryError

#: The newest record format this code writes and reads.
FORMAT_VERSION = 1
RecordKind = Literal["manifest", "alias", "verdict", "drift", "summary"]


@functools.cache
def schema(kind: RecordKind) -> dict[str, Any]:
    return json.loads((resources.files("mlops_airflow") / "schemas" / f"{kind}.schema.json").read_text())


def validate_record(kind: RecordKind, record: dict[str, Any]) -> dict[str, Any]:
    """Return ``record`` if it matches its schema; raise :class:`RegistryError` naming the field if not."""
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema(kind)).iter_errors(record), key=lambda e: list(e.path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.path) or "<record>"
        raise RegistryError(f"refusing to write an invalid {kind}: {where}: {first.message}")
    return record


def check_readable(kind: str, record: dict[str, Any], where: str) -> dict[str, Any]:
    """Refuse a record written by a newer mlops-airflow (its fields may mean something else)."""
    version = record.get("format_version", 1)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise RegistryError(
            f"{where} is a {kind} in format {version!r}, newer than this mlops-airflow reads ({FORMAT_VERSION}): upgrade"
        )
    return record


def json_scalar(value: Any) -> Any:
    """A single value (a frame cell, a numpy scalar) as JSON can carry it.

    numpy scalars are unboxed, NaN / infinities / pandas NA / NaT become null, dates and
    timestamps ISO text; anything else is returned as is.
    """
    if hasattr(value, "item") and not isinstance(value, (list, dict, str, bytes)):
        try:
            value = value.item()
        except (ValueError, TypeError):
            pass
    if value is None or type(value).__name__ in ("NAType", "NaTType"):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (datetime.datetime, datetime.date)) or type(value).__name__ == "Timestamp":
        return value.isoformat()
    return value

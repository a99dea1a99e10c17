"""The declarative data-validation spec: loading, strict checking, normalising.

A spec is a YAML (or JSON) mapping::

    format_version: 1                 # optional; this version reads 1
    columns:                          # required, not empty: column name -> its checks
      hour:             {type: integer, min: 0, max: 23}
      trip_distance_km: {type: number, min: 0, max: 300}
      payment_type:     {type: string, allowed: [card, cash, app]}
      passengers:       {type: integer, min: 1, max: 8, mostly: 0.95}
      trip_id:          {type: integer, unique: true}
      some_code:        {type: string, regex: "^[A-Z]{3}$", severity: warning}
      notes:                          # no checks: the column must merely exist
    row_count: {min: 100, max: 10000000}   # optional; also takes severity
    allow_extra_columns: true         # default true; false fails on undeclared columns
    drift:                            # optional: compare with a reference (see below)
      reference: champion             # default; or the URI of a dataset
      policy: warn                    # warn (default) or stop: what a drifted column does to the run
      psi: 0.2
      per_column: {hour: {psi: 0.3}}

Column keys (all optional):

``type``
    ``integer``, ``number``, ``string`` or ``boolean``. CSV files carry no types, so a
    CSV column must be *castable* to the type and is then cast; Parquet and SQL columns
    must already have it (a float column declared ``integer`` fails even if every value
    is whole). Defaults to ``number`` when ``min`` or ``max`` is given, else unchecked.
``min`` / ``max``
    Inclusive bounds of every non-null value (``integer`` and ``number`` only).
``allowed``
    The list of values every non-null value must be one of.
``mostly``
    The least fraction (0..1) of values that must be non-null.
``nullable``
    ``false`` allows no nulls at all. Defaults to ``true``, unless ``mostly`` is given
    (``nullable: true`` together with ``mostly`` is a contradiction and rejected).
``unique``
    ``true``: no value may appear twice.
``regex``
    A Python regular expression *searched* in every non-null value (anchor it with
    ``^...$`` to match the whole value; ``string`` columns only).
``severity``
    ``error`` (default): a failed check fails the validation. ``warning``: it is
    reported only.

The ``drift`` section (all keys optional; ``drift: {}`` turns the check on with defaults;
computed by :func:`~mlops_airflow.validation.drift.compute_drift`):

``reference``
    ``champion`` (default): the data the current champion was trained on; the check is
    skipped while there is no champion. Any other text is the URI of a reference dataset.
``policy``
    ``warn`` (default): a drifted column is reported. ``stop``: it fails the run.
``columns``
    The columns to compare; default: the reference's features present in the data.
``psi`` / ``ks_pvalue`` / ``chi2_pvalue`` / ``unseen_share``
    Thresholds for every column (defaults 0.2, 0.001, 0.001, 0.01): a column drifts when
    its PSI or unseen-category share is above, or a test's p-value below, its threshold.
``per_column``
    ``{column: {psi: .., ...}}``: thresholds overriding the above for one column.

Ranges and allowed sets of ``error`` columns are the spec's *declared* constraints
(:func:`declared_constraints`): the model server rejects requests outside them.

:func:`load_validation_spec` returns the *normalised* form: the same layout with every
column's ``type``, ``nullable``, ``unique`` and ``severity`` filled in, ``row_count``
``None`` or a mapping with ``severity``, ``drift`` ``None`` or a mapping with every key
set (``columns`` ``None`` when not given), and ``format_version`` and
``allow_extra_columns`` set. Loading a normalised spec again returns it unchanged.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

import yaml

from mlops_airflow.exceptions import ValidationSpecError
from mlops_airflow.specfiles import looks_inline, read_spec_file, resolve_spec_path
from mlops_airflow.validation.drift import DEFAULT_THRESHOLDS, POLICIES

SPEC_FORMAT_VERSION = 1
COLUMN_TYPES = ("integer", "number", "string", "boolean")
SEVERITIES = ("error", "warning")

_TOP_KEYS = ("format_version", "columns", "row_count", "allow_extra_columns", "drift")
_COLUMN_KEYS = ("type", "min", "max", "allowed", "mostly", "unique", "regex", "nullable", "severity")
_ROW_COUNT_KEYS = ("min", "max", "severity")
_DRIFT_THRESHOLD_KEYS = tuple(DEFAULT_THRESHOLDS)
_DRIFT_KEYS = ("reference", "policy", "columns", *_DRIFT_THRESHOLD_KEYS, "per_column")

Path = tuple[str | int, ...]


def load_validation_spec(
    spec: str | os.PathLike[str] | dict | None, *, base_dir: str | None = None
) -> dict | None:
    """Load, check and normalise a validation spec; ``None`` when there is none.

    ``spec`` is ``None``, ``""`` or ``"none"`` (no spec: only the minimal check runs), a
    mapping, an inline ``{...}`` or multi-line JSON/YAML string, or the path of a YAML/JSON
    file in the spec folders of :mod:`mlops_airflow.specfiles` (``base_dir``: the running
    DAG's folder, where relative paths are looked up; a path elsewhere is refused unopened).
    Raises :class:`ValidationSpecError` listing every problem found, each named by its
    field path (``columns.hour.min: expected a number, got 'abc'``) and, for YAML text,
    its line.
    """
    if spec is None:
        return None
    if isinstance(spec, dict):
        return _normalise(spec, source="(inline)", lines={})
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    if not isinstance(spec, str):
        raise ValidationSpecError(
            f"validation spec: expected a file path, an inline mapping or none, got {type(spec).__name__}"
        )
    text = spec.strip()
    if not text or text.lower() == "none":
        return None
    if looks_inline(text):
        return _normalise_text(text, source="(inline)")
    path = resolve_spec_path(text, param="validation", dag_dir=base_dir, error=ValidationSpecError)
    node, data = read_spec_file(path, param="validation", keys=_TOP_KEYS, error=ValidationSpecError)
    return _normalise_node(node, data, source=str(path))


def declared_constraints(spec: dict | None) -> dict[str, dict]:
    """``{column: {"min": .., "max": .., "allowed": [..]}}`` declared by ``spec`` (keys only when set).

    These are the bounds the model server enforces on requests. Columns of
    ``severity: warning`` are left out: data outside their bounds is accepted for
    training, so refusing it at serving time would contradict the spec.
    """
    normalised = load_validation_spec(spec) if spec is not None else None
    if not normalised:
        return {}
    constraints: dict[str, dict] = {}
    for name, column in normalised["columns"].items():
        if column["severity"] != "error":
            continue
        declared = {key: column[key] for key in ("min", "max", "allowed") if column.get(key) is not None}
        if declared:
            constraints[name] = declared
    return constraints


def drift_config(spec: dict | None) -> dict | None:
    """The spec's normalised ``drift`` section (a config for ``compute_drift``); None when it has none."""
    normalised = load_validation_spec(spec) if spec is not None else None
    if not normalised or normalised.get("drift") is None:
        return None
    drift = dict(normalised["drift"])
    drift["per_column"] = {name: dict(values) for name, values in drift["per_column"].items()}
    return drift


def normalise_drift(raw: Any, *, source: str = "drift settings") -> dict:
    """A ``drift`` section given on its own (a drift monitor's thresholds), normalised as in a spec.

    Raises :class:`ValidationSpecError` naming every bad field.
    """
    check = _Checker({})
    drift = _normalise_drift(check, {} if raw is None else raw)
    if check.problems or drift is None:
        raise ValidationSpecError(_problems_message(source, check.problems or ["expected a mapping"]))
    return drift


# -- parsing -------------------------------------------------------------------------------


def _normalise_text(text: str, *, source: str) -> dict:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationSpecError(f"validation spec {source} is not valid YAML/JSON: {exc}") from exc
    return _normalise_node(node, data, source=source)


def _normalise_node(node: yaml.Node | None, data: Any, *, source: str) -> dict:
    lines: dict[Path, int] = {}
    duplicates: list[str] = []
    if node is not None:
        _collect_lines(node, (), lines, duplicates)
    if duplicates:
        raise ValidationSpecError(_problems_message(source, duplicates))
    return _normalise(data, source=source, lines=lines)


def _collect_lines(node: yaml.Node, path: Path, lines: dict[Path, int], duplicates: list[str]) -> None:
    """Record the 1-based line of every mapping key and list item, and duplicate keys (YAML keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                duplicates.append(f"{_dotted(child)}: duplicate key (line {key_node.start_mark.line + 1})")
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _collect_lines(value_node, child, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _collect_lines(item, child, lines, duplicates)


def _dotted(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "validation spec"


def _problems_message(source: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"invalid validation spec {source}: {problems[0]}"
    return f"invalid validation spec {source} ({len(problems)} problems):\n" + "\n".join(
        f"- {problem}" for problem in problems
    )


def _got(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class _Checker:
    """Collects every problem of a spec (not just the first), each with its field path and line."""

    def __init__(self, lines: dict[Path, int]) -> None:
        self.lines = lines
        self.problems: list[str] = []

    def problem(self, path: Path, message: str) -> None:
        line = None
        # The offending key's own line, else the nearest enclosing key's.
        for end in range(len(path), 0, -1):
            line = self.lines.get(tuple(str(p) if not isinstance(p, int) else p for p in path[:end]))
            if line is not None:
                break
        suffix = f" (line {line})" if line is not None else ""
        self.problems.append(f"{_dotted(path)}: {message}{suffix}")

    def unknown_keys(self, path: Path, mapping: dict, allowed: tuple[str, ...]) -> None:
        for key in mapping:
            if key not in allowed:
                self.problem((*path, str(key)), f"unknown key {str(key)!r} (allowed: {', '.join(allowed)})")

    def number(
        self, path: Path, value: Any, *, lo: float | None = None, hi: float | None = None
    ) -> float | None:
        if not _is_number(value):
            self.problem(path, f"expected a number, got {_got(value)}")
            return None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            self.problem(path, f"must be between {lo} and {hi}, got {value!r}")
            return None
        return value

    def boolean(self, path: Path, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.problem(path, f"expected true or false, got {_got(value)}")
            return None
        return value

    def choice(self, path: Path, value: Any, choices: tuple[str, ...]) -> str | None:
        if value not in choices:
            self.problem(path, f"expected one of {', '.join(choices)}, got {_got(value)}")
            return None
        return str(value)


def _normalise(data: Any, *, source: str, lines: dict[Path, int]) -> dict:
    check = _Checker(lines)
    if not isinstance(data, dict):
        raise ValidationSpecError(
            _problems_message(source, [f"expected a mapping at the top level, got {_got(data)}"])
        )
    check.unknown_keys((), data, _TOP_KEYS)

    version = data.get("format_version", SPEC_FORMAT_VERSION)
    if version != SPEC_FORMAT_VERSION or isinstance(version, bool):
        check.problem(
            ("format_version",),
            f"unsupported version {_got(version)} (this version reads {SPEC_FORMAT_VERSION})",
        )

    allow_extra = data.get("allow_extra_columns", True)
    check.boolean(("allow_extra_columns",), allow_extra)

    columns: dict[str, dict] = {}
    raw_columns = data.get("columns")
    if "columns" not in data:
        check.problem(("columns",), "missing (required): map each column name to its checks")
    elif not isinstance(raw_columns, dict):
        check.problem(("columns",), f"expected a mapping of column name to checks, got {_got(raw_columns)}")
    elif not raw_columns:
        check.problem(("columns",), "must not be empty")
    else:
        for name, raw in raw_columns.items():
            if not isinstance(name, str):
                check.problem(("columns", str(name)), f"column name {name!r} is not text (quote it in YAML)")
                continue
            column = _normalise_column(check, ("columns", name), raw)
            if column is not None:
                columns[name] = column

    row_count = _normalise_row_count(check, data.get("row_count"))
    drift = _normalise_drift(check, data.get("drift"))

    if check.problems:
        raise ValidationSpecError(_problems_message(source, check.problems))
    return {
        "format_version": SPEC_FORMAT_VERSION,
        "columns": columns,
        "row_count": row_count,
        "allow_extra_columns": bool(allow_extra),
        "drift": drift,
    }


def _normalise_column(check: _Checker, path: Path, raw: Any) -> dict | None:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        check.problem(path, f"expected a mapping of checks (e.g. {{type: number, min: 0}}), got {_got(raw)}")
        return None
    before = len(check.problems)
    check.unknown_keys(path, raw, _COLUMN_KEYS)
    column: dict[str, Any] = {}

    kind = raw.get("type")
    if kind is not None:
        kind = check.choice((*path, "type"), kind, COLUMN_TYPES)
    elif "min" in raw or "max" in raw:
        kind = "number"
    column["type"] = kind

    for bound in ("min", "max"):
        if bound in raw:
            value = check.number((*path, bound), raw[bound])
            if kind in ("string", "boolean"):
                check.problem((*path, bound), f"only for integer or number columns, not {kind}")
            column[bound] = value
    if _is_number(column.get("min")) and _is_number(column.get("max")) and column["min"] > column["max"]:
        check.problem((*path, "min"), f"min {column['min']!r} is greater than max {column['max']!r}")

    if "allowed" in raw:
        column["allowed"] = _normalise_allowed(check, (*path, "allowed"), raw["allowed"], kind)

    if "mostly" in raw:
        column["mostly"] = check.number((*path, "mostly"), raw["mostly"], lo=0, hi=1)
    nullable = raw.get("nullable")
    if nullable is not None:
        check.boolean((*path, "nullable"), nullable)
    if nullable is True and "mostly" in raw:
        check.problem(
            (*path, "nullable"), "contradicts mostly: give mostly (least non-null fraction) or nullable: true"
        )
    column["nullable"] = nullable if isinstance(nullable, bool) else "mostly" not in raw

    unique = raw.get("unique", False)
    check.boolean((*path, "unique"), unique)
    column["unique"] = unique is True

    if "regex" in raw:
        pattern = raw["regex"]
        if not isinstance(pattern, str):
            check.problem((*path, "regex"), f"expected a regular expression string, got {_got(pattern)}")
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                check.problem((*path, "regex"), f"not a valid regular expression: {exc}")
        if kind not in (None, "string"):
            check.problem((*path, "regex"), f"only for string columns, not {kind}")
        column["regex"] = pattern

    column["severity"] = check.choice((*path, "severity"), raw.get("severity", "error"), SEVERITIES)
    return column if len(check.problems) == before else None


def _normalise_allowed(check: _Checker, path: Path, raw: Any, kind: str | None) -> list | None:
    if not isinstance(raw, list) or not raw:
        check.problem(path, f"expected a non-empty list of values, got {_got(raw)}")
        return None
    expected: dict[str | None, tuple[str, Any]] = {
        "string": ("a string (quote it in YAML)", lambda v: isinstance(v, str)),
        "integer": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
        "number": ("a number", _is_number),
        "boolean": ("true or false", lambda v: isinstance(v, bool)),
        None: ("a plain value", lambda v: isinstance(v, str | bool) or _is_number(v)),
    }
    what, accepts = expected[kind]
    for index, value in enumerate(raw):
        if not accepts(value):
            check.problem((*path, index), f"expected {what}, got {_got(value)}")
    return list(raw)


def _normalise_row_count(check: _Checker, raw: Any) -> dict | None:
    if raw is None:
        return None
    path: Path = ("row_count",)
    if not isinstance(raw, dict) or not raw:
        check.problem(path, f"expected a mapping like {{min: 100}}, got {_got(raw)}")
        return None
    check.unknown_keys(path, raw, _ROW_COUNT_KEYS)
    row_count: dict[str, Any] = {}
    for bound in ("min", "max"):
        if bound in raw:
            value = raw[bound]
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                check.problem((*path, bound), f"expected a whole number >= 0, got {_got(value)}")
            row_count[bound] = value
    lo, hi = row_count.get("min"), row_count.get("max")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        check.problem((*path, "min"), f"min {lo} is greater than max {hi}")
    row_count["severity"] = check.choice((*path, "severity"), raw.get("severity", "error"), SEVERITIES)
    return row_count


def _normalise_drift(check: _Checker, raw: Any) -> dict | None:
    if raw is None:
        return None
    path: Path = ("drift",)
    if not isinstance(raw, dict):
        check.problem(path, f"expected a mapping like {{reference: champion, policy: warn}}, got {_got(raw)}")
        return None
    check.unknown_keys(path, raw, _DRIFT_KEYS)
    drift: dict[str, Any] = {}

    reference = raw.get("reference", "champion")
    if not isinstance(reference, str) or not reference.strip():
        check.problem((*path, "reference"), f"expected champion or a dataset URI, got {_got(reference)}")
    drift["reference"] = reference.strip() if isinstance(reference, str) else reference
    drift["policy"] = check.choice((*path, "policy"), raw.get("policy", "warn"), POLICIES)

    columns = raw.get("columns")
    if columns is not None:
        if not isinstance(columns, list) or not columns:
            check.problem((*path, "columns"), f"expected a non-empty list of column names, got {_got(columns)}")
        else:
            for index, name in enumerate(columns):
                if not isinstance(name, str):
                    check.problem((*path, "columns", index), f"column name {name!r} is not text (quote it in YAML)")
    drift["columns"] = list(columns) if isinstance(columns, list) else columns

    thresholds = _drift_thresholds(check, path, raw)
    drift.update({key: thresholds.get(key, default) for key, default in DEFAULT_THRESHOLDS.items()})

    per_column: dict[str, dict[str, float]] = {}
    raw_per_column = raw.get("per_column") or {}
    if not isinstance(raw_per_column, dict):
        check.problem((*path, "per_column"), f"expected a mapping of column name to thresholds, got {_got(raw_per_column)}")
    else:
        for name, overrides in raw_per_column.items():
            column_path: Path = (*path, "per_column", str(name))
            if not isinstance(name, str):
                check.problem(column_path, f"column name {name!r} is not text (quote it in YAML)")
            elif not isinstance(overrides, dict) or not overrides:
                check.problem(column_path, f"expected a mapping like {{psi: 0.3}}, got {_got(overrides)}")
            else:
                check.unknown_keys(column_path, overrides, _DRIFT_THRESHOLD_KEYS)
                per_column[name] = _drift_thresholds(check, column_path, overrides)
    drift["per_column"] = per_column
    return drift


def _drift_thresholds(check: _Checker, path: Path, raw: dict) -> dict[str, float]:
    """The thresholds given in ``raw``: PSI any number >= 0, the others fractions (0..1)."""
    thresholds: dict[str, float] = {}
    for key in _DRIFT_THRESHOLD_KEYS:
        if key not in raw:
            continue
        value = raw[key]
        if not _is_number(value):
            check.problem((*path, key), f"expected a number, got {_got(value)}")
        elif key == "psi" and value < 0:
            check.problem((*path, key), f"must be >= 0, got {value!r}")
        elif key != "psi" and not 0 <= value <= 1:
            check.problem((*path, key), f"must be between 0 and 1, got {value!r}")
        else:
            thresholds[key] = value
    return thresholds

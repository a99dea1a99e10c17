"""Validating a table or query in a SQL database where it lives, through GX's SQL data source.

The same checks as :func:`~mlops_airflow.validation.checks.validate_dataset`, with the same
check names and summary shape (so the same failure message and report work), but the
database computes every metric: the rows are never pulled into the worker, so a table
larger than its memory validates. What travels back is small: counts, the columns and
their SQL types, at most a few sample values per failed check, and one row of aggregates
per column for the profile.

SQL columns carry types, so declared types are checked strictly against the database's
(``double precision`` is a number, not an integer); nothing is cast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import DataError
from mlops_airflow.validation.checks import (
    MAX_PROFILED_COLUMNS,
    Pending,
    ValidationOutcome,
    _Checks,
    _jsonable,
    _percent,
    column_present,
    expect,
    run_suite,
    table_expectations,
    target_present,
    value_expectations,
)
from mlops_airflow.validation.spec import load_validation_spec

if TYPE_CHECKING:
    import sqlalchemy as sa

    from mlops_airflow.data.loading import SqlSource



def validate_sql(
    dsn: str,
    *,
    table: str | None = None,
    query: str | None = None,
    spec: dict | None,
    target: str | None = None,
    redact_samples: bool = False,
) -> ValidationOutcome:
    """Validate a table or query of the database at ``dsn`` in the database itself.

    ``dsn`` is a ``postgresql://`` URL, optionally carrying ``?table=NAME`` or
    ``?query=SELECT...`` (as :func:`~mlops_airflow.data.load_dataset` accepts); ``table``
    (``schema.name`` allowed) or ``query`` given here take their place. Runs the minimal
    check (rows, and the ``target`` column present with no nulls), then with a ``spec`` its
    column, strict type and value checks. The outcome's ``frame`` is ``None``: no rows are
    read. Never raises for bad data; raises :class:`DataError` (with the password masked)
    when the database, table or query cannot be reached, and ``ValidationSpecError`` for a
    bad spec.
    """
    import sqlalchemy as sa
    from sqlalchemy.exc import SQLAlchemyError

    from mlops_airflow.data.loading import parse_sql_uri

    source = parse_sql_uri(dsn, table=table, query=query)
    normalised = load_validation_spec(spec) if spec is not None else None
    engine = sa.create_engine(source.dsn, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            types = _column_types(connection, source)
            checks = _Checks(redact=redact_samples)
            pending: Pending = []
            rows_index = _minimal_checks(checks, pending, types, target=target)
            if normalised:
                _spec_checks(checks, pending, types, normalised, target=target)
            _run_suite(checks, source, pending)
            rows = _fill_minimal(checks, rows_index, target=target)
            profile = _profile(
                connection,
                source,
                types,
                first=[*([target] if target else []), *(normalised["columns"] if normalised else [])],
                redact=redact_samples,
            )
    except SQLAlchemyError as exc:
        raise DataError(f"cannot validate {source.label} in {source.masked_dsn}: {_reason(exc)}") from exc
    finally:
        engine.dispose()

    statistics = checks.statistics()
    summary = {
        "success": statistics["failed_errors"] == 0,
        "rows": rows,
        "columns": list(types),
        "target": target,
        "source_format": "sql",
        "source": {
            "database": source.masked_dsn,
            **({"table": source.table} if source.table is not None else {"query": source.query}),
        },
        "column_types": {name: sql_type for name, (sql_type, _kind) in types.items()},
        "spec_given": normalised is not None,
        "redacted": redact_samples,
        "statistics": statistics,
        "checks": checks.records,
        "columns_profile": profile,
    }
    return ValidationOutcome(success=statistics["failed_errors"] == 0, frame=None, summary=summary)


def _reason(exc: Exception) -> str:
    """The driver's first line (e.g. ``relation "trips" does not exist``), without SQLAlchemy's wrapping."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- the database's columns and types ---------------------------------------------------------


def _column_types(connection: sa.Connection, source: SqlSource) -> dict[str, tuple[str, str | None]]:
    """``{column: (SQL type, kind)}`` in the source's order, kind being a spec type or ``None``.

    Read from an empty result (``LIMIT 0``): the table's or the query's own columns, at no
    cost, and the query's are known without running it over the data.
    """
    import sqlalchemy as sa

    result = connection.execute(sa.select(sa.text("*")).select_from(source.selectable()).limit(0))
    description = result.cursor.description if result.cursor is not None else None
    result.close()
    columns = [(str(item[0]), item[1]) for item in description or []]
    oids = sorted({int(code) for _name, code in columns if isinstance(code, int)})
    names: dict[int, str] = {}
    if oids:
        # psycopg reports PostgreSQL type OIDs; format_type gives the names SQLAlchemy reflects.
        rows = connection.execute(
            sa.text("SELECT oid::int, format_type(oid, NULL) FROM pg_catalog.pg_type WHERE oid = ANY(:oids)"),
            {"oids": oids},
        )
        names = {int(oid): str(name) for oid, name in rows}
    types: dict[str, tuple[str, str | None]] = {}
    for name, code in columns:
        sql_type = names.get(code, str(code)) if isinstance(code, int) else str(code)
        types[name] = (sql_type, _kind_of(connection.dialect, sql_type))
    return types


def _kind_of(dialect: Any, sql_type: str) -> str | None:
    """The spec type (integer, number, string, boolean) a SQL type is, or ``None`` (dates, JSON, ...)."""
    import sqlalchemy as sa

    type_class = dialect.ischema_names.get(sql_type)
    if type_class is None:
        return _UNREFLECTED_KINDS.get(sql_type)
    for base, kind in (
        (sa.Boolean, "boolean"),
        (sa.Integer, "integer"),
        (
            (sa.Numeric, sa.Float),
            "number",
        ),  # numeric; real, double precision (no Numeric since SQLAlchemy 2.1)
        (sa.String, "string"),  # text, varchar, char
    ):
        if isinstance(type_class, type) and issubclass(type_class, base):
            return kind
    return None


#: Types format_type names but SQLAlchemy's reflection table does not hold.
_UNREFLECTED_KINDS = {"bpchar": "string", '"char"': "string"}


def _type_ok(declared: str, kind: str | None) -> bool:
    return kind == declared or (declared == "number" and kind == "integer")


# -- the checks -------------------------------------------------------------------------------
# Check names and record shapes are those of validation.checks, so reports read the same.


def _minimal_checks(
    checks: _Checks, pending: Pending, types: dict[str, tuple[str, str | None]], *, target: str | None
) -> int:
    """Record the minimal check; return the index of the row count record (evaluated in GX)."""
    rows_index = checks.add("expect_table_to_have_rows", column=None, severity="error", success=False)
    pending.append((rows_index, "ExpectTableRowCountToBeBetween", {"min_value": 1}))
    if target is None:
        return rows_index
    if target_present(checks, target, list(types)):
        expect(checks, pending, "ExpectColumnValuesToNotBeNull", "expect_target_values_to_not_be_null", target, "error", {})
    return rows_index


def _fill_minimal(checks: _Checks, rows_index: int, *, target: str | None) -> int:
    """Rewrite the minimal check's records as checks.py words them; return the row count."""
    record = checks.records[rows_index]
    rows = record["observed"].get("observed_value")
    if not isinstance(rows, int):  # the count itself failed: its error is in the record
        return 0
    checks.observe(
        rows_index,
        success=rows > 0,
        observed={"observed_value": rows, "reason": None if rows else "the data has no rows"},
    )
    for index, record in enumerate(checks.records):
        if record["check"] == "expect_target_values_to_not_be_null" and record["column"] == target:
            nulls = record["observed"].get("unexpected_count")
            if isinstance(nulls, int) and "error" not in record["observed"]:
                checks.observe(
                    index,
                    success=nulls == 0,
                    observed={
                        "unexpected_count": nulls,
                        "unexpected_percent": _percent(nulls, rows),
                        "reason": f"{nulls} of {rows} target values are null" if nulls else None,
                    },
                )
    return rows


def _spec_checks(
    checks: _Checks,
    pending: Pending,
    types: dict[str, tuple[str, str | None]],
    spec: dict,
    *,
    target: str | None,
) -> None:
    for name, column in spec["columns"].items():
        if not column_present(checks, name, column, types, target=target):
            continue
        sql_type, kind = types[name]
        if column["type"]:
            ok = _type_ok(column["type"], kind)
            checks.add(
                "expect_column_values_to_be_of_type",
                column=name,
                severity=column["severity"],
                success=ok,
                params={"type": column["type"]},
                observed={
                    "dtype": sql_type,
                    "reason": None
                    if ok
                    else f"SQL type {sql_type} is not {column['type']} (SQL columns must carry their type)",
                },
            )
        value_expectations(checks, pending, name, column, numeric=kind in ("integer", "number"), target=target)
    table_expectations(checks, pending, list(types), spec, target=target)


def _run_suite(checks: _Checks, source: SqlSource, pending: Pending) -> None:
    """Evaluate the pending expectations as one GX suite on a SQL batch; fill in their records."""
    from great_expectations.datasource.fluent.interfaces import TestConnectionError

    datasources: list[Any] = []

    def batch_for(context: Any) -> Any:
        datasource = context.data_sources.add_postgres("mlops_airflow", connection_string=source.dsn)
        datasources.append(datasource)
        asset: Any
        if source.table is not None:
            schema, _, name = source.table.rpartition(".")
            asset = datasource.add_table_asset("source", table_name=name, schema_name=schema or None)
        else:
            asset = datasource.add_query_asset("source", query=source.query or "")
        return asset.add_batch_definition_whole_table("whole_table").get_batch()

    try:
        run_suite(checks, pending, batch_for, scrub=lambda text: _scrub(text, source))
    except (TestConnectionError, ValueError) as exc:  # pydantic rejects some DSNs SQLAlchemy accepts
        raise DataError(
            f"cannot validate {source.label} in {source.masked_dsn}: {_scrub(str(exc), source)}"
        ) from exc
    finally:
        for datasource in datasources:
            datasource.get_engine().dispose()


def _scrub(text: str, source: SqlSource) -> str:
    """``text`` with the DSN's password removed, should a library have echoed it."""
    from sqlalchemy.engine import make_url

    password = make_url(source.dsn).password
    return text.replace(password, "***") if password else text


# -- profile --------------------------------------------------------------------------------


def _profile(
    connection: sa.Connection,
    source: SqlSource,
    types: dict[str, tuple[str, str | None]],
    *,
    first: list[str],
    redact: bool,
) -> dict[str, dict[str, Any]]:
    """Per-column nulls, and mean/min/max (numeric) or distinct count: one aggregate query, in the database.

    Lighter than checks.py's profile (no histograms or top values: each would be another
    pass over the table); the report shows what is there.
    """
    import sqlalchemy as sa

    names: list[str] = []
    for name in [*first, *types]:
        if name in types and name not in names:
            names.append(name)
    names = names[:MAX_PROFILED_COLUMNS]
    if not names:
        return {}
    expressions: list[Any] = [sa.func.count().label("rows")]
    for i, name in enumerate(names):
        column: sa.ColumnClause[Any] = sa.column(name)
        expressions.append(sa.func.count(column).label(f"n{i}"))
        kind = types[name][1]
        if kind in ("integer", "number"):
            expressions.append(sa.func.avg(column).label(f"mean{i}"))
            if not redact:  # min and max are single rows' values; counts and the mean are not
                expressions += [sa.func.min(column).label(f"min{i}"), sa.func.max(column).label(f"max{i}")]
        elif kind in ("string", "boolean"):
            expressions.append(sa.func.count(column.distinct()).label(f"distinct{i}"))
    row = connection.execute(sa.select(*expressions).select_from(source.selectable())).mappings().one()
    rows = int(row["rows"])
    profile: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        entry: dict[str, Any] = {"nulls": rows - int(row[f"n{i}"])}
        if f"mean{i}" in row:
            entry["kind"] = "numeric"
            for key in ("mean", "min", "max"):
                if f"{key}{i}" in row:
                    value = row[f"{key}{i}"]
                    entry[key] = None if value is None else float(value)
        else:
            entry["kind"] = "categorical"
            if f"distinct{i}" in row:
                entry["distinct"] = int(row[f"distinct{i}"])
        profile[name] = _jsonable(entry)
    return profile

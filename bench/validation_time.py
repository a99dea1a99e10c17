"""Time and memory of validating a large frame: ours against Great Expectations called directly.

``validate_dataset`` runs the spec's value checks as one Great Expectations suite, plus
its own type checks and a per-column profile for the report. This script validates the
same 1,000,000-row x 20-column frame with the same 40 expectations three ways, each in a
fresh subprocess so that one's memory does not hide in another's peak:

- ``ours``: ``validate_dataset(frame, spec=..., source_format="parquet")`` (the types
  are checked strictly, as for a Parquet file: nothing to cast);
- ``gx``: Great Expectations the simplest way its documentation shows: ephemeral
  context, pandas data source, dataframe asset, whole-dataframe batch definition, a
  suite of the same 40 expectations, ``result_format="SUMMARY"``;
- ``pandas``: the same checks as plain pandas expressions (the floor: no framework).

Peak memory is measured twice: ``ru_maxrss`` of the child after the run minus its value
once the frame is built (RSS, which sees everything, but only grows when a new peak
is set), and ``tracemalloc``'s peak over the run (Python and numpy allocations; not
pyarrow's own buffers). Targets: ours no slower than direct GX, and a peak under twice
the frame's own size (``frame.memory_usage(deep=True).sum()``).

    .venv/bin/python bench/validation_time.py [--rows 1000000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from typing import Any

VARIANTS = ("ours", "gx", "pandas")
_INTEGERS = 7
_NUMBERS = 7
_STRINGS = 6
_CATEGORIES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]


def build_frame(rows: int) -> Any:
    """20 columns (7 integer, 7 float with a few nulls, 6 text with 8 categories), seeded."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    data: dict[str, Any] = {}
    for i in range(_INTEGERS):
        data[f"int_{i}"] = rng.integers(0, 1000, rows)
    for i in range(_NUMBERS):
        values = rng.normal(50, 10, rows)
        values[rng.random(rows) < 0.01] = np.nan
        data[f"num_{i}"] = values
    for i in range(_STRINGS):
        data[f"cat_{i}"] = pd.array(np.array(_CATEGORIES, dtype=object)[rng.integers(0, 8, rows)], dtype="str")
    frame = pd.DataFrame(data)
    frame["int_0"] = np.arange(rows)  # the row key: unique
    return frame


def spec() -> dict[str, Any]:
    """The spec: per column a range or allowed set, and a null check: 40 GX expectations."""
    columns: dict[str, dict[str, Any]] = {}
    for i in range(_INTEGERS):
        columns[f"int_{i}"] = {"type": "integer", "min": 0, "max": 10_000_000, "nullable": False}
    for i in range(_NUMBERS):
        columns[f"num_{i}"] = {"type": "number", "min": -100, "max": 200, "mostly": 0.95}
    for i in range(_STRINGS):
        columns[f"cat_{i}"] = {"type": "string", "allowed": list(_CATEGORIES), "nullable": False}
    return {"columns": columns, "allow_extra_columns": True}


def gx_expectations() -> list[tuple[str, dict[str, Any]]]:
    """The same 40 expectations, as GX classes and kwargs."""
    expectations: list[tuple[str, dict[str, Any]]] = []
    for name, column in spec()["columns"].items():
        if "allowed" in column:
            expectations.append(("ExpectColumnValuesToBeInSet", {"column": name, "value_set": column["allowed"]}))
        else:
            expectations.append(
                ("ExpectColumnValuesToBeBetween", {"column": name, "min_value": column["min"], "max_value": column["max"]})
            )
        mostly = {"mostly": column["mostly"]} if "mostly" in column else {}
        expectations.append(("ExpectColumnValuesToNotBeNull", {"column": name, **mostly}))
    assert len(expectations) == 40
    return expectations


def run_ours(frame: Any) -> bool:
    from mlops_airflow.validation import validate_dataset

    # The target check needs a target: int_1 stands in (no nulls, so it adds no failure).
    outcome = validate_dataset(frame, target="int_1", spec=spec(), source_format="parquet")
    return outcome.success


def run_gx(frame: Any) -> bool:
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    batch_definition = (
        context.data_sources.add_pandas("bench")
        .add_dataframe_asset("frame")
        .add_batch_definition_whole_dataframe("whole")
    )
    suite = context.suites.add(gx.ExpectationSuite(name="bench"))
    for expectation, kwargs in gx_expectations():
        suite.add_expectation(getattr(gx.expectations, expectation)(**kwargs))
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    return bool(batch.validate(suite, result_format="SUMMARY").success)


def run_pandas(frame: Any) -> bool:
    ok = True
    rows = len(frame)
    for expectation, kwargs in gx_expectations():
        series = frame[kwargs["column"]]
        if expectation == "ExpectColumnValuesToBeInSet":
            bad = int((series.notna() & ~series.isin(kwargs["value_set"])).sum())
        elif expectation == "ExpectColumnValuesToBeBetween":
            bad = int((series.notna() & ~series.between(kwargs["min_value"], kwargs["max_value"])).sum())
        else:
            nulls = int(series.isna().sum())
            bad = 0 if rows - nulls >= kwargs.get("mostly", 1.0) * rows else nulls
        ok = ok and bad == 0
    return ok


def child(variant: str, rows: int) -> dict[str, Any]:
    """One measurement in this (fresh) process: build the frame, then time and trace the variant."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations  # noqa: F401  - import cost is not what is measured
    import pandas  # noqa: F401

    import mlops_airflow.validation.checks  # noqa: F401

    frame = build_frame(rows)
    frame_bytes = int(frame.memory_usage(deep=True).sum())
    run = {"ours": run_ours, "gx": run_gx, "pandas": run_pandas}[variant]
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    success = run(frame)
    seconds = time.perf_counter() - start
    rss_delta = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline_kb) * 1024
    # A second run under tracemalloc (which slows allocation, so it is not timed).
    tracemalloc.start()
    run(frame)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {
        "variant": variant,
        "success": success,
        "seconds": seconds,
        "rss_delta": rss_delta,
        "traced_peak": traced_peak,
        "frame_bytes": frame_bytes,
    }


def measure(variant: str, rows: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", variant, "--rows", str(rows)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="fresh processes per variant (median reported)")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.rows)))
        return

    import great_expectations as gx
    import pandas as pd

    samples: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for _ in range(args.runs):
        for variant in VARIANTS:  # alternated, so that load on the machine hits all alike
            samples[variant].append(measure(variant, args.rows))
    frame_mb = samples["ours"][0]["frame_bytes"] / 1e6
    print(
        f"{args.rows:,} rows x 20 columns, 40 expectations; frame {frame_mb:.0f} MB; "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, pandas {pd.__version__}, "
        f"great_expectations {gx.__version__}; median of {args.runs} fresh processes"
    )
    print()
    print("| variant | wall s (median) | min s | max s | peak RSS over frame, MB | tracemalloc peak, MB | peak / frame |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    label = {
        "ours": "ours: `validate_dataset`",
        "gx": "GX directly (SUMMARY)",
        "pandas": "plain pandas (floor)",
    }
    for variant in VARIANTS:
        runs = samples[variant]
        seconds = [r["seconds"] for r in runs]
        rss = statistics.median(r["rss_delta"] for r in runs) / 1e6
        traced = statistics.median(r["traced_peak"] for r in runs) / 1e6
        assert all(r["success"] for r in runs), f"{variant} did not pass the clean frame"
        print(
            f"| {label[variant]} | {statistics.median(seconds):.2f} | {min(seconds):.2f} | {max(seconds):.2f} "
            f"| {rss:.0f} | {traced:.0f} | {max(rss, traced) / frame_mb:.2f}x |"
        )
    ours = statistics.median(r["seconds"] for r in samples["ours"])
    direct = statistics.median(r["seconds"] for r in samples["gx"])
    print()
    print(f"ours / GX direct: {ours / direct:.2f}x the time")


if __name__ == "__main__":
    main()

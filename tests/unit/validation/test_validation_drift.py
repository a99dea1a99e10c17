"""Drift against a reference: PSI and tests per column, thresholds, the spec section and the report."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from mlops_airflow.exceptions import ValidationSpecError
from mlops_airflow.validation import (
    DEFAULT_THRESHOLDS,
    compute_drift,
    drift_config,
    load_validation_spec,
    render_report,
    validate_dataset,
)

N = 100_000


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _frame(
    rng: np.random.Generator, n: int = N, *, shift: float = 0.0, shares=(0.5, 0.3, 0.2)
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "distance": rng.gamma(2.0, 3.0, n) + shift,
            "hour": rng.integers(0, 24, n),
            "payment": rng.choice(["card", "cash", "app"], n, p=list(shares)),
        }
    )


def test_same_distribution_has_no_drift(rng):
    result = compute_drift(_frame(rng), _frame(rng))

    assert result["breach"] is False
    assert result["drifted_columns"] == []
    assert result["reference_rows"] == result["current_rows"] == N
    for name, entry in result["columns"].items():
        assert entry["psi"] < 0.01, name
        assert entry["drifted"] is False and entry["reasons"] == []
    assert result["columns"]["distance"]["kind"] == "numeric"
    assert result["columns"]["distance"]["ks"]["pvalue"] > 0.001
    assert result["columns"]["payment"]["kind"] == "categorical"
    assert result["columns"]["payment"]["chi2"]["pvalue"] > 0.001
    assert result["max_psi"] < 0.01


def test_shifted_mean_drifts(rng):
    result = compute_drift(_frame(rng), _frame(rng, shift=3.0))

    entry = result["columns"]["distance"]
    assert entry["drifted"] is True
    assert entry["psi"] > 0.2
    assert any(reason.startswith("PSI") for reason in entry["reasons"])
    assert any(reason.startswith("KS p-value") for reason in entry["reasons"])
    assert result["drifted_columns"] == ["distance"]
    assert result["breach"] is True
    # The histogram pairs reference and current shares over the same bins.
    histogram = entry["histogram"]
    assert len(histogram["labels"]) == len(histogram["reference"]) == len(histogram["current"])
    assert sum(histogram["reference"]) == pytest.approx(1, abs=1e-3)
    assert sum(histogram["current"]) == pytest.approx(1, abs=1e-3)
    assert len(histogram["edges"]) == 9  # the reference's deciles


def test_changed_category_shares_drift(rng):
    result = compute_drift(_frame(rng), _frame(rng, shares=(0.2, 0.3, 0.5)))

    entry = result["columns"]["payment"]
    assert entry["drifted"] is True
    assert entry["psi"] > 0.2
    assert entry["chi2"]["pvalue"] < 0.001 and entry["chi2"]["dof"] == 2
    assert entry["unseen_categories"] == [] and entry["unseen_share"] == 0
    assert entry["histogram"]["categories"] == ["card", "cash", "app"]
    assert result["drifted_columns"] == ["payment"]


def test_unseen_categories_are_listed_with_counts_and_judged_by_share():
    reference = pd.DataFrame({"zone": ["a", "b"] * 500})
    current = pd.DataFrame({"zone": ["a", "b"] * 495 + ["x"] * 7 + ["y"] * 3})

    entry = compute_drift(reference, current)["columns"]["zone"]

    assert entry["unseen_categories"] == [{"value": "x", "count": 7}, {"value": "y", "count": 3}]
    assert entry["unseen_distinct"] == 2
    assert entry["unseen_share"] == pytest.approx(0.01)
    # 1% of rows is not above the default 1%: no breach from unseen categories ...
    assert not any("unseen" in reason for reason in entry["reasons"])
    assert entry["histogram"]["categories"][-1] == "<unseen>"
    # ... but it is above a stricter threshold.
    strict = compute_drift(reference, current, config={"unseen_share": 0.005, "psi": 10, "chi2_pvalue": 0})
    assert strict["columns"]["zone"]["drifted"] is True
    assert strict["columns"]["zone"]["reasons"] == ["2 unseen categories in 1.00% of rows > 0.50%"]


def test_unseen_categories_listed_are_capped():
    reference = pd.DataFrame({"code": ["a"] * 100})
    current = pd.DataFrame({"code": [f"new{i}" for i in range(40) for _ in range(i + 1)]})

    entry = compute_drift(reference, current)["columns"]["code"]

    assert len(entry["unseen_categories"]) == 20
    assert entry["unseen_categories"][0] == {"value": "new39", "count": 40}
    assert entry["unseen_distinct"] == 40
    assert entry["unseen_share"] == 1.0


def test_constant_all_nan_and_mixed_columns_do_not_crash():
    n = 1000
    reference = pd.DataFrame(
        {
            "constant": [5.0] * n,
            "empty": [np.nan] * n,
            "text_empty": pd.Series([None] * n, dtype=object),
            "flag": [True, False] * (n // 2),
            "nullable_int": pd.array([1, None] * (n // 2), dtype="Int64"),
            "code": ["a", None] * (n // 2),
        }
    )
    result = compute_drift(reference, reference.copy())
    json.dumps(result, allow_nan=False)
    assert result["breach"] is False
    assert result["columns"]["constant"]["psi"] == 0
    assert result["columns"]["empty"]["ks"] is None
    assert result["columns"]["code"]["histogram"]["categories"] == ["a", "<missing>"]

    # A constant reference still sees the current data move off its value ...
    moved = compute_drift(reference, reference.assign(constant=[6.0] * n))
    assert moved["columns"]["constant"]["drifted"] is True
    # ... and values turning missing (or appearing where all was missing) are drift too.
    emptied = compute_drift(reference, reference.assign(constant=np.nan, empty=1.0))
    assert emptied["columns"]["constant"]["drifted"] is True
    assert emptied["columns"]["empty"]["drifted"] is True
    json.dumps(emptied, allow_nan=False)


def test_empty_frames_are_skipped_not_raised():
    reference = pd.DataFrame({"x": [1.0, 2.0]})

    result = compute_drift(reference, reference.iloc[:0])

    assert result["skipped"] == "the current data has no rows"
    assert result["breach"] is False and result["columns"] == {}


def test_per_column_thresholds_override_the_defaults(rng):
    reference, current = _frame(rng), _frame(rng, shift=1.0, shares=(0.4, 0.35, 0.25))
    loose = {"psi": 100.0, "ks_pvalue": 0.0, "chi2_pvalue": 0.0}

    result = compute_drift(reference, current, config={**loose, "per_column": {"distance": {"psi": 0.05}}})

    assert result["drifted_columns"] == ["distance"]
    assert result["columns"]["distance"]["thresholds"]["psi"] == 0.05
    assert result["columns"]["payment"]["thresholds"]["psi"] == 100.0
    assert result["thresholds"] == {**DEFAULT_THRESHOLDS, **loose}


def test_columns_policy_and_missing_columns(rng):
    reference, current = _frame(rng, 2000), _frame(rng, 2000, shift=5.0)

    result = compute_drift(
        reference, current.drop(columns="hour"), columns=["distance", "hour"], config={"policy": "stop"}
    )

    assert list(result["columns"]) == ["distance"]
    assert result["missing_columns"] == ["hour"]
    assert result["policy"] == "stop" and result["breach"] is True
    # The config's columns apply when the caller names none.
    assert list(compute_drift(reference, current, config={"columns": ["payment"]})["columns"]) == ["payment"]
    assert compute_drift(reference, current)["policy"] == "warn"


@pytest.mark.parametrize(
    ("config", "message"),
    [({"policy": "halt"}, "policy must be one of warn, stop"), ({"psi_max": 1}, "unknown key(s) psi_max")],
)
def test_invalid_config_is_rejected(config, message):
    frame = pd.DataFrame({"x": [1.0]})
    with pytest.raises(ValueError) as info:
        compute_drift(frame, frame, config=config)
    assert message in str(info.value)


def test_result_is_json_serialisable(rng):
    reference = _frame(rng, 5000)
    current = _frame(rng, 5000, shift=2.0).assign(payment=lambda f: f["payment"].replace("app", "crypto"))

    result = compute_drift(reference, current)

    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_redacted_result_holds_no_data_values(rng):
    reference = _frame(rng, 2000)
    current = _frame(rng, 2000).assign(payment=lambda f: f["payment"].replace("app", "secret-zone"))

    result = compute_drift(reference, current, redact=True)

    text = json.dumps(result)
    for value in ("card", "cash", "secret-zone"):
        assert value not in text
    payment = result["columns"]["payment"]
    assert payment["unseen_categories"] == [
        {"value": "<redacted>", "count": int((current["payment"] == "secret-zone").sum())}
    ]
    assert payment["histogram"]["categories"][-1] == "<unseen>"
    assert result["columns"]["distance"]["histogram"]["edges"] == []
    assert result["columns"]["distance"]["histogram"]["labels"][0] == "bin 1"
    # Redaction hides values, not the verdict.
    assert payment["drifted"] is True and result["columns"]["distance"]["psi"] is not None


def test_200k_rows_are_fast(rng):
    n = 200_000
    reference = _frame(rng, n).assign(user=[f"u{i}" for i in rng.integers(0, n, n)])
    current = _frame(rng, n, shift=0.5).assign(user=[f"u{i}" for i in rng.integers(0, n, n)])
    compute_drift(reference.head(100), current.head(100))  # scipy's first import is not the point

    timings = []
    for _ in range(2):  # the better of two: a sanity bound on the work, not on a busy machine's load
        started = time.perf_counter()
        result = compute_drift(reference, current)
        timings.append(time.perf_counter() - started)

    assert min(timings) < 2.0, f"{min(timings):.2f} s"
    # An ID-like column keeps a bounded number of bins (the rest pooled), so the result stays small.
    assert len(result["columns"]["user"]["histogram"]["categories"]) <= 52
    assert len(json.dumps(result)) < 50_000


# -- the spec's drift section -----------------------------------------------------------------


def test_spec_drift_section_is_normalised_and_round_trips():
    spec = load_validation_spec(
        {
            "columns": {"hour": None},
            "drift": {"policy": "stop", "psi": 0.25, "per_column": {"hour": {"psi": 0.5}}},
        }
    )

    assert spec is not None
    assert spec["drift"] == {
        "reference": "champion",
        "policy": "stop",
        "columns": None,
        "psi": 0.25,
        "ks_pvalue": 0.001,
        "chi2_pvalue": 0.001,
        "unseen_share": 0.01,
        "per_column": {"hour": {"psi": 0.5}},
    }
    assert load_validation_spec(spec) == spec
    assert load_validation_spec(json.loads(json.dumps(spec))) == spec
    assert drift_config(spec) == spec["drift"]
    # The normalised section is a valid compute_drift config as is.
    frame = pd.DataFrame({"hour": [1, 2, 3]})
    assert compute_drift(frame, frame, config=drift_config(spec))["policy"] == "stop"


def test_spec_without_drift_has_none():
    spec = load_validation_spec({"columns": {"hour": None}})

    assert spec is not None and spec["drift"] is None
    assert drift_config(spec) is None
    assert drift_config(None) is None
    assert drift_config({"columns": {"hour": None}, "drift": {}})["reference"] == "champion"
    assert (
        drift_config({"columns": {"hour": None}, "drift": {"reference": "s3://bucket/ref.parquet"}})[
            "reference"
        ]
        == "s3://bucket/ref.parquet"
    )


@pytest.mark.parametrize(
    ("drift", "expected"),
    [
        ({"policy": "halt"}, "drift.policy: expected one of warn, stop, got 'halt'"),
        ({"psi": -0.1}, "drift.psi: must be >= 0, got -0.1"),
        ({"ks_pvalue": 2}, "drift.ks_pvalue: must be between 0 and 1, got 2"),
        ({"unseen_share": "1%"}, "drift.unseen_share: expected a number, got '1%'"),
        (
            {"threshold": 1},
            "drift.threshold: unknown key 'threshold' (allowed: reference, policy, columns, psi",
        ),
        ({"reference": ""}, "drift.reference: expected champion or a dataset URI"),
        ({"columns": "hour"}, "drift.columns: expected a non-empty list of column names"),
        ({"per_column": {"hour": {"psi": -1}}}, "drift.per_column.hour.psi: must be >= 0"),
        ({"per_column": {"hour": {"policy": "stop"}}}, "drift.per_column.hour.policy: unknown key 'policy'"),
        ({"per_column": {"hour": 0.3}}, "drift.per_column.hour: expected a mapping like {psi: 0.3}"),
        ("yes", "drift: expected a mapping"),
    ],
)
def test_spec_drift_errors_name_the_field(drift, expected):
    with pytest.raises(ValidationSpecError) as info:
        load_validation_spec({"columns": {"hour": None}, "drift": drift})
    assert expected in str(info.value)


def test_spec_drift_errors_carry_the_yaml_line(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_AIRFLOW_SPEC_ROOTS", str(tmp_path))
    path = tmp_path / "spec.yaml"
    path.write_text("columns:\n  hour:\ndrift:\n  policy: warn\n  psi: -1\n")

    with pytest.raises(ValidationSpecError) as info:
        load_validation_spec(str(path))

    assert "drift.psi: must be >= 0, got -1 (line 5)" in str(info.value)


# -- the report -------------------------------------------------------------------------------


def test_report_shows_drift_table_and_paired_charts(rng):
    reference = _frame(rng, 3000)
    current = _frame(rng, 3000, shift=4.0).assign(
        payment=lambda f: f["payment"].replace("app", "<b>crypto</b>")
    )
    summary = validate_dataset(current.assign(y=0), target="y", spec=None).summary
    summary["drift"] = {
        **compute_drift(reference, current, config={"policy": "stop"}),
        "reference": "champion",
    }

    page = render_report(summary, title="drift")

    assert "Drift against the reference (champion)" in page
    assert "DRIFT (stops the run)" in page
    assert '<tr class="highlight"><td>distance</td>' in page
    assert "<td>hour</td>" in page and "KS " in page and "chi² " in page
    assert "&lt;b&gt;crypto&lt;/b&gt;" in page and "<b>crypto" not in page  # data values escaped
    # The original sections are still there, and one more chart per compared column.
    assert "<h2>Checks</h2>" in page and "<h2>Columns</h2>" in page
    assert page.count("<svg") >= 2 * 3
    for chunk in page.split("<svg")[1:]:
        ET.fromstring("<svg" + chunk.split("</svg>")[0] + "</svg>")


def test_report_says_why_drift_was_not_checked():
    summary = validate_dataset(pd.DataFrame({"x": [1.0], "y": [0]}), target="y", spec=None).summary
    summary["drift"] = {
        "skipped": "no champion yet: nothing to compare with",
        "breach": False,
        "policy": "warn",
    }

    page = render_report(summary, title="first run")

    assert "Not checked: no champion yet: nothing to compare with." in page

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops_airflow.data.split import hash_split
from mlops_airflow.exceptions import DataError


def frame(n: int, start: int = 0, classes: int = 2) -> pd.DataFrame:
    ids = np.arange(start, start + n)
    return pd.DataFrame({"id": ids, "x": ids * 0.5, "y": ids % classes})


def holdout_ids(df: pd.DataFrame, **kwargs) -> set[int]:  # type: ignore[no-untyped-def]
    split = hash_split(df, target="y", key="id", **kwargs)
    return set(df.iloc[split.holdout]["id"])


def test_old_rows_keep_their_side_as_data_grows() -> None:
    small = frame(2000)
    grown = pd.concat([small, frame(3000, start=2000)], ignore_index=True)
    before, after = holdout_ids(small), holdout_ids(grown)
    train_before = set(small["id"]) - before
    assert before <= after  # every old holdout row is still held out
    assert not (train_before & after)  # no old training row leaks into the new holdout


def test_fraction_is_respected_roughly_and_deterministic() -> None:
    df = frame(10000)
    ids = holdout_ids(df, fraction=0.2)
    assert 1800 < len(ids) < 2200
    assert ids == holdout_ids(df.sample(frac=1, random_state=1), fraction=0.2)  # order does not matter


def test_small_data_gets_a_minimum_holdout_and_every_class() -> None:
    df = frame(40, classes=2)
    df.loc[df.index[:3], "y"] = 7  # a rare class
    split = hash_split(df, target="y", key="id", fraction=0.01, min_holdout=10)
    held = df.iloc[split.holdout]
    assert len(held) >= 10
    assert set(held["y"]) == {0, 1, 7}
    assert split.info["fallback"]


def test_without_a_key_the_row_values_are_hashed() -> None:
    df = frame(500)
    a = hash_split(df, target="y", key=None)
    b = hash_split(df.iloc[::-1].reset_index(drop=True), target="y", key=None)
    assert set(df.iloc[a.holdout]["id"]) == set(df.iloc[::-1].reset_index(drop=True).iloc[b.holdout]["id"])


def test_missing_key_column_is_named() -> None:
    with pytest.raises(DataError, match="row_key column 'nope'"):
        hash_split(frame(10), target="y", key="nope")


def test_tiny_data_keeps_every_class_on_both_sides() -> None:
    import pandas as pd

    from mlops_airflow.data.split import hash_split

    for seed in range(2000):  # many tiny tables: the hashes must never leave training with one class
        frame = pd.DataFrame({"x": [seed * 100 + i for i in range(12)], "y": [0, 1] * 6})
        split = hash_split(frame, target="y")
        assert set(frame["y"].iloc[split.train]) == {0, 1}, seed
        assert set(frame["y"].iloc[split.holdout]) == {0, 1}, seed

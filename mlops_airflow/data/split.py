"""Leak-free holdout splits chosen by a hash of each row's key.

A row's side depends only on its own key (or, with no key, its own values), never on
the other rows, so as the data grows every old row stays on its side: the champion's
training rows never land in a later holdout and flatter it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlops_airflow.exceptions import DataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: Below this many holdout rows a gate cannot say much; the split takes more rows.
MIN_HOLDOUT_ROWS = 30
SALT = "mlops-airflow/holdout/v1"


@dataclass
class Split:
    train: np.ndarray
    holdout: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def row_hashes(frame: pd.DataFrame, key: str | None) -> np.ndarray:
    """A uniform number in [0, 1) per row, from its key column or from all its values."""
    import numpy as np
    import pandas as pd

    if key is not None:
        if key not in frame.columns:
            raise DataError(f"row_key column {key!r} is not in the data (columns: {', '.join(map(str, frame.columns))})")
        values: pd.DataFrame | pd.Series = frame[key].astype(str)
    else:
        values = frame.astype(str)
    hashed = pd.util.hash_pandas_object(values, index=False, hash_key=SALT[:16]).to_numpy(dtype=np.uint64)
    return hashed.astype(np.float64) / float(2**64)


def hash_split(
    frame: pd.DataFrame,
    *,
    target: str | None = None,
    key: str | None = None,
    fraction: float = 0.2,
    min_holdout: int = MIN_HOLDOUT_ROWS,
    stratify: bool = True,
) -> Split:
    """Split ``frame`` into train and holdout row positions.

    Rows whose hash is below ``fraction`` are held out. Two deterministic top-ups keep the
    holdout usable on small data, taking the next-lowest hashes (so a row never moves from
    holdout to train as the threshold grows): up to ``min_holdout`` rows overall and, when
    ``stratify`` and ``target`` is a class label, at least one row of every class that
    has two or more rows.
    """
    import numpy as np

    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n = len(frame)
    if n < 2:
        raise DataError(f"need at least 2 rows to split, got {n}")
    h = row_hashes(frame, key)
    holdout = h < fraction
    fallback: list[str] = []
    wanted = min(min_holdout, n // 2)
    if holdout.sum() < wanted:
        holdout[np.argsort(h, kind="stable")[:wanted]] = True
        fallback.append(f"holdout topped up to {wanted} rows")
    stratified = False
    if stratify and target is not None and target in frame.columns:
        labels = frame[target]
        if labels.dtype.kind in "OUSbi" or str(labels.dtype) in {"category", "string", "str"}:
            stratified = True
            for label in labels.dropna().unique():
                rows = np.flatnonzero((labels == label).to_numpy())
                if len(rows) >= 2 and not holdout[rows].any():
                    holdout[rows[np.argmin(h[rows])]] = True
                    fallback.append(f"class {label!r} added to holdout")
                if len(rows) >= 2 and holdout[rows].all():
                    holdout[rows[np.argmax(h[rows])]] = False
                    fallback.append(f"class {label!r} kept in training")
    train = np.flatnonzero(~holdout)
    if len(train) == 0:
        raise DataError(f"no training rows left after holding out {int(holdout.sum())} of {n}")
    return Split(
        train=train,
        holdout=np.flatnonzero(holdout),
        info={
            "method": "hash",
            "key": key or "<row values>",
            "fraction": fraction,
            "train_rows": int(len(train)),
            "holdout_rows": int(holdout.sum()),
            "stratified": stratified,
            "fallback": fallback,
        },
    )

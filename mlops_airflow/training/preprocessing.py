"""The default preprocessing, so that an arbitrary CSV trains.

Numeric columns are median-imputed and scaled; text and categorical columns are imputed
with a constant and one-hot encoded, ignoring unknown categories at prediction time and
folding rare ones together (``max_categories``) so a high-cardinality text column cannot
blow up the feature space.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlops_airflow.data.schema import is_numeric

if TYPE_CHECKING:
    import pandas as pd

MAX_CATEGORIES = 50


def default_preprocessor(features: pd.DataFrame) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in features.columns if is_numeric(features[c])]
    categorical = [c for c in features.columns if c not in numeric]
    steps = []
    if numeric:
        steps.append(("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric))
    if categorical:
        encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_CATEGORIES, sparse_output=False)
        steps.append(
            ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value="missing"), encoder), categorical)
        )
    # Dense output: histogram gradient boosting and several others refuse sparse input.
    return ColumnTransformer(steps, sparse_threshold=0.0)

"""Saving and loading models safely: skops format, checksum first, explicit trusted types.

A model is loaded only after the sha256 of its bytes matches the one recorded in its
manifest, and only if every type skops reports as untrusted is on :data:`TRUSTED_TYPES`.
We never pass the file's own list of types back as ``trusted``: that would trust
whatever an attacker wrote into the file.
"""

from __future__ import annotations

import hashlib
import logging
import platform
import warnings
from importlib import metadata
from typing import Any, Literal

from mlops_airflow.exceptions import UnsafeModelError

log = logging.getLogger(__name__)

SkewPolicy = Literal["refuse", "warn"]

#: Types skops does not trust by default but scikit-learn's own estimators need:
#: tree internals and histogram-gradient-boosting predictors. Extend deliberately.
TRUSTED_TYPES: frozenset[str] = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.link.LogLink",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.loss.HalfPoissonLoss",
        "sklearn._loss.loss.AbsoluteError",
        "sklearn._loss.loss.PinballLoss",
        "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss._loss.CyHalfMultinomialLoss",
        "sklearn._loss._loss.CyHalfSquaredError",
        "sklearn._loss._loss.CyHalfPoissonLoss",
        "sklearn._loss._loss.CyAbsoluteError",
        "sklearn._loss._loss.CyPinballLoss",
        "sklearn.utils._bunch.Bunch",
        "collections.OrderedDict",
        "numpy.dtype",
    }
)

#: Packages whose versions are recorded with every model and compared at load.
TRACKED_PACKAGES = ("scikit-learn", "skops", "numpy", "pandas")


def runtime_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            versions[name] = "absent"
    return versions


def dump_model(model: Any) -> bytes:
    """The model in skops format, byte-for-byte the same for the same fitted model (see :func:`canonical_skops`)."""
    import skops.io as sio

    return canonical_skops(sio.dumps(model))


def canonical_skops(data: bytes) -> bytes:
    """``data`` with skops' per-process noise removed, so equal models give equal bytes and sha256.

    skops names array files and memo ids after ``id()`` of the objects and stamps the
    current time on each zip entry. A retried training task would then store a second,
    different candidate for the same model. Renumbering both in order of appearance and
    fixing the stamps changes nothing skops reads back.
    """
    import io
    import json
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(data))
    schema = json.loads(source.read("schema.json"))
    members = set(source.namelist()) - {"schema.json"}
    ids: dict[int, int] = {}
    files: dict[str, str] = {}

    def renumber(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    node[key] = ids.setdefault(value, len(ids) + 1)
                elif key == "file" and value in members:
                    node[key] = files.setdefault(value, f"{len(files)}.{value.rsplit('.', 1)[-1]}")
                else:
                    renumber(value)
        elif isinstance(node, list):
            for value in node:
                renumber(value)

    renumber(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        entries = [("schema.json", json.dumps(schema, indent=2).encode())]
        entries += [(files.get(name, name), source.read(name)) for name in sorted(members, key=lambda n: files.get(n, n))]
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, content)
    return out.getvalue()


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_version_skew(recorded: dict[str, str], policy: SkewPolicy = "warn") -> list[str]:
    """Differences (by major.minor) between recorded and runtime versions of scikit-learn and skops."""
    runtime = runtime_versions()
    skew = [
        f"{name} {recorded[name]} (model) vs {runtime[name]} (runtime)"
        for name in ("scikit-learn", "skops")
        if name in recorded and _minor(recorded[name]) != _minor(runtime[name])
    ]
    if skew and policy == "refuse":
        raise UnsafeModelError("library version skew: " + "; ".join(skew))
    for line in skew:
        warnings.warn(f"library version skew: {line}", stacklevel=2)
    return skew


def load_model(
    data: bytes,
    *,
    expected_sha256: str,
    recorded_versions: dict[str, str] | None = None,
    skew_policy: SkewPolicy = "warn",
    extra_trusted: frozenset[str] = frozenset(),
) -> Any:
    """Load a model from skops bytes, after verifying its checksum and its types."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise UnsafeModelError(
            f"checksum mismatch: the manifest says sha256 {expected_sha256[:12]}…, the artifact is {actual[:12]}…; "
            "refusing to load a model that is not the one registered"
        )
    import skops.io as sio

    try:
        untrusted = set(sio.get_untrusted_types(data=data))
    except Exception as exc:  # skops raises several types for a file that is not a skops archive
        raise UnsafeModelError(f"not a readable skops archive: {exc}") from exc
    from mlops_airflow import settings

    allowed = TRUSTED_TYPES | extra_trusted | frozenset(settings.trusted_types_extra())
    refused = sorted(untrusted - allowed)
    if refused:
        raise UnsafeModelError(
            f"model contains types that are not on the trusted list: {', '.join(refused)} "
            "(allow your own explicitly with the trusted_types setting, MLOPS_AIRFLOW_TRUSTED_TYPES)"
        )
    if recorded_versions:
        check_version_skew(recorded_versions, skew_policy)
    return sio.loads(data, trusted=sorted(untrusted & allowed))

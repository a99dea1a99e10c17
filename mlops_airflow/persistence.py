"""Saving and loading models safely: skops format, checksum first, explicit trusted types.

A model is loaded only after the sha256 of its bytes matches the one recorded in its
manifest, and only if every type skops reports as untrusted is on :data:`TRUSTED_TYPES`.
We never pass the file's own list of types back as ``trusted``: that would trust
whatever an attacker wrote into the file.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import importlib.abc
import importlib.machinery
import logging
import platform
import sys
import warnings
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from mlops_airflow.exceptions import UnsafeModelError

if TYPE_CHECKING:
    from collections.abc import Iterator

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
    """The versions of Python and :data:`TRACKED_PACKAGES` in this process."""
    return dict(_runtime_versions())


@functools.cache
def _runtime_versions() -> dict[str, str]:
    # read once: importlib.metadata parses each package's METADATA file on every call
    versions = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - all are dependencies
            versions[name] = "absent"
    return versions


def dump_model(model: Any) -> bytes:
    """The model in skops format, byte-for-byte the same for the same fitted model (see :func:`canonical_skops`).

    skops' own ``dumps`` writes its schema with ``json.dumps(indent=2)``, which runs the
    pure-Python encoder (about 80 ms for a default preprocessing pipeline, more than the
    fit of a small model), and then :func:`canonical_skops` would parse and write it
    again. Here skops' state walk fills a scratch archive and the canonical archive is
    written once, with the C encoder.
    """
    import io
    import zipfile

    import skops

    skops_io()
    from skops.io._utils import SaveContext, get_state

    scratch = zipfile.ZipFile(io.BytesIO(), "w")
    context = SaveContext(zip_file=scratch)
    state = get_state(model, context)
    context.clear_memo()
    state["protocol"] = context.protocol
    state["_skops_version"] = skops.__version__
    return _canonical_archive(state, scratch)


def canonical_skops(data: bytes) -> bytes:
    """``data`` (a skops archive) with skops' per-process noise removed, so equal models give equal bytes.

    skops names array files and memo ids after ``id()`` of the objects and stamps the
    current time on each zip entry. A retried training task would then store a second,
    different candidate for the same model. Renumbering both in order of appearance and
    fixing the stamps changes nothing skops reads back.
    """
    import io
    import json
    import zipfile

    source = zipfile.ZipFile(io.BytesIO(data))
    return _canonical_archive(json.loads(source.read("schema.json")), source)


def _canonical_archive(schema: dict[str, Any], source: Any) -> bytes:
    """The archive of ``schema`` and the array files it names in ``source``, renumbered in order of appearance."""
    import io
    import json
    import zipfile

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
        elif isinstance(node, (list, tuple)):  # skops' state holds tuples where its JSON holds lists
            for value in node:
                renumber(value)

    renumber(schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        # compact separators: no indent keeps json.dumps on its C encoder
        entries = [("schema.json", json.dumps(schema, separators=(",", ":")).encode())]
        entries += [(files.get(name, name), source.read(name)) for name in sorted(members, key=lambda n: files.get(n, n))]
        for name, content in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, content)
    return out.getvalue()


def skops_io() -> ModuleType:
    """``skops.io``, imported so that it costs milliseconds and logs nothing in an Airflow process.

    At import skops names every numpy and scipy ufunc with ``whichmodule``, which, for an
    object without ``__module__``, calls ``getattr(module, name)`` on every loaded module.
    In a task that is ~3,600 modules, among them Airflow's deprecation shims, whose module
    ``__getattr__`` warns: ~2.5 s and ~1,160 ``DeprecatedImportWarning`` lines per task.
    Before skops is first imported, a one-shot import hook replaces ``whichmodule`` in
    ``skops.io._utils`` with :func:`_whichmodule`, which reads each module's ``__dict__``.
    """
    if "skops.io" not in sys.modules and not any(isinstance(f, _SkopsUtilsFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SkopsUtilsFinder())
    import skops.io

    return skops.io


def _whichmodule(obj: Any, name: str) -> str:
    """The first loaded module holding ``obj`` as ``name``, as skops' ``whichmodule`` finds it.

    The same search in the same order, but through each module's namespace instead of
    ``getattr``: no module ``__getattr__`` runs (lazy loaders, deprecation shims), so the
    search neither imports nor warns. A name only such a hook provides is not found there;
    the object's own home module, which defines it, still is.
    """
    module_name = getattr(obj, "__module__", None)
    if module_name is not None:
        return str(module_name)
    for module_name, namespace in _namespaces():
        if namespace.get(name) is obj:
            return module_name
    return "__main__"


_NAMESPACES: tuple[int, list[tuple[str, dict[str, Any]]]] = (-1, [])


def _namespaces() -> list[tuple[str, dict[str, Any]]]:
    """Every loaded module's namespace in import order; rebuilt when modules come or go.

    skops looks up ~800 names in a row while it imports; listing ~3,600 modules for each
    lookup costs more than the lookups.
    """
    global _NAMESPACES
    count, spaces = _NAMESPACES
    if count != len(sys.modules):
        spaces = [(name, vars(module)) for name, module in list(sys.modules.items())
                  if module is not None and name not in ("__main__", "__mp_main__")
                  and isinstance(getattr(module, "__dict__", None), dict)]
        _NAMESPACES = (len(sys.modules), spaces)
    return spaces


class _SkopsUtilsFinder(importlib.abc.MetaPathFinder):
    """Finds ``skops.io._utils`` as the path finder does, and puts :func:`_whichmodule` in it once it has run."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "skops.io._utils":
            return None
        sys.meta_path.remove(self)  # one shot
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _PatchingLoader(spec.loader)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        module.whichmodule = _whichmodule  # type: ignore[attr-defined]


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


#: Models loaded within a :func:`reuse_loaded_models` block, by the sha256 of their verified bytes.
_REUSE: contextvars.ContextVar[dict[tuple[str, tuple[str, ...]], Any] | None] = contextvars.ContextVar(
    "mlops_reuse_loaded_models", default=None)


@contextlib.contextmanager
def reuse_loaded_models() -> Iterator[None]:
    """Within the block, loading bytes already loaded (same sha256, same trusted types) returns that model.

    The checksum is still verified on every load (the bytes are read again), so a model
    is only reused for byte-identical artifacts whose types passed the same checks. For
    one segment of a batch the gate and the deploy stage load the same candidate; the
    server never reuses (each model it loads is its own, and eviction must free it).
    """
    token = _REUSE.set({})
    try:
        yield
    finally:
        _REUSE.reset(token)


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
    import io
    import zipfile

    from mlops_airflow import settings

    skops_io()
    from skops.io._audit import get_tree
    from skops.io._utils import read_schema

    allowed = sorted(TRUSTED_TYPES | extra_trusted | frozenset(settings.trusted_types_extra()))
    reuse = _REUSE.get()
    if reuse is not None and (actual, tuple(allowed)) in reuse:
        if recorded_versions:
            check_version_skew(recorded_versions, skew_policy)
        return reuse[(actual, tuple(allowed))]
    # One tree for both the audit and the construction (skops' get_untrusted_types + loads build
    # it twice): the tree only describes the objects; nothing is constructed before the checks.
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            schema, context = read_schema(archive)
            tree = get_tree(schema, context, trusted=allowed)
            refused = sorted(tree.get_unsafe_set())
            if refused:
                raise UnsafeModelError(
                    f"model contains types that are not on the trusted list: {', '.join(refused)} "
                    "(allow your own explicitly with the trusted_types setting, MLOPS_AIRFLOW_TRUSTED_TYPES)"
                )
            if recorded_versions:
                check_version_skew(recorded_versions, skew_policy)
            model = tree.construct()
            if reuse is not None:
                reuse[(actual, tuple(allowed))] = model
            return model
    except UnsafeModelError:
        raise
    except Exception as exc:  # skops and zipfile raise several types for a file that is not a skops archive
        raise UnsafeModelError(f"not a readable skops archive: {type(exc).__name__}: {exc}") from exc

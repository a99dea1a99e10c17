"""Spec files named by Params: which files may be read, and reading them without echoing them.

The ``validation`` and ``gate`` Params may name a YAML/JSON file. Whoever may trigger a
DAG chooses that text, so a path must not become a way to read the worker's files. A
spec file is read only from:

- the DAGs folder (Airflow's ``[core] dags_folder``) and the folder of the running DAG's file;
- the ``include/`` folder inside or beside either of them (``mlops-airflow init`` puts it
  inside; a project with ``dags/`` and ``include/`` side by side has it beside);
- the folders of the ``spec_roots`` setting (``MLOPS_AIRFLOW_SPEC_ROOTS`` or
  ``[mlops_airflow] spec_roots``, comma-separated).

A relative path is looked up in the DAG's folder, then in the folder above it (so
``include/gate.yaml`` works in both layouts). Paths are compared after
:func:`os.path.realpath`, so ``..`` and symlinks cannot leave these folders; anything else
is refused before it is opened. A file inside them that is not a spec is refused without
quoting it: errors give its path, line and column, never its text or keys that are not
spec keys.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from mlops_airflow import settings
from mlops_airflow.exceptions import ConfigError

HOW_TO_ALLOW = (
    "put the spec in the DAGs folder or its include/ folder, or add its folder to the spec_roots setting "
    "(MLOPS_AIRFLOW_SPEC_ROOTS, or spec_roots in the [mlops_airflow] section of airflow.cfg; comma-separated)"
)


def looks_inline(text: str) -> bool:
    """Whether Param text is the spec itself rather than a file path.

    A Param filled in from the trigger form is text: a mapping literal, several lines, or
    ``key: value`` is a spec; anything else names a file.
    """
    return text.startswith("{") or "\n" in text or ": " in text


def spec_roots(dag_dir: str | None = None) -> list[Path]:
    """The folders spec files may be read from (real paths), for a DAG whose file is in ``dag_dir``."""
    return list(dict.fromkeys(Path(os.path.realpath(folder)) for folder in _root_folders(dag_dir)))


def resolve_spec_path(reference: str, *, param: str, dag_dir: str | None, error: type[ConfigError]) -> Path:
    """The real path of the spec file ``reference`` names, if it lies in :func:`spec_roots`.

    ``param`` names the Param in errors; ``error`` is the error raised, before any file is opened.
    """
    roots = spec_roots(dag_dir)
    written = _candidates(reference, dag_dir, roots)
    found = next((path for path in written if os.path.lexists(path)), None)
    if found is None and written:
        relative = "" if os.path.isabs(reference) else "a relative path is looked up in the DAG's folder, then the folder above it; "
        raise error(f"{param}: spec file {reference!r} not found ({relative}looked in {', '.join(map(str, written))})")
    # Then by where it really is, so no symlink leads out.
    real = Path(os.path.realpath(found)) if found is not None else None
    if real is None or not _inside(real, roots):
        raise error(f"{param}: {reference!r} is outside the folders spec files are read from "
                    f"({', '.join(map(str, roots))}): {HOW_TO_ALLOW}")
    if not real.is_file():
        raise error(f"{param}: spec path {reference!r} is not a file")
    return real


def read_spec_file(path: Path, *, param: str, keys: Collection[str], error: type[ConfigError]) -> tuple[yaml.Node, Any]:
    """The YAML node and data of the spec file at ``path``: a mapping whose top-level keys are all ``keys``.

    Errors name the file, line and column but never quote it: the file may be anything
    that happens to lie in the spec folders. They are raised ``from None`` because a chained
    YAML error would print the offending line in the task's traceback.
    """
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise error(f"{param}: cannot read spec file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise error(f"{param}: spec file {path} is not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{param}: spec file {path} is not valid YAML/JSON{where}") from None
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        raise error(f"{param}: spec file {path} is not a {param} spec: expected a mapping of spec keys, "
                    f"got {_kind(data)}")
    foreign = [key.start_mark.line + 1 for key, _ in node.value if str(key.value) not in keys]
    if foreign:
        raise error(f"{param}: spec file {path} is not a {param} spec: top-level key(s) at line(s) "
                    f"{', '.join(map(str, foreign))} are not spec keys (allowed: {', '.join(sorted(keys))})")
    return node, data


def _candidates(reference: str, dag_dir: str | None, roots: list[Path]) -> list[Path]:
    """Where ``reference`` may be, judged by the path as written (``..`` folded), within the spec folders.

    Judging the written path first makes a typo "not found" rather than "outside" (the folder
    above the DAG's is not a spec folder); :func:`resolve_spec_path` then judges the real path.
    """
    if os.path.isabs(reference):
        paths = [Path(reference)]
    else:
        base = Path(dag_dir) if dag_dir else settings.dags_folder()
        paths = [base / reference, base.parent / reference]
    folders = [*map(_absolute, _root_folders(dag_dir)), *roots]
    return [path for path in map(_absolute, paths) if _inside(path, folders)]


def _root_folders(dag_dir: str | None) -> list[Path]:
    folders = [settings.dags_folder(), *([Path(dag_dir)] if dag_dir else [])]
    roots = [root for folder in folders for root in (folder, folder / "include", folder.parent / "include")]
    return roots + [Path(extra).expanduser() for extra in settings.spec_roots()]


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def _kind(data: Any) -> str:
    if data is None:
        return "an empty document"
    if isinstance(data, list):
        return "a list"
    return "text" if isinstance(data, str) else f"a {type(data).__name__}"

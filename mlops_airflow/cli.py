"""The ``mlops-airflow`` command.

    mlops-airflow models list [--json]
    mlops-airflow models show NAME [--version N | --alias A] [--json]
    mlops-airflow models rollback NAME [--to VERSION] [--reason TEXT] [--by WHO] [--no-wait]
    mlops-airflow runs show NAME [--run-id ID] [--json]
    mlops-airflow gate override NAME --candidate SHA --reason TEXT [--by WHO] [--verdict ID]
    mlops-airflow serve NAME [--alias champion] [--host H] [--port P]
    mlops-airflow init DAGS_FOLDER [--force]
    mlops-airflow suite infer DATA --out include/NAME.yaml [--target T] [--margin 0.1] [--force]

The registry location comes from ``--registry`` or the settings (see
:mod:`mlops_airflow.settings`); S3 credentials and endpoint from the standard AWS
environment (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL``, ...). Exit status 1 with a
one-line reason when a model, version, alias or run does not exist.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from mlops_airflow import settings
from mlops_airflow.exceptions import MlopsError, ModelNotFound


def _registry(args: argparse.Namespace) -> Any:
    from mlops_airflow.registry import ModelRegistry
    from mlops_airflow.storage import open_store

    return ModelRegistry(open_store(args.registry or settings.registry_uri()))


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def cmd_models_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    rows = []
    for name in registry.list_models():
        versions = registry.list_versions(name)
        latest = registry.get_version(name, versions[-1])
        rows.append({"name": name, "versions": len(versions), "latest": versions[-1], "aliases": registry.aliases(name),
                     "task_type": latest.get("task_type"), "registered_at": latest.get("registered_at")})
    if args.json:
        _print_json(rows)
        return 0
    if not rows:
        print(f"no models in {registry.store.uri}")
        return 0
    print(f"{'NAME':<28} {'VERSIONS':>8} {'LATEST':>6}  {'TASK':<11} ALIASES")
    for row in rows:
        aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(row["aliases"].items())) or "-"
        print(f"{row['name']:<28} {row['versions']:>8} {row['latest']:>6}  {row['task_type'] or '-':<11} {aliases}")
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    registry = _registry(args)
    manifest = registry.resolve(args.name, version=args.version, alias=args.alias)
    aliases = registry.aliases(args.name)
    shown = {
        "name": args.name,
        "version": manifest["version"],
        "aliases": sorted(a for a, v in aliases.items() if v == manifest["version"]),
        "metrics": manifest.get("metrics", {}),
        "lineage": {
            **manifest.get("lineage", {}),
            "data_uri": manifest.get("data", {}).get("uri"),
            "data_fingerprint": manifest.get("data", {}).get("fingerprint"),
            "rows": manifest.get("data", {}).get("rows"),
            "validation_report_uri": manifest.get("data", {}).get("validation_report_uri"),
        },
        "verdict": manifest.get("verdict"),
        "task_type": manifest.get("task_type"),
        "estimator": manifest.get("estimator"),
        "estimator_params": manifest.get("estimator_params"),
        "sha256": manifest.get("sha256"),
        "artifact_uri": manifest.get("artifact_uri"),
        "packages": manifest.get("packages"),
        "registered_at": manifest.get("registered_at"),
        "features": [c["name"] for c in manifest.get("feature_schema", {}).get("columns", [])],
    }
    if args.json:
        _print_json(shown)
        return 0
    print(f"{shown['name']} v{shown['version']}  aliases: {', '.join(shown['aliases']) or '-'}")
    print(f"  {shown['estimator']} ({shown['task_type']}), registered {shown['registered_at']}, sha256 {shown['sha256'][:12]}")
    print("  metrics: " + ", ".join(f"{k}={v}" for k, v in sorted(shown["metrics"].items())))
    verdict = shown["verdict"] or {}
    print(f"  gate: {verdict.get('outcome')} ({verdict.get('gate_source')}): {verdict.get('reason')}")
    decision = verdict.get("decision")
    if decision:
        print(f"  {decision['kind']} by {decision['by']} at {decision['at']}: {decision.get('reason') or '-'}")
    lineage = shown["lineage"]
    print(f"  data: {lineage['data_uri']} ({lineage['rows']} rows, {lineage['data_fingerprint']})")
    train = lineage.get("train", {})
    if train:
        print(f"  trained by {train.get('dag_id')} run {train.get('run_id')}")
    return 0


def cmd_models_rollback(args: argparse.Namespace) -> int:
    import getpass

    from mlops_airflow.pipeline.rollback import run_rollback

    target = None
    if not args.no_wait:
        from mlops_airflow.deploy.local import LocalServerTarget

        target = LocalServerTarget(args.server_url or settings.server_url(), timeout=args.timeout)
    result = run_rollback(_registry(args), model_name=args.name, to_version=args.to, by=args.by or getpass.getuser(),
                          reason=args.reason, target=target)
    if result["rolled_back"]:
        print(f"{args.name}@champion: v{result['previous_version']} -> v{result['version']} ({result['reason']})")
    else:
        print(f"{args.name}: {result['reason']}")
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    from mlops_airflow.pipeline.summary import format_run, read_run

    record = read_run(_registry(args), args.name, args.run_id)
    if args.json:
        _print_json(record)
    else:
        print(format_run(record))
    return 0


def cmd_gate_override(args: argparse.Namespace) -> int:
    import getpass

    from mlops_airflow.evaluation.decisions import record_decision
    from mlops_airflow.pipeline.register import read_verdict

    registry = _registry(args)
    candidate = registry.candidate(args.name, args.candidate)
    folder = registry.artifact_key(args.name, candidate["sha256"], "verdicts")
    keys = [k for k in registry.store.list(folder) if k.endswith(".json") and k.count(".") == 1]
    verdicts = [read_verdict(registry, registry.store.url(k)) for k in keys]
    if args.verdict:
        verdicts = [v for v in verdicts if v["verdict_id"] == args.verdict]
    if not verdicts:
        raise ModelNotFound(f"no verdict {args.verdict or ''} for candidate {args.candidate[:12]} of {args.name!r}".replace("  ", " "))
    verdict = max(verdicts, key=lambda v: v["created_at"])
    record = record_decision(registry, verdict, kind="override", by=args.by or getpass.getuser(), reason=args.reason)
    print(f"override of verdict {verdict['verdict_id']} ({verdict['outcome']}) recorded: by {record['by']} at {record['at']}")
    print("clear the run's register and deploy tasks in the Airflow UI to register and deploy this candidate")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mlops_airflow.serving.server import serve

    serve(args.registry or settings.registry_uri(), args.name, alias=args.alias, host=args.host, port=args.port)
    return 0


def cmd_suite_infer(args: argparse.Namespace) -> int:
    from mlops_airflow.data.loading import load_dataset
    from mlops_airflow.validation import load_validation_spec
    from mlops_airflow.validation.infer import dump_spec_yaml, infer_spec

    out = Path(args.out).expanduser()
    if out.exists() and not args.force:
        print(f"mlops-airflow: {out} exists; --force to overwrite", file=sys.stderr)
        return 1
    dataset = load_dataset(args.data)
    try:
        spec = infer_spec(
            dataset.frame,
            target=args.target,
            margin=args.margin,
            max_categories=args.max_categories,
            source_format=dataset.format,
        )
    except ValueError as exc:
        print(f"mlops-airflow: {exc}", file=sys.stderr)
        return 1
    text = dump_spec_yaml(spec, source=args.data)
    load_validation_spec(text)  # what we write must load: a bug here should not reach a DAG
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out}: {len(spec['columns'])} columns inferred from {args.data} ({dataset.rows} rows); "
          "review the ranges and allowed values before use")
    return 0


def bundled_files() -> tuple[Path, Path]:
    """The example DAGs and include/ folders: from the installed package, or this checkout."""
    bundled = resources.files("mlops_airflow") / "_bundled"
    dags, include = Path(str(bundled / "dags")), Path(str(bundled / "include"))
    if dags.is_dir():
        return dags, include
    root = Path(__file__).resolve().parent.parent  # an editable install of the repository
    return root / "dags", root / "include"


def cmd_init(args: argparse.Namespace) -> int:
    dags, include = bundled_files()
    target = Path(args.dags_folder).expanduser().resolve()
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for source in sorted(dags.glob("*.py")):
        destination = target / source.name
        if destination.exists() and not args.force:
            print(f"skip {destination} (exists; --force to overwrite)")
            continue
        shutil.copy2(source, destination)
        copied.append(destination)
    for source in sorted(p for p in include.rglob("*") if p.is_file() and p.suffix in {".yaml", ".csv"}):
        destination = target / "include" / source.relative_to(include)
        if destination.exists() and not args.force:
            print(f"skip {destination} (exists; --force to overwrite)")
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        copied.append(destination)
    for path in copied:
        print(f"wrote {path}")
    print(f"{len(copied)} files copied into {target}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlops-airflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", help="registry root (default: %(default)s from settings)", default=None)
    commands = parser.add_subparsers(dest="command", required=True)

    models = commands.add_parser("models", help="registered models").add_subparsers(dest="action", required=True)
    listing = models.add_parser("list", help="list models")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_models_list)
    show = models.add_parser("show", help="one version of a model")
    show.add_argument("name")
    which = show.add_mutually_exclusive_group()
    which.add_argument("--version", type=int)
    which.add_argument("--alias")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_models_show)

    rollback = models.add_parser("rollback", help="put an earlier version back behind the champion alias")
    rollback.add_argument("name")
    rollback.add_argument("--to", type=int, help="the version to put back (default: the previous champion)")
    rollback.add_argument("--reason", default="manual rollback")
    rollback.add_argument("--by", help="who decides (default: the current user)")
    rollback.add_argument("--server-url", help="the model server to wait for (default from settings)")
    rollback.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the server")
    rollback.add_argument("--no-wait", action="store_true", help="move the alias only")
    rollback.set_defaults(func=cmd_models_rollback)

    runs = commands.add_parser("runs", help="recorded pipeline runs").add_subparsers(dest="action", required=True)
    run_show = runs.add_parser("show", help="what a run did (the latest by default)")
    run_show.add_argument("name")
    run_show.add_argument("--run-id")
    run_show.add_argument("--json", action="store_true")
    run_show.set_defaults(func=cmd_runs_show)

    gate = commands.add_parser("gate", help="people in the loop").add_subparsers(dest="action", required=True)
    override = gate.add_parser("override", help="bless a rejected candidate, with a reason (audited)")
    override.add_argument("name")
    override.add_argument("--candidate", required=True, help="the candidate's sha256")
    override.add_argument("--reason", required=True)
    override.add_argument("--by", help="who decides (default: the current user)")
    override.add_argument("--verdict", help="the verdict id (default: the newest)")
    override.set_defaults(func=cmd_gate_override)

    serve = commands.add_parser("serve", help="serve the model behind an alias over HTTP")
    serve.add_argument("name")
    serve.add_argument("--alias", default="champion")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8765)
    serve.set_defaults(func=cmd_serve)

    init = commands.add_parser("init", help="copy the example DAGs and include/ files into a DAGs folder")
    init.add_argument("dags_folder")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.set_defaults(func=cmd_init)

    suite = commands.add_parser("suite", help="data validation specs").add_subparsers(dest="action", required=True)
    infer = suite.add_parser("infer", help="write a starting validation spec profiled from a dataset")
    infer.add_argument("data", help="a data_uri: .csv/.parquet path or s3:// URI (* matches several files)")
    infer.add_argument("--out", required=True, help="the YAML file to write, e.g. include/trips_validation.yaml")
    infer.add_argument("--target", help="the label column (must exist; integer labels become allowed values)")
    infer.add_argument("--margin", type=float, default=0.1, help="widen observed ranges by this fraction (default: 0.1)")
    infer.add_argument("--max-categories", type=int, default=50,
                       help="list text values as allowed up to this many distinct ones (default: 50)")
    infer.add_argument("--force", action="store_true", help="overwrite an existing file")
    infer.set_defaults(func=cmd_suite_infer)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MlopsError as exc:
        print(f"mlops-airflow: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

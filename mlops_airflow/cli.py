"""The ``mlops-airflow`` command.

    mlops-airflow models list [--json] [--match PATTERN] [--limit N] [--offset K]
    mlops-airflow models reindex [--match PATTERN] [--json]
    mlops-airflow models show NAME [--version N | --alias A] [--json]
    mlops-airflow models rollback NAME [--to VERSION] [--reason TEXT] [--by WHO]
                                  [--target local|kubernetes|none] [--namespace NS] [--image IMAGE] ...
    mlops-airflow models gc NAME [--keep N] [--older-than DAYS] [--grace DAYS] [--dry-run] [--json]
    mlops-airflow runs show NAME [--run-id ID] [--json]
    mlops-airflow gate override NAME --candidate SHA --reason TEXT [--by WHO] [--verdict ID]
    mlops-airflow serve [NAME ...] [--alias champion | --version N [--expect-sha256 HEX]] [--host H] [--port P]
                       [--workers N] [--token-file F] [--max-body-bytes B] [--skew-policy refuse|warn]
                       [--log-sample-rate R] ...   (each flag also from an environment variable)
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
from pathlib import Path
from typing import Any

from mlops_airflow import settings
from mlops_airflow.exceptions import ConfigError, MlopsError, ModelNotFound


def _registry(args: argparse.Namespace) -> Any:
    from mlops_airflow.registry import open_registry

    return open_registry(args.registry or settings.registry_uri())


def _count(least: int) -> Any:
    """An argparse type: a whole number >= ``least``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is below {least}")
        return value

    return parse


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True, default=str))


def cmd_models_list(args: argparse.Namespace) -> int:
    from mlops_airflow.registry.overview import model_listing

    registry = _registry(args)
    listing = model_listing(registry, match=args.match, offset=args.offset, limit=args.limit)
    rows = listing.rows
    if listing.unindexed:
        print(f"note: {listing.unindexed} model(s) have no index summary and were read from their version files; "
              "`mlops-airflow models reindex` makes listing them fast", file=sys.stderr)
    if args.json:
        _print_json(rows)
    elif not listing.total:
        print(f"no models{f' matching {args.match!r}' if args.match else ''} in {registry.store.uri}")
    else:
        print(f"{'NAME':<28} {'VERSIONS':>8} {'LATEST':>6}  {'TASK':<11} ALIASES")
        for row in rows:
            aliases = ", ".join(f"{a}=v{v}" for a, v in sorted(row["aliases"].items())) or "-"
            print(f"{row['name']:<28} {row['versions']:>8} {row['latest']:>6}  {row['task_type'] or '-':<11} {aliases}")
    if len(rows) < listing.total:  # on stderr: the table on stdout stays the same for scripts
        shown = f"{listing.offset + 1}-{listing.offset + len(rows)}" if rows else "none"
        follow = f"; --offset {listing.offset + len(rows)} for the next" if listing.more else ""
        print(f"models {shown} of {listing.total}{follow}", file=sys.stderr)
    return 0


def cmd_models_reindex(args: argparse.Namespace) -> int:
    report = _registry(args).index.rebuild(args.match)
    if args.json:
        _print_json(report)
        return 0
    print(f"{report['models']} model(s) in {report['folders']} folder(s): {report.get('written', 0)} summaries written, "
          f"{report.get('unchanged', 0)} already right, {report['orphans_removed'] + report.get('removed', 0)} removed, "
          f"{report['abandoned_markers_removed']} abandoned change marker(s) cleared")
    if report.get("contended"):
        print(f"{report['contended']} model(s) were changing meanwhile; their own writers update them",
              file=sys.stderr)
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    from mlops_airflow.registry.overview import version_view

    registry = _registry(args)
    manifest = registry.resolve(args.name, version=args.version, alias=args.alias)
    shown = version_view(registry, args.name, manifest)
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

    kind = "none" if args.no_wait else args.target
    registry = _registry(args)
    target: Any = None
    if kind == "local":
        from mlops_airflow.deploy.local import LocalServerTarget

        target = LocalServerTarget(args.server_url or settings.server_url(), timeout=args.timeout)
    elif kind == "kubernetes":
        from mlops_airflow.deploy.kubernetes import target_from_connection

        try:
            options = json.loads(args.kubernetes_options) if args.kubernetes_options else {}
        except ValueError as exc:
            raise ConfigError(f"--kubernetes-options is not a JSON object: {exc}") from None
        if not isinstance(options, dict):
            raise ConfigError(f"--kubernetes-options must be a JSON object, got {args.kubernetes_options}")
        target = target_from_connection(registry, args.name, conn_id=args.kubernetes_conn_id,
                                        namespace=args.namespace, image=args.image, replicas=args.replicas,
                                        rollout_timeout=args.rollout_timeout, options=options, inherit=True)
    result = run_rollback(registry, model_name=args.name, to_version=args.to, by=args.by or getpass.getuser(),
                          reason=args.reason, target=target)
    if result["rolled_back"]:
        print(f"{args.name}@champion: v{result['previous_version']} -> v{result['version']} ({result['reason']})")
    else:
        print(f"{args.name}: {result['reason']}")
    return 0


def cmd_models_gc(args: argparse.Namespace) -> int:
    import getpass
    from datetime import timedelta

    from mlops_airflow.registry.gc import collect_garbage

    registry = _registry(args)
    registry.latest(args.name)  # a missing model is an error, not an empty collection
    older = None if args.older_than is None else timedelta(days=args.older_than)
    grace = None if args.grace is None else timedelta(days=args.grace)
    report = collect_garbage(registry, args.name, keep=args.keep, older_than=older, grace=grace,
                             dry_run=args.dry_run, by=getpass.getuser())
    if args.json:
        _print_json(report)
        return 0
    plan = report["plan"]
    verb = "would delete" if args.dry_run else "deleted"
    done = plan if args.dry_run else report["deleted"]
    print(f"{args.name}: {verb} versions {done['versions'] or '-'}, {len(done['candidates'])} candidate(s), "
          f"{len(done['datasets'])} dataset snapshot(s), {len(done['leftovers'])} crash leftover(s) "
          f"(grace {plan['grace_days']:g} days)")
    if args.dry_run:  # each path and why, so a person can check the policy before running it
        for path, why in plan["reasons"].items():
            print(f"  would delete {path}: {why}")
    print("  kept: " + ", ".join(f"v{v} ({why})" for v, why in plan["protected"].items()))
    for path, why in plan["kept"].items():
        print(f"  kept {path}: {why}")
    for version, why in report["skipped"].items():
        print(f"  skipped v{version}: {why}")
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
    from mlops_airflow.serving.server import run

    run(serve_config(args))
    return 0


def serve_config(args: argparse.Namespace) -> Any:
    """The server settings ``serve``'s arguments describe: flags win over their environment variables."""
    from mlops_airflow.serving.config import ServerConfig, settings_from_env

    given = {key: getattr(args, key) for key in _SERVE_SETTINGS if getattr(args, key) is not None}
    merged = settings_from_env()
    if "alias" in given:  # an explicit --alias un-pins a version set in the environment
        merged.pop("version", None)
        merged.pop("expect_sha256", None)
    merged.update(given)
    names = list(args.names or [])
    if len(names) == 1 and not set(names[0]) & set("*?["):  # one model: its own routes, loaded at start
        merged.pop("models", None)
        merged["model_name"] = names[0]
    elif names:  # several names or patterns: every model they match, loaded on demand
        merged.pop("model_name", None)
        merged["models"] = tuple(names)
    return ServerConfig(registry_uri=args.registry or settings.registry_uri(), **merged)


#: ``serve`` flags that map one to one onto ServerConfig fields (and so onto environment variables).
_SERVE_SETTINGS = ("alias", "version", "expect_sha256", "host", "port", "workers", "threads", "poll_interval",
                   "skew_policy", "max_models", "memory_budget_mb", "load_timeout", "metrics_max_models",
                   "max_rows", "max_columns", "max_body_bytes", "token_file", "public_metrics", "log_sample_rate", "log_uri",
                   "log_flush_rows", "log_flush_seconds", "log_level")


def _add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    # defaults stay None: serve_config() fills what no flag gave from the environment, so a bad
    # variable fails `serve` with its name, not every other command at parse time
    from mlops_airflow.serving.config import ENV

    def flag(name: str, convert: Any, help_text: str, *, add: Any = serve.add_argument, **extra: Any) -> None:
        option, env = f"--{name.replace('_', '-')}", ENV[name]
        if convert is bool:
            add(option, action="store_true", default=None, help=f"{help_text} (env {env})")
        else:
            add(option, type=convert, default=None, help=f"{help_text} (env {env})", **extra)

    serve.add_argument("names", nargs="*", metavar="NAME",
                       help="one model (env MLOPS_AIRFLOW_MODEL_NAME), or several names / glob patterns "
                            "(env MLOPS_AIRFLOW_SERVER_MODELS, comma separated); none: every model of the registry")
    which = serve.add_mutually_exclusive_group()
    flag("alias", str, "the alias to follow (default champion)", add=which.add_argument)
    flag("version", int, "serve exactly this version, never following an alias", add=which.add_argument)
    flag("expect_sha256", str, "with --version: refuse to serve unless the version has this sha256")
    flag("host", str, "interface to listen on (default 127.0.0.1)")
    flag("port", int, "port to listen on (default 8765)")
    flag("workers", int, "worker processes, each with its own copy of the model (default 1)")
    flag("threads", int, "OpenMP/BLAS threads per worker (default 1: best for small requests)")
    flag("poll_interval", float, "seconds between reads of the alias (default 1)")
    flag("skew_policy", str, "library version skew between model and runtime: refuse or warn (default warn)",
         choices=["refuse", "warn"])
    flag("max_rows", int, "rows per request at most (default 10000)")
    flag("max_columns", int, "column names per request at most, unless the model has more (default 2048)")
    flag("max_body_bytes", int, "request body size limit in bytes, else 413 (default 10 MiB)")
    flag("token_file", str, "file holding the bearer token clients must send (else env MLOPS_AIRFLOW_SERVER_TOKEN)")
    flag("public_metrics", bool, "serve /metrics without the token")
    flag("log_sample_rate", float, "fraction of requests whose rows and predictions are logged, 0..1 (default 0)")
    flag("log_uri", str, "where prediction logs go (default the registry root)")
    flag("log_flush_rows", int, "write the prediction log when this many rows wait (default 1000)")
    flag("log_flush_seconds", float, "... or after this many seconds (default 10)")
    flag("log_level", str, "log level (default info)", choices=["critical", "error", "warning", "info", "debug"])
    flag("max_models", int, "many models: at most this many loaded at once, least recently used evicted (default 1000)")
    flag("memory_budget_mb", float, "many models: estimated model memory per worker at most (default: half the "
                                    "memory available)")
    flag("load_timeout", float, "seconds a request waits for its model to load, else 503 (default 30)")
    flag("metrics_max_models", int, "per-model metric series for at most this many models (default 100)")


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


bundled_files = settings.bundled_files


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
    listing = models.add_parser("list", help="list models (sorted by name)")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--match", metavar="PATTERN",
                         help="only names starting with PATTERN, or matching it as a glob if it has * ? or [")
    listing.add_argument("--limit", type=_count(1), metavar="N", help="at most N models (default: all)")
    listing.add_argument("--offset", type=_count(0), default=0, metavar="K", help="skip the first K models")
    listing.set_defaults(func=cmd_models_list)
    reindex = models.add_parser("reindex", help="rebuild the model index from the version and alias files "
                                                "(once after upgrading; after changes made by other means)")
    reindex.add_argument("--match", metavar="PATTERN", help="only models matching PATTERN (prefix or glob)")
    reindex.add_argument("--json", action="store_true")
    reindex.set_defaults(func=cmd_models_reindex)
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
    rollback.add_argument("--target", choices=["local", "kubernetes", "none"], default="local",
                          help="where the version must come up: the local model server (default), a Kubernetes "
                               "Deployment, or none (move the alias only)")
    rollback.add_argument("--server-url", help="local: the model server to wait for (default from settings)")
    rollback.add_argument("--timeout", type=float, default=60.0, help="local: seconds to wait for the server")
    rollback.add_argument("--no-wait", action="store_true", help="move the alias only (= --target none)")
    rollback.add_argument("--kubernetes-conn-id", default="kubernetes_default",
                          help="kubernetes: the Airflow connection (kube_config / in_cluster, namespace)")
    rollback.add_argument("--namespace", help="kubernetes: default the connection's, else 'default'")
    rollback.add_argument("--image", help="kubernetes: the model server image (default: what the Deployment runs)")
    rollback.add_argument("--replicas", type=int, help="kubernetes: replicas (default: what the Deployment has)")
    rollback.add_argument("--rollout-timeout", type=float, default=600.0,
                          help="kubernetes: seconds the rollout may take before it is undone")
    rollback.add_argument("--kubernetes-options", metavar="JSON",
                          help='kubernetes: further settings as the deploy operator\'s kubernetes_options, '
                               'e.g. \'{"name": "taxi-server", "service_port": 80}\'; token_secret, env_secret, '
                               'registry_uri and env default to what the Deployment and its ConfigMap have')
    rollback.set_defaults(func=cmd_models_rollback)

    gc = models.add_parser("gc", help="delete old versions and unreferenced candidates (never an aliased version)")
    gc.add_argument("name")
    gc.add_argument("--keep", type=int, default=5, help="keep the newest N versions (default: %(default)s)")
    gc.add_argument("--older-than", type=float, metavar="DAYS",
                    help="delete only versions, candidates and datasets older than DAYS")
    gc.add_argument("--grace", type=float, metavar="DAYS",
                    help="never delete a candidate, dataset or crash leftover written within DAYS "
                         "(default: --older-than, else 7)")
    gc.add_argument("--dry-run", action="store_true", help="show what would be deleted and why, delete nothing")
    gc.add_argument("--json", action="store_true")
    gc.set_defaults(func=cmd_models_gc)

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

    serve = commands.add_parser("serve", help="serve the model behind an alias (or one pinned version) over HTTP")
    _add_serve_arguments(serve)
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

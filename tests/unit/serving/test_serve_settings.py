"""`mlops-airflow serve` flags, their environment variables and the settings the workers receive."""

from __future__ import annotations

import pytest

from mlops_airflow.cli import build_parser, serve_config
from mlops_airflow.exceptions import ConfigError
from mlops_airflow.serving.config import CONFIG_ENV, ENV, ServerConfig

SHA = "a" * 64


def config(argv: list[str]) -> ServerConfig:
    return serve_config(build_parser().parse_args(["--registry", "/tmp/reg", "serve", *argv]))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in [*ENV.values(), "MLOPS_AIRFLOW_SERVER_TOKEN", CONFIG_ENV]:
        monkeypatch.delenv(variable, raising=False)


def test_defaults() -> None:
    got = config(["taxi"])
    assert (got.model_name, got.alias, got.version, got.port, got.workers) == ("taxi", "champion", None, 8765, 1)
    assert (got.skew_policy, got.log_sample_rate, got.token(), got.pinned) == ("warn", 0.0, None, False)


def test_every_flag_is_parsed() -> None:
    got = config(["taxi", "--version", "3", "--expect-sha256", SHA, "--host", "0.0.0.0", "--port", "8080",
                  "--workers", "2", "--poll-interval", "0.5", "--skew-policy", "refuse", "--max-rows", "50",
                  "--max-body-bytes", "2048", "--public-metrics", "--log-sample-rate", "0.25", "--log-uri", "/tmp/l",
                  "--log-flush-rows", "10", "--log-flush-seconds", "2", "--log-level", "debug"])
    assert got == ServerConfig(registry_uri="/tmp/reg", model_name="taxi", version=3, expect_sha256=SHA,
                               host="0.0.0.0", port=8080, workers=2, poll_interval=0.5, skew_policy="refuse",
                               max_rows=50, max_body_bytes=2048, public_metrics=True, log_sample_rate=0.25,
                               log_uri="/tmp/l", log_flush_rows=10, log_flush_seconds=2.0, log_level="debug")
    assert got.pinned


def test_the_skew_policy_flag_accepts_only_refuse_or_warn(capsys: pytest.CaptureFixture[str]) -> None:
    assert config(["taxi", "--skew-policy", "refuse"]).skew_policy == "refuse"
    with pytest.raises(SystemExit):
        config(["taxi", "--skew-policy", "ignore"])
    assert "invalid choice: 'ignore'" in capsys.readouterr().err


def test_every_setting_comes_from_the_environment_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"version": "4", "expect_sha256": SHA, "host": "0.0.0.0", "port": "8080", "workers": "3",
           "poll_interval": "2", "skew_policy": "refuse", "max_rows": "7", "max_columns": "64", "max_body_bytes": "4096",
           "public_metrics": "true", "log_sample_rate": "0.5", "log_uri": "s3://b/logs", "log_flush_rows": "5",
           "log_flush_seconds": "1.5", "log_level": "warning", "max_models": "50", "memory_budget_mb": "256",
           "load_timeout": "5", "metrics_max_models": "10"}
    for name, raw in env.items():
        monkeypatch.setenv(ENV[name], raw)
    got = config(["taxi"])
    assert (got.version, got.expect_sha256, got.host, got.port, got.workers, got.poll_interval) == (
        4, SHA, "0.0.0.0", 8080, 3, 2.0)
    assert (got.skew_policy, got.max_rows, got.max_body_bytes, got.public_metrics) == ("refuse", 7, 4096, True)
    assert got.max_columns == 64
    assert (got.log_sample_rate, got.log_uri, got.log_flush_rows, got.log_flush_seconds, got.log_level) == (
        0.5, "s3://b/logs", 5, 1.5, "warning")
    assert (got.max_models, got.memory_budget_bytes, got.load_timeout, got.metrics_max_models) == (50, 256 << 20, 5.0, 10)
    assert config(["taxi", "--port", "9000", "--version", "5"]).port == 9000
    # an explicit --alias un-pins the version the environment sets
    unpinned = config(["taxi", "--alias", "challenger"])
    assert (unpinned.alias, unpinned.version, unpinned.expect_sha256) == ("challenger", None, None)
    assert set(env) | {"alias", "token_file", "model_name", "models", "threads"} == set(ENV)
    monkeypatch.setenv(ENV["model_name"], "other")
    assert config(["taxi"]).model_name == "taxi" and config([]).model_name == "other"


def test_no_name_several_names_or_patterns_serve_many_models(monkeypatch: pytest.MonkeyPatch) -> None:
    every = config([])
    assert (every.model_name, every.models) == (None, ())
    assert config(["store_*", "churn"]).models == ("store_*", "churn")
    assert config(["a", "b"]).model_name is None
    assert config(["store_*"]).model_name is None  # one pattern is many models
    monkeypatch.setenv(ENV["models"], "store_*, churn")
    assert config([]).models == ("store_*", "churn")
    assert config(["taxi"]).model_name == "taxi" and config(["taxi"]).models == ()  # a name given wins
    with pytest.raises(ConfigError, match=r"a pinned version \(--version N\) needs exactly one model name"):
        config(["a*", "--version", "1"])
    with pytest.raises(ConfigError, match="may hold only name characters"):
        config(["a/../b*"])
    many = config(["store_*", "--max-models", "3", "--memory-budget-mb", "64", "--workers", "2"])
    assert ServerConfig.from_env({CONFIG_ENV: many.to_env()}) == many


def test_bad_settings_name_the_variable_or_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV["port"], "eighty")
    with pytest.raises(ConfigError, match="MLOPS_AIRFLOW_SERVER_PORT='eighty' is not a valid port"):
        config(["taxi"])
    build_parser().parse_args(["models", "list"])  # other commands do not care
    monkeypatch.delenv(ENV["port"])
    with pytest.raises(ConfigError, match="expect_sha256 needs a pinned version"):
        config(["taxi", "--expect-sha256", SHA])
    with pytest.raises(ConfigError, match="expect_sha256 must be 64 lowercase hex digits"):
        config(["taxi", "--version", "1", "--expect-sha256", "abc"])
    with pytest.raises(ConfigError, match=r"log_sample_rate must be in \[0, 1\], got 1.5"):
        config(["taxi", "--log-sample-rate", "1.5"])
    with pytest.raises(ConfigError, match="workers must be at least 1"):
        config(["taxi", "--workers", "0"])
    with pytest.raises(SystemExit):
        config(["taxi", "--alias", "a", "--version", "1"])


def test_the_token_comes_from_the_file_or_the_environment(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLOPS_AIRFLOW_SERVER_TOKEN", "from-env")
    assert config(["taxi"]).token() == "from-env"
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert config(["taxi", "--token-file", str(token_file)]).token() == "from-file"
    token_file.write_text("  \n")
    with pytest.raises(ConfigError, match="is empty"):
        config(["taxi", "--token-file", str(token_file)]).token()
    with pytest.raises(ConfigError, match="cannot read the token file"):
        config(["taxi", "--token-file", str(tmp_path / "absent")]).token()


def test_workers_get_the_settings_but_never_the_token(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    token_file = tmp_path / "token"
    token_file.write_text("the-secret")
    got = config(["taxi", "--version", "2", "--workers", "2", "--token-file", str(token_file)])
    text = got.to_env()
    assert "the-secret" not in text
    assert ServerConfig.from_env({CONFIG_ENV: text}) == got
    with pytest.raises(ConfigError, match="is not set: start the server with `mlops-airflow serve`"):
        ServerConfig.from_env({})


def test_the_column_limit_defaults_to_the_request_checks_own() -> None:
    from mlops_airflow.serving.requests import DEFAULT_MAX_COLUMNS

    assert ServerConfig(registry_uri="/tmp/r").max_columns == DEFAULT_MAX_COLUMNS

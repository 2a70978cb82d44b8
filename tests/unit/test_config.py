"""WorkerConfig: YAML loading, env overrides, one-line errors, secrets kept out of logs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.config import (
    REDACTED,
    BatchConfig,
    ServiceConfig,
    WorkerConfig,
    config_from_dict,
    load_config,
)
from infinitic_py.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "worker.example.yaml"
MINIMAL = "services:\n  - class: examples.email_service:EmailService\n"


def write(tmp_path: Path, text: str, name: str = "worker.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path | None, *, env: dict[str, str] | None = None,
             overrides: dict[str, Any] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env if env is not None else {}, overrides=overrides)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def dict_error(data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data, "worker.yaml")
    message = str(info.value)
    assert "\n" not in message, message
    return message


def svc(**fields: Any) -> dict[str, Any]:
    return {"services": [{"class": "examples.email_service:EmailService", **fields}]}


# ---------------------------------------------------------------------------------- loading


def test_minimal_file_gets_every_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={})
    assert isinstance(config, WorkerConfig)
    assert config.pulsar.url == "pulsar://127.0.0.1:6650"
    assert config.pulsar.admin_url == "http://127.0.0.1:8080"
    assert (config.pulsar.tenant, config.pulsar.namespace) == ("public", "default")
    assert config.pulsar.consumer.subscription_type == "shared"
    assert config.pulsar.consumer.receiver_queue_size == 2000
    assert config.pulsar.consumer.max_redeliveries == 10
    assert config.pulsar.producer.compression == "none"
    assert config.worker.max_buffered_messages == 10000
    assert config.worker.http_port == 9090
    assert config.worker.log_format == "auto"
    (service,) = config.services
    assert service.class_path == "examples.email_service:EmailService"
    assert service.concurrency == 10
    assert service.timeout_seconds is None
    assert service.retry is None
    assert service.batch == {}


def test_example_file_loads_and_matches_its_comments() -> None:
    config = load_config(EXAMPLE, env={})
    (service,) = config.services
    assert service.class_path == "examples.email_service:EmailService"
    assert service.batch == {"send": BatchConfig(max_messages=100, max_seconds=1.0)}
    assert service.retry is not None
    assert service.retry.ignored_exceptions == ("ValueError",)
    assert service.retry.exception_types() == (ValueError,)
    assert config.worker.http_port == 9090


def test_ints_are_accepted_for_floats() -> None:
    config = config_from_dict(svc(timeout_seconds=3))
    assert config.services[0].timeout_seconds == 3.0


def test_worker_name_defaults_to_hostname() -> None:
    import socket

    config = config_from_dict(svc())
    assert config.worker.resolved_name() == socket.gethostname()
    named = config_from_dict({**svc(), "worker": {"name": "w-1"}})
    assert named.worker.resolved_name() == "w-1"


def test_config_path_env_is_used_when_no_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    config = load_config(None, env={"INFINITIC_CONFIG": str(path)})
    assert config.services[0].concurrency == 10


def test_no_file_and_no_services_says_so() -> None:
    assert error_of(None) == "<env>: missing required key 'services' at top level"


# ------------------------------------------------------------------------- file-level errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    assert error_of(path) == f"{path}: config file not found"


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert error_of(path).startswith(f"{path}: file is empty")


def test_comment_only_file_is_empty(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing here\n")
    assert "file is empty" in error_of(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    assert error_of(path) == f"{path}: expected a mapping at top level, got a list"


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "services:\n  - class: a:B\n   concurrency: 3\n")
    message = error_of(path)
    assert message.startswith(f"{path}: invalid YAML at line 3, column ")
    assert "Traceback" not in message


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "    concurrency: 1\n    concurrency: 2\n")
    assert error_of(path) == f"{path}: invalid YAML at line 4, column 5: duplicate key 'concurrency'"


def test_source_name_is_the_path_given(tmp_path: Path) -> None:
    path = write(tmp_path, "services: []\n", name="prod.yaml")
    assert error_of(path).startswith(f"{path}: ")


# ------------------------------------------------------------------------- schema errors


def test_unknown_key_suggests_the_close_one() -> None:
    assert dict_error(svc(concurency=3)) == (
        "worker.yaml: unknown key 'concurency' at services[0] (did you mean 'concurrency'?)"
    )


def test_unknown_top_level_key() -> None:
    assert dict_error({**svc(), "pulsr": {}}) == (
        "worker.yaml: unknown key 'pulsr' at top level (did you mean 'pulsar'?)"
    )


def test_unknown_key_without_close_match() -> None:
    assert dict_error({**svc(), "worker": {"zzz": 1}}) == "worker.yaml: unknown key 'zzz' at worker"


def test_unknown_nested_key() -> None:
    message = dict_error({**svc(), "pulsar": {"consumer": {"receiver_queue": 5}}})
    assert message == (
        "worker.yaml: unknown key 'receiver_queue' at pulsar.consumer "
        "(did you mean 'receiver_queue_size'?)"
    )


def test_wrong_type_names_expectation_and_value() -> None:
    assert dict_error(svc(concurrency="ten")) == (
        "worker.yaml: services[0].concurrency: expected int >= 1, got 'ten'"
    )


def test_constraint_violation() -> None:
    assert dict_error(svc(concurrency=0)) == (
        "worker.yaml: services[0].concurrency: expected int >= 1, got 0"
    )


def test_bool_is_not_an_int() -> None:
    assert dict_error(svc(concurrency=True)) == (
        "worker.yaml: services[0].concurrency: expected int >= 1, got true"
    )


def test_optional_float_constraint() -> None:
    assert dict_error(svc(timeout_seconds=0)) == (
        "worker.yaml: services[0].timeout_seconds: expected number > 0 or null, got 0"
    )


def test_port_range() -> None:
    assert dict_error({**svc(), "worker": {"http_port": 70000}}) == (
        "worker.yaml: worker.http_port: expected int from 0 to 65535, got 70000"
    )


def test_choice() -> None:
    message = dict_error({**svc(), "pulsar": {"consumer": {"subscription_type": "exclusive"}}})
    assert message == (
        "worker.yaml: pulsar.consumer.subscription_type: expected one of 'key_shared', 'shared', "
        "got 'exclusive'"
    )


def test_missing_class() -> None:
    assert dict_error({"services": [{"concurrency": 1}]}) == (
        "worker.yaml: missing required key 'class' at services[0]"
    )


def test_services_must_not_be_empty() -> None:
    assert dict_error({"services": []}) == (
        "worker.yaml: services: expected a non-empty list, got an empty list"
    )


def test_services_must_be_a_list() -> None:
    assert dict_error({"services": {"class": "a:B"}}) == (
        "worker.yaml: services: expected a non-empty list, got a mapping"
    )


def test_error_inside_batch_names_the_method() -> None:
    data = svc(batch={"send": {"max_messages": 10}, "notify": {"max_messages": 0}})
    assert dict_error(data) == (
        "worker.yaml: services[0].batch.notify.max_messages: expected int >= 1 or null, got 0"
    )


def test_unknown_key_inside_batch() -> None:
    data = svc(batch={"send": {"max_message": 10}})
    assert dict_error(data) == (
        "worker.yaml: unknown key 'max_message' at services[0].batch.send "
        "(did you mean 'max_messages'?)"
    )


def test_retry_errors() -> None:
    assert dict_error(svc(retry={"maximum_retries": -1})) == (
        "worker.yaml: services[0].retry.maximum_retries: expected int >= 0, got -1"
    )
    assert dict_error(svc(retry={"random_factor": 2})) == (
        "worker.yaml: services[0].retry.random_factor: expected number from 0 to 1, got 2"
    )
    assert dict_error(svc(retry={"minimum_seconds": 10, "maximum_seconds": 5})) == (
        "worker.yaml: services[0].retry.maximum_seconds: expected >= minimum_seconds (10), got 5"
    )
    assert dict_error(svc(retry={"ignored_exceptions": ["not a name"]})) == (
        "worker.yaml: services[0].retry.ignored_exceptions[0]: expected an exception name "
        "(ValueError or pkg.module.Error), got 'not a name'"
    )


def test_second_service_is_named_by_index() -> None:
    data = {"services": [{"class": "a:B"}, {"class": "c:D", "concurrency": -2}]}
    assert dict_error(data) == "worker.yaml: services[1].concurrency: expected int >= 1, got -2"


# ------------------------------------------------------------------------- semantic checks


@pytest.mark.parametrize("url", ["http://x:1", "pulsar://", "memory://", "localhost:6650"])
def test_bad_pulsar_url(url: str) -> None:
    message = dict_error({**svc(), "pulsar": {"url": url}})
    assert message.startswith("worker.yaml: pulsar.url: expected pulsar://HOST:PORT")
    assert repr(url) in message


@pytest.mark.parametrize("url", ["pulsar://h:6650", "pulsar+ssl://h:6651", "memory://test"])
def test_good_pulsar_urls(url: str) -> None:
    assert config_from_dict({**svc(), "pulsar": {"url": url}}).pulsar.url == url


def test_bad_admin_url() -> None:
    message = dict_error({**svc(), "pulsar": {"admin_url": "localhost:8080"}})
    assert message.startswith("worker.yaml: pulsar.admin_url: expected http://")


def test_admin_url_may_be_null() -> None:
    assert config_from_dict({**svc(), "pulsar": {"admin_url": None}}).pulsar.admin_url is None


@pytest.mark.parametrize("path", ["examples.email_service", "a:", ":B", "a b:C", "a:B:C"])
def test_class_path_format(path: str) -> None:
    assert dict_error({"services": [{"class": path}]}) == (
        f"worker.yaml: services[0].class: expected a 'module:Class' import path, got {path!r}"
    )


def test_duplicate_services() -> None:
    data = {"services": [{"class": "a:B"}, {"class": "a:B"}]}
    assert dict_error(data) == (
        "worker.yaml: services[1]: duplicates services[0] ('a:B'); give one a distinct name"
    )
    ok = {"services": [{"class": "a:B"}, {"class": "a:B", "name": "B2"}]}
    assert len(config_from_dict(ok).services) == 2


def test_auth_params_without_plugin() -> None:
    assert dict_error({**svc(), "pulsar": {"auth_params": "x"}}) == (
        "worker.yaml: pulsar.auth_params: is set but pulsar.auth_plugin is null"
    )


# ------------------------------------------------------------------------- environment


def test_env_overrides_scalars_with_yaml_types(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    config = load_config(path, env={
        "INFINITIC_PULSAR__URL": "pulsar://broker:6650",
        "INFINITIC_WORKER__HTTP_PORT": "9100",
        "INFINITIC_PULSAR__CONSUMER__RECEIVER_QUEUE_SIZE": "500",
        "INFINITIC_PULSAR__TLS_ALLOW_INSECURE_CONNECTION": "true",
        "INFINITIC_PULSAR__ADMIN_URL": "null",
        "INFINITIC_PULSAR__CONSUMER__NACK_REDELIVERY_DELAY_SECONDS": "2.5",
        "INFINITIC_WORKER__SHUTDOWN_GRACE_SECONDS": "1e1",
        "UNRELATED": "x",
    })
    assert config.pulsar.url == "pulsar://broker:6650"
    assert config.worker.http_port == 9100
    assert config.pulsar.consumer.receiver_queue_size == 500
    assert config.pulsar.tls_allow_insecure_connection is True
    assert config.pulsar.admin_url is None
    assert config.pulsar.consumer.nack_redelivery_delay_seconds == 2.5
    assert config.worker.shutdown_grace_seconds == 10.0


def test_env_string_keys_are_taken_verbatim(tmp_path: Path) -> None:
    # YAML 1.1 would read these as a bool and an int; a string key keeps the text.
    config = load_config(write(tmp_path, MINIMAL), env={
        "INFINITIC_PULSAR__TENANT": "no",
        "INFINITIC_PULSAR__NAMESPACE": "0123",
    })
    assert config.pulsar.tenant == "no"
    assert config.pulsar.namespace == "0123"


def test_env_can_set_a_section_absent_from_the_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL),
                         env={"INFINITIC_PULSAR__PRODUCER__COMPRESSION": "zstd"})
    assert config.pulsar.producer.compression == "zstd"


def test_env_services_by_index(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), env={
        "INFINITIC_SERVICES__0__CONCURRENCY": "4",
        "INFINITIC_SERVICES__0__BATCH__SEND__MAX_MESSAGES": "7",
        "INFINITIC_SERVICES__0__TIMEOUT_SECONDS": "2",
    })
    service = config.services[0]
    assert service.concurrency == 4
    assert service.batch == {"send": BatchConfig(max_messages=7)}
    assert service.timeout_seconds == 2.0


def test_env_service_index_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    message = error_of(path, env={"INFINITIC_SERVICES__3__CONCURRENCY": "4"})
    assert message.startswith("INFINITIC_SERVICES__3__CONCURRENCY: ")
    assert "index 3 does not exist" in message


def test_unknown_env_key_is_an_error_naming_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert error_of(path, env={"INFINITIC_WORKER__HTTP_PROT": "1"}) == (
        "INFINITIC_WORKER__HTTP_PROT: unknown key 'http_prot' at worker "
        "(did you mean INFINITIC_WORKER__HTTP_PORT?)"
    )
    assert error_of(path, env={"INFINITIC_PULSR__URL": "x"}) == (
        "INFINITIC_PULSR__URL: unknown key 'pulsr' at top level (did you mean INFINITIC_PULSAR__URL?)"
    )


def test_env_single_underscore_typo_is_caught(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    message = error_of(path, env={"INFINITIC_WORKER_HTTP_PORT": "1"})
    assert message.startswith("INFINITIC_WORKER_HTTP_PORT: not a config override")
    assert "did you mean INFINITIC_WORKER__HTTP_PORT?" in message


def test_env_without_double_underscore_is_not_an_override(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL),
                         env={"INFINITIC_CONFIG_DIR": "/etc", "INFINITIC_DEBUG": "1"})
    assert config.worker.http_port == 9090


def test_env_value_errors_name_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert error_of(path, env={"INFINITIC_WORKER__HTTP_PORT": "abc"}) == (
        f"{path}: worker.http_port: expected int from 0 to 65535, got 'abc' "
        "(set by INFINITIC_WORKER__HTTP_PORT)"
    )


def test_env_cannot_index_into_a_scalar(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL), env={"INFINITIC_WORKER__HTTP_PORT__X": "1"})
    assert message.startswith("INFINITIC_WORKER__HTTP_PORT__X: worker.http_port is a single value")


def test_env_wins_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "worker:\n  http_port: 1234\n")
    assert load_config(path, env={"INFINITIC_WORKER__HTTP_PORT": "4321"}).worker.http_port == 4321


def test_env_defaults_to_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFINITIC_WORKER__HTTP_PORT", "9191")
    assert load_config(write(tmp_path, MINIMAL)).worker.http_port == 9191


# ------------------------------------------------------------------------- overrides


def test_dotted_overrides_win_over_env(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    config = load_config(
        path,
        env={"INFINITIC_WORKER__HTTP_PORT": "4321"},
        overrides={"worker.http_port": 0, "services.0.concurrency": 2,
                   "pulsar": {"consumer": {"receiver_queue_size": 10}}},
    )
    assert config.worker.http_port == 0
    assert config.services[0].concurrency == 2
    assert config.pulsar.consumer.receiver_queue_size == 10
    assert config.pulsar.consumer.max_redeliveries == 10  # merged, not replaced


def test_unknown_override_key(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, MINIMAL), overrides={"worker.http_prt": 1})
    assert message == (
        "override 'worker.http_prt': unknown key 'http_prt' at worker (did you mean 'http_port'?)"
    )


def test_override_value_error_names_the_override(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    message = error_of(path, overrides={"services.0.concurrency": 0})
    assert message == (
        f"{path}: services[0].concurrency: expected int >= 1, got 0 "
        "(set by override 'services.0.concurrency')"
    )


def test_config_from_dict_does_not_mutate_its_input() -> None:
    data = svc(batch={"send": {"max_messages": 3}})
    config_from_dict(data, overrides={"services.0.batch.send.max_messages": 4})
    assert data == svc(batch={"send": {"max_messages": 3}})


# ------------------------------------------------------------------------- secrets


SECRET = "token:eyJ-very-secret"


def secret_config() -> WorkerConfig:
    return config_from_dict({**svc(), "pulsar": {
        "url": "pulsar+ssl://user:pw@broker:6651",
        "auth_plugin": "org.apache.pulsar.client.impl.auth.AuthenticationToken",
        "auth_params": SECRET,
    }})


def test_repr_and_str_do_not_leak_auth_params() -> None:
    config = secret_config()
    for text in (repr(config), str(config), repr(config.pulsar), str([config.pulsar])):
        assert SECRET not in text
        assert f"auth_params={REDACTED!r}" in text
    assert config.pulsar.auth_params == SECRET  # still usable


def test_rich_repr_masks_too() -> None:
    fields = dict(secret_config().pulsar.__rich_repr__())
    assert fields["auth_params"] == REDACTED


def test_redacted_masks_secrets_and_url_credentials() -> None:
    data = secret_config().redacted()
    assert data["pulsar"]["auth_params"] == REDACTED
    assert data["pulsar"]["url"] == f"pulsar+ssl://{REDACTED}@broker:6651"
    assert SECRET not in repr(data)
    assert data["services"][0]["class"] == "examples.email_service:EmailService"
    assert isinstance(data["services"], list)


def test_redacted_leaves_null_secret_alone() -> None:
    assert config_from_dict(svc()).redacted()["pulsar"]["auth_params"] is None


def test_to_dict_round_trips() -> None:
    config = secret_config()
    assert config_from_dict(config.to_dict()) == config


def test_auth_params_mapping_becomes_json() -> None:
    config = config_from_dict({**svc(), "pulsar": {
        "auth_plugin": "oauth2", "auth_params": {"issuer_url": "https://i", "audience": "a"}}})
    assert config.pulsar.auth_params_string() == '{"audience": "a", "issuer_url": "https://i"}'
    assert "https://i" not in repr(config)


def test_env_secret_not_echoed_in_errors(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    message = error_of(path, env={"INFINITIC_PULSAR__AUTH_PARAMS": SECRET})
    assert SECRET not in message
    assert "pulsar.auth_params: is set but pulsar.auth_plugin is null" in message


# ------------------------------------------------------------------------- helpers


def test_load_class_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"cannot import service class 'no_such_mod:X'"):
        ServiceConfig(class_path="no_such_mod:X").load_class()
    with pytest.raises(ConfigError, match="is not a class"):
        ServiceConfig(class_path="os.path:sep").load_class()
    assert ServiceConfig(class_path="collections:OrderedDict").load_class().__name__ == "OrderedDict"


def test_exception_types_resolve_builtins_and_dotted_names() -> None:
    config = config_from_dict(svc(retry={"ignored_exceptions": ["KeyError", "json.JSONDecodeError"]}))
    retry = config.services[0].retry
    assert retry is not None
    import json

    assert retry.exception_types() == (KeyError, json.JSONDecodeError)
    bad = config_from_dict(svc(retry={"ignored_exceptions": ["NotAnError"]})).services[0].retry
    assert bad is not None
    with pytest.raises(ConfigError, match="'NotAnError' is not an exception class"):
        bad.exception_types()


@given(st.integers(max_value=0))
def test_any_nonpositive_concurrency_is_one_readable_line(value: int) -> None:
    message = dict_error(svc(concurrency=value))
    assert message == f"worker.yaml: services[0].concurrency: expected int >= 1, got {value}"


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20))
def test_any_unknown_service_key_is_named(key: str) -> None:
    known = {f.encode_name for f in msgspec.structs.fields(ServiceConfig)}
    if key in known:
        return
    message = dict_error(svc(**{key: 1}))
    assert re.fullmatch(
        rf"worker\.yaml: unknown key '{key}' at services\[0\]( \(did you mean '\w+'\?\))?",
        message,
    ), message


def test_gc_gen0_threshold_defaults_and_env_override(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    assert load_config(path, env={}).worker.gc_gen0_threshold == 10000
    config = load_config(path, env={"INFINITIC_WORKER__GC_GEN0_THRESHOLD": "0"})
    assert config.worker.gc_gen0_threshold == 0
    message = error_of(path, env={"INFINITIC_WORKER__GC_GEN0_THRESHOLD": "-1"})
    assert "worker.gc_gen0_threshold" in message


def test_transport_options_are_built_in_one_place() -> None:
    from infinitic_py.config.schema import PulsarConfig
    from infinitic_py.ops.settings import ToolSettings

    assert PulsarConfig(url="memory://x").transport_options() == {}
    pulsar = PulsarConfig(url="pulsar+ssl://h:6651", auth_plugin="org.x.AuthenticationToken",
                          auth_params={"token": "t"})
    options = pulsar.transport_options()
    assert options["auth_params"] == '{"token": "t"}' and options["tls_validate_hostname"]
    assert ToolSettings(pulsar, "x.yaml").transport_options() == options


def test_example_file_shows_every_key_with_its_default() -> None:
    """README: "The annotated reference is deploy/worker.example.yaml; every key shows its
    default" (a service's retry and timeout show an example, their comment gives the default)."""
    import yaml

    example = yaml.safe_load(EXAMPLE.read_text())

    def walk(struct: type[msgspec.Struct], data: dict[str, Any], prefix: str) -> list[str]:
        problems = []
        for f in msgspec.structs.fields(struct):
            key = f"{prefix}{f.encode_name}"
            if f.encode_name not in data:
                problems.append(f"{key} is missing")
                continue
            default = f.default_factory() if f.default_factory is not msgspec.NODEFAULT else (
                f.default)
            if isinstance(default, msgspec.Struct):
                problems += walk(type(default), data[f.encode_name], f"{key}.")
            elif default is not msgspec.NODEFAULT and data[f.encode_name] != default and key not in (
                    "services[].timeout_seconds", "services[].retry", "services[].batch"):
                problems.append(f"{key} shows {data[f.encode_name]!r}, default {default!r}")
        return problems

    problems = walk(type(load_config(EXAMPLE, env={}).pulsar), example["pulsar"], "pulsar.")
    problems += walk(type(load_config(EXAMPLE, env={}).worker), example["worker"], "worker.")
    problems += walk(ServiceConfig, example["services"][0], "services[].")
    assert problems == []


def test_a_worker_built_in_code_has_the_config_files_redelivery_limit(tmp_path: Path) -> None:
    """README (batching contract, 4): Pulsar's dead-letter policy stops a batch that can never be
    published from looping. A ``Worker`` built in code had no limit (it looped for ever); it now
    has the config file's default."""
    from infinitic_py import Worker

    config = load_config(write(tmp_path, MINIMAL), env={})
    assert Worker("memory://x").consumer_settings.max_redeliveries == 10
    assert config.pulsar.consumer.max_redeliveries == 10


@pytest.mark.parametrize("key", ["tenant", "namespace"])
def test_a_services_tenant_or_namespace_is_checked_like_pulsars(key: str) -> None:
    """``pulsar.namespace: public/default`` was refused, ``services[0].namespace: public/default``
    passed ``check`` and the worker failed later, at the broker."""
    message = dict_error(svc(**{key: "public/default"}))
    assert message == (f"worker.yaml: services[0].{key}: expected a name of letters, digits, "
                       "'_', '-', '.', got 'public/default'")

"""Where `dlq` and `status` look for a service the config declares (its own tenant / namespace /
wire, flags winning), and what `dlq replay` says it replayed (pure parts, and the CLI's one-line
refusals, no broker).

Before: the tools read only the config's `pulsar` section, so `dlq list S -c worker.yaml` of a
service with `namespace: billing` looked in public/default and said "0 dead letter(s)", and
`dlq replay` of Infinitic task events said "replayed 2 task(s)"."""

from __future__ import annotations

from pathlib import Path

import pytest

from infinitic_py.config import ServiceConfig
from infinitic_py.errors import ConfigError
from infinitic_py.ops.dlq import replay_counts, replayed_what
from infinitic_py.ops.scopes import (
    Flags,
    NameOf,
    Scope,
    class_path_name,
    scope_of,
    status_namespaces,
)
from infinitic_py.ops.settings import load_tool_settings
from infinitic_py.ops.status import NamespaceStatus, ServiceStatus, statuses_json
from infinitic_py.wire.letters import KIND_EVENT, KIND_TASK, LetterView
from tests.unit.test_cli_failures import UNREACHABLE, one_line, run

DEFAULTS = Flags("public", "default")


def svc(class_path: str, **fields: object) -> ServiceConfig:
    return ServiceConfig(class_path=class_path, **fields)  # type: ignore[arg-type]


SERVICES = (
    svc("billing:Invoices", name="Billing", namespace="billing"),
    svc("mail:Email", tenant="ops", namespace="mail"),
    svc("jvm:Bench", name="BenchService", namespace="infinitic", wire="infinitic"),
    svc("plain:Plain"),
)


def scope(service: str, flags: Flags = DEFAULTS, services: tuple[ServiceConfig, ...] = SERVICES,
          name_of: NameOf = class_path_name) -> Scope:
    """``scope_of``; by default every class imports and keeps its own name."""
    return scope_of(service, services, flags, source="worker.yaml", name_of=name_of)


def test_a_declared_service_is_looked_for_where_the_worker_serves_it() -> None:
    assert scope("Billing") == Scope("public", "billing", "native",
                                     declared="services[0] (billing:Invoices)")
    # without name: the class is the name (nothing imported)
    assert (scope("Email").tenant, scope("Email").namespace) == ("ops", "mail")
    assert (scope("BenchService").namespace, scope("BenchService").wire) == ("infinitic",
                                                                             "infinitic")
    assert scope("Plain") == Scope("public", "default", "native",
                                   declared="services[3] (plain:Plain)")


def test_a_service_the_config_does_not_declare_keeps_the_pulsar_section() -> None:
    assert scope("Other") == Scope("public", "default", "auto")
    assert scope("Other", Flags("t", "n", wire="native")) == Scope("t", "n", "native")
    assert scope("Invoices") == Scope("public", "default", "auto")  # named Billing: not this
    assert scope("Billing", services=()) == Scope("public", "default", "auto")


def test_explicit_flags_win_one_by_one() -> None:
    only_ns = Flags("public", "other", namespace_flag=True)
    assert (scope("Email", only_ns).tenant, scope("Email", only_ns).namespace) == ("ops", "other")
    only_tenant = Flags("t2", "default", tenant_flag=True)
    assert (scope("Email", only_tenant).tenant, scope("Email", only_tenant).namespace) == (
        "t2", "mail")
    assert scope("BenchService", Flags("public", "default", wire="auto")).wire == "auto"


def test_a_class_renamed_by_service_name_is_found_by_importing_it_only_when_needed() -> None:
    asked: list[str] = []

    def name_of(s: ServiceConfig) -> str | None:
        asked.append(s.class_path)
        return {"mail:Email": "Mailer"}.get(s.class_path)

    assert scope("Billing", name_of=name_of).namespace == "billing" and asked == []
    assert scope("Email", name_of=name_of).namespace == "mail" and asked == []
    found = scope("Mailer", name_of=name_of)
    assert (found.tenant, found.namespace, found.declared) == ("ops", "mail",
                                                               "services[1] (mail:Email)")
    # only the unnamed entry living elsewhere was imported (plain:Plain lives in the default)
    assert asked == ["mail:Email"]


def test_a_class_that_cannot_be_imported_leaves_a_note_not_a_silent_answer() -> None:
    found = scope("Mailer", name_of=lambda s: None)
    assert (found.tenant, found.namespace, found.declared) == ("public", "default", None)
    assert found.note is not None
    assert "services[1] (mail:Email)" in found.note and "ops/mail" in found.note
    assert "name:" in found.note and "--namespace" in found.note
    # an entry in the default namespace cannot change the answer: no note
    only_plain = (svc("plain:Plain"),)
    assert scope("Mailer", services=only_plain, name_of=lambda s: None).note is None


def test_a_name_declared_twice_in_different_places_is_one_line() -> None:
    twice = (svc("a:Email", namespace="one"), svc("b:Email", namespace="two"))
    with pytest.raises(ConfigError) as err:
        scope("Email", services=twice)
    text = str(err.value)
    assert "\n" not in text and "Email" in text and "declared more than once" in text
    assert "public/one" in text and "public/two" in text and "--namespace" in text
    # the same place twice is no ambiguity, and a flag that settles it neither
    same = (svc("a:Email", namespace="one"), svc("b:Email", namespace="one"))
    assert scope("Email", services=same).namespace == "one"
    assert scope("Email", Flags("public", "x", namespace_flag=True), services=twice).namespace == "x"


def test_status_covers_the_namespaces_of_the_config_services() -> None:
    assert status_namespaces(SERVICES, DEFAULTS) == [
        ("public", "default"), ("public", "billing"), ("ops", "mail"), ("public", "infinitic")]
    assert status_namespaces(SERVICES, Flags("public", "x", namespace_flag=True)) == [
        ("public", "x"), ("ops", "x")]
    assert status_namespaces((), DEFAULTS) == [("public", "default")]


def test_the_tools_read_the_config_services_without_importing_them(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text("pulsar:\n  url: pulsar://b:6650\n  namespace: main\nservices:\n"
                      "  - class: not_installed_anywhere:Billing\n    namespace: billing\n"
                      "  - class: not_installed_anywhere:Mail\n")
    settings = load_tool_settings(str(config), env={})
    assert settings.scope_of("Billing").namespace == "billing"
    assert settings.scope_of("Mail").namespace == "main"
    assert settings.scope_of("Billing", wire="infinitic").wire == "infinitic"
    assert settings.status_namespaces() == [("public", "main"), ("public", "billing")]
    flagged = load_tool_settings(str(config), namespace="other", env={})
    assert flagged.scope_of("Billing").namespace == "other"
    # a service's own namespace set from the environment, as the worker reads it
    env = load_tool_settings(str(config), env={"INFINITIC_SERVICES__1__NAMESPACE": "m2"})
    assert env.scope_of("Mail").namespace == "m2"
    config.write_text("pulsar:\n  url: pulsar://b:6650\n")  # no services: fine, as before
    assert load_tool_settings(str(config), env={}).scope_of("Billing").namespace == "default"


def test_a_mistake_in_the_config_services_is_one_line_before_any_request(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(f"pulsar:\n  url: {UNREACHABLE}\nservices:\n"
                      "  - class: a:Email\n    namespace: one\n"
                      "  - class: b:Email\n    namespace: two\n")
    for args in (("dlq", "list", "Email"), ("status", "--service", "Email")):
        out = run(*args, "-c", str(config))
        assert out.returncode == 2, out
        line = one_line(out)
        assert "declared more than once" in line and "public/one" in line, line
    config.write_text(f"pulsar:\n  url: {UNREACHABLE}\nservices:\n"
                      "  - class: a:Email\n    namespce: one\n")
    out = run("dlq", "list", "Email", "-c", str(config))
    assert out.returncode == 2 and "namespce" in one_line(out), out


def test_dispatch_refuses_a_declared_wire_infinitic_service_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(f"pulsar:\n  url: {UNREACHABLE}\nservices:\n"
                      "  - class: a:Email\n    wire: infinitic\n")
    out = run("dispatch", "Email", "send", "[]", "-c", str(config))
    assert out.returncode == 2, out
    line = one_line(out)
    assert "wire: infinitic" in line and "services[0]" in line, line
    config.write_text(f"pulsar:\n  url: {UNREACHABLE}\nservices:\n"
                      "  - class: a:Email\n    namespace: one\n  - class: b:Email\n")
    out = run("dispatch", "Email", "send", "[]", "-c", str(config))
    assert out.returncode == 2 and "declared more than once" in one_line(out), out


def view(kind: str) -> LetterView:
    return LetterView(reason="max_redeliveries", error_type="E", message="m", traceback=None,
                      retry_index=0, task_id="t", service="S", method="run", failed_at=0.0,
                      batch_key=None, task=object(), kind=kind, wire="infinitic")


def test_replay_says_what_it_replayed() -> None:
    tasks, events = [view(KIND_TASK)] * 3, [view(KIND_EVENT)] * 2
    assert replayed_what(tasks, "S") == "3 task(s) to S as new attempts"
    assert replay_counts(events) == {"tasks": 0, "events": 2}
    only_events = replayed_what(events, "S")
    assert only_events.startswith("2 event(s) unchanged") and "task(s)" not in only_events
    both = replayed_what(tasks + events, "S2", to_service="S2")
    assert both.startswith("3 task(s) to S2 as new attempts and 2 event(s) unchanged"), both
    assert "--to-service applies to tasks only" in both
    assert replayed_what([], "S") == "0 task(s) to S as new attempts"


def test_status_json_of_several_namespaces_names_each_row_s_namespace() -> None:
    def row(name: str) -> ServiceStatus:
        return ServiceStatus(service=name, topic="", state="ok", worker_subscription=True,
                             subscription_type="Shared", backlog=0, ready=0, delayed=0,
                             unacked=0, rate_in=0.0, rate_out=0.0, dead_letters=None)

    first = NamespaceStatus("public", "default", [row("A")], ["r1"])
    second = NamespaceStatus("public", "billing", [row("B")], [], missing=["C"])
    data = statuses_json([first, second])
    assert (data["tenant"], data["namespace"]) == ("public", "default")
    assert data["namespaces"] == ["public/default", "public/billing"]
    assert [(s["service"], s["namespace"]) for s in data["services"]] == [
        ("A", "default"), ("B", "billing")]
    assert (data["response_topics"], data["missing"]) == (["r1"], ["C"])
    one = statuses_json([first])
    assert {k: one[k] for k in ("tenant", "namespace", "response_topics", "missing")} == {
        k: first.to_json()[k] for k in ("tenant", "namespace", "response_topics", "missing")}

"""Unacked budget vs the broker's maxUnackedMessagesPerConsumer / PerSubscription."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py.limits import (
    DEFAULT_BROKER_MAX_UNACKED_PER_CONSUMER,
    LimitFinding,
    LimitScope,
    buffer_findings,
    check_slots_against_limit,
    check_subscription_unacked_limit,
    check_unacked_limit,
    effective_limit,
    suggested_limit,
    unacked_budget,
    unacked_demand,
)

sizes = st.integers(min_value=1, max_value=200_000)
limits = st.one_of(st.none(), st.integers(min_value=0, max_value=400_000))


def test_default_settings_fit_the_default_broker() -> None:
    # receiver_queue_size 1000 + max_buffered_messages 10000
    assert unacked_demand(1000, 10, 100, 10_000) == 11_000
    (finding,) = check_unacked_limit(1000, 10, 100, 10_000, broker_limit=None, namespace_limit=None)
    assert finding.level == "ok"
    assert "11000" in finding.message and "50000" in finding.message


def test_budget_breakdown() -> None:
    budget = unacked_budget(1000, 10, 100, 10_000)
    assert (budget.prefetched, budget.running, budget.accumulating) == (1000, 1000, 9000)
    assert budget.demand == 11_000
    # a cap below concurrency x max_messages: everything held is running
    small = unacked_budget(500, 50, 1000, 10_000)
    assert (small.running, small.accumulating, small.demand) == (10_000, 0, 10_500)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="concurrency must be >= 1"):
        unacked_demand(1, 0, 1, 1)


def test_effective_limit_precedence() -> None:
    assert effective_limit(None, None) == (DEFAULT_BROKER_MAX_UNACKED_PER_CONSUMER,
                                           "assumed broker default")
    assert effective_limit(40_000, None) == (40_000, "broker")
    assert effective_limit(40_000, 100) == (100, "namespace")
    assert effective_limit(40_000, 0) == (0, "namespace")  # namespace says unlimited
    assert effective_limit(40_000, 100, 7) == (7, "topic")


def test_warn_names_both_numbers_and_suggests_values() -> None:
    (finding,) = check_unacked_limit(
        1000, 10, 100, 60_000, broker_limit=50_000, namespace_limit=None,
        tenant="acme", namespace="prod", service="EmailService",
    )
    assert finding.level == "warn"
    assert finding.code == "unacked-per-consumer"
    assert "61000" in finding.message and "50000" in finding.message
    assert "'EmailService'" in finding.message
    text = " ".join(finding.suggestions)
    assert "worker.max_buffered_messages <= 48999" in text
    assert "pulsar-admin namespaces set-max-unacked-messages-per-consumer acme/prod -c 77000" in text
    assert "POST /admin/v2/namespaces/acme/prod/maxUnackedMessagesPerConsumer" in text
    assert str(finding).startswith("warn: ")


def test_error_when_not_even_one_batch_fits() -> None:
    (finding,) = check_unacked_limit(1000, 2, 5000, 10_000, broker_limit=None, namespace_limit=5000)
    assert finding.level == "error"
    assert "namespace maxUnackedMessagesPerConsumer 5000" in finding.message
    assert any("max_messages to <= 3999" in s for s in finding.suggestions)


def test_lower_receiver_queue_is_suggested_when_it_helps() -> None:
    (finding,) = check_unacked_limit(20_000, 1, 10, 40_000, broker_limit=None, namespace_limit=None)
    assert finding.level == "warn"
    assert any("receiver_queue_size <= 9999" in s for s in finding.suggestions)


def test_topic_policy_suggestion_uses_topic_policies() -> None:
    (finding,) = check_unacked_limit(1000, 1, 1, 10_000, broker_limit=None, namespace_limit=None,
                                     topic_limit=100)
    assert any("topicPolicies set-max-unacked-messages-per-consumer" in s
               for s in finding.suggestions)


def test_zero_means_unlimited() -> None:
    (finding,) = check_unacked_limit(10**6, 100, 10**4, 10**7, broker_limit=0, namespace_limit=None)
    assert finding.level == "ok"
    assert "unlimited" in finding.message
    (finding,) = check_unacked_limit(10**6, 1, 1, 10**7, broker_limit=10, namespace_limit=0)
    assert finding.level == "ok"


def test_suggested_limit_is_above_demand() -> None:
    assert suggested_limit(61_000) == 77_000
    assert suggested_limit(1) >= 2


def test_subscription_limit_for_a_fleet() -> None:
    (ok,) = check_subscription_unacked_limit(11_000, 10, broker_limit=None, namespace_limit=None)
    assert ok.level == "ok"
    (warn,) = check_subscription_unacked_limit(11_000, 20, broker_limit=None, namespace_limit=None)
    assert warn.level == "warn"
    assert "220000" in warn.message and "200000" in warn.message
    assert any("at most 18 worker(s)" in s for s in warn.suggestions)
    assert any("set-max-unacked-messages-per-subscription public/default" in s
               for s in warn.suggestions)


def test_one_scope_serves_every_check() -> None:
    scope = LimitScope(broker_limit=None, namespace_limit=20_000, tenant="acme",
                       namespace="prod", service="Email")
    (slots,) = check_slots_against_limit(1000, 10, 2000, 10_000, **scope)
    (unacked,) = check_unacked_limit(1000, 10, 2000, 30_000, **scope)
    # maxUnackedMessagesPerSubscription is another setting: its own limits, same words
    (fleet,) = check_subscription_unacked_limit(30_000, 10, broker_limit=None,
                                                namespace_limit=200_000, tenant="acme",
                                                namespace="prod", service="Email")
    for finding in (slots, unacked, fleet):
        assert finding.level == "warn" and finding.message.startswith("service 'Email': ")
        assert "namespace maxUnackedMessagesPer" in finding.message
        assert " acme/prod -c " in finding.suggestions[-1]
    (unlimited,) = check_slots_against_limit(1000, 10, 2000, 10_000, broker_limit=0,
                                             namespace_limit=None)
    assert unlimited.level == "ok" and unlimited.message.endswith("(unlimited).")


def test_buffer_findings() -> None:
    (warn,) = buffer_findings(10, 100, 50, service="Email", method="send")
    assert warn.level == "warn" and warn.message.startswith("Email.send: ")
    (note,) = buffer_findings(10, 100, 500)
    assert note.level == "ok" and "at most 5 full batches" in note.message
    (ok,) = buffer_findings(10, 100, 1000)
    assert ok.code == "buffer-ok"


# ------------------------------------------------------------------------------ properties


@given(sizes, sizes, sizes, sizes, st.sampled_from(range(4)), st.integers(1, 10_000))
def test_demand_is_monotonic_in_each_input(
    rq: int, conc: int, mm: int, buf: int, which: int, bump: int
) -> None:
    args = [rq, conc, mm, buf]
    bigger = list(args)
    bigger[which] += bump
    assert unacked_demand(*bigger) >= unacked_demand(*args)


@given(sizes, sizes, sizes, sizes)
def test_demand_counts_prefetch_plus_what_the_worker_holds(
    rq: int, conc: int, mm: int, buf: int
) -> None:
    budget = unacked_budget(rq, conc, mm, buf)
    assert budget.prefetched + budget.running + budget.accumulating == budget.demand
    assert budget.running + budget.accumulating <= buf  # bounded by the buffer cap
    assert budget.running == min(conc * mm, buf)
    assert budget.accumulating >= 0
    assert budget.demand == unacked_demand(rq, conc, mm, buf)


@given(sizes, sizes, sizes, sizes, limits, limits, limits)
def test_no_warning_iff_demand_below_effective_limit(
    rq: int, conc: int, mm: int, buf: int,
    broker: int | None, ns: int | None, topic: int | None,
) -> None:
    findings = check_unacked_limit(rq, conc, mm, buf, broker_limit=broker, namespace_limit=ns,
                                   topic_limit=topic)
    assert len(findings) == 1
    (finding,) = findings
    limit, _ = effective_limit(broker, ns, topic)
    demand = unacked_demand(rq, conc, mm, buf)
    fine = limit == 0 or demand < limit
    assert (finding.level == "ok") == fine
    assert bool(finding.suggestions) == (not fine)
    if not fine:
        assert str(demand) in finding.message and str(limit) in finding.message


@given(sizes, sizes, sizes, sizes, st.integers(min_value=1, max_value=400_000))
def test_following_the_buffer_suggestion_clears_the_warning(
    rq: int, conc: int, mm: int, buf: int, limit: int
) -> None:
    (finding,) = check_unacked_limit(rq, conc, mm, buf, broker_limit=limit, namespace_limit=None)
    if finding.level == "ok" or limit - 1 - rq < 1:
        return
    new_buf = limit - 1 - rq
    assert f"worker.max_buffered_messages <= {new_buf}" in finding.suggestions[0]
    (after,) = check_unacked_limit(rq, conc, mm, new_buf, broker_limit=limit, namespace_limit=None)
    assert after.level == "ok"


@given(sizes, sizes, sizes, sizes, st.integers(min_value=1, max_value=400_000))
def test_following_the_policy_suggestion_clears_the_warning(
    rq: int, conc: int, mm: int, buf: int, limit: int
) -> None:
    (finding,) = check_unacked_limit(rq, conc, mm, buf, broker_limit=limit, namespace_limit=None)
    if finding.level == "ok":
        return
    target = suggested_limit(unacked_demand(rq, conc, mm, buf))
    assert f"-c {target}" in finding.suggestions[-1]
    (after,) = check_unacked_limit(rq, conc, mm, buf, broker_limit=limit, namespace_limit=target)
    assert after.level == "ok"


def test_finding_str_without_suggestions() -> None:
    assert str(LimitFinding("ok", "x", "fine.")) == "ok: fine."


@given(st.integers(1, 5000), st.integers(1, 100), st.integers(1, 1000), st.integers(2, 60_000))
def test_the_first_slots_fix_when_followed_clears_the_warning(
        queue: int, concurrency: int, max_messages: int, limit: int) -> None:
    """Seen: receiver_queue_size 2000 against a limit of 100 was told 'lower concurrency to
    <= 1', which cannot help (the receiver queue alone is over the limit)."""
    import re

    findings = check_slots_against_limit(queue, concurrency, max_messages, 10_000,
                                         broker_limit=limit, namespace_limit=None)
    (finding,) = findings
    if finding.level == "ok":
        return
    fix = finding.suggestions[0]
    if m := re.match(r"lower concurrency to <= (\d+) ", fix):
        concurrency = int(m[1])
    elif m := re.match(r"lower pulsar.consumer.receiver_queue_size to <= (\d+) ", fix):
        queue = int(m[1])
    else:
        assert fix.startswith("lower pulsar.consumer.receiver_queue_size, concurrency and "), fix
        assert queue + max_messages >= limit - 1  # no single knob is enough
        return
    assert concurrency >= 1 and queue >= 1
    (after,) = check_slots_against_limit(queue, concurrency, max_messages, 10_000,
                                         broker_limit=limit, namespace_limit=None)
    assert after.level == "ok", (fix, after.message)

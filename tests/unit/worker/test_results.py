"""Results: an output that does not fit its method's declared result type fails that task alone,
with one line naming the method, the task, the declared type and what was returned; the others
keep their outcome. Checked as a caller decodes it (msgspec, strict)."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from hypothesis import given
from hypothesis import strategies as st

from infinitic_py import ResultTypeError, task
from infinitic_py.service import define_service
from infinitic_py.worker.invoke import Invoker
from infinitic_py.worker.outcomes import COMPLETED_NONE, Completed, Failed, Outcome
from infinitic_py.worker.results import ResultCheck, declared_result, result_check, type_text

from .parts import Job, message, routed

LOG = structlog.get_logger("test")


class Item(msgspec.Struct):
    a: int


class Plain:
    """A class msgspec cannot encode."""


class Typed:
    @task
    def count(self, job: Job) -> int:
        return job.n

    @task
    def item(self, job: Job) -> Item:
        return Item(job.n)

    @task
    def maybe(self, job: Job) -> int | None:
        return None

    @task
    def loose(self, job: Job) -> Any:
        return Plain()

    @task
    def bare(self, job: Job):  # type: ignore[no-untyped-def]  # not annotated: not checked
        return Plain()

    @task
    def nothing(self, job: Job) -> None:
        return None

    @task
    def listed(self, job: Job) -> list[int]:
        return [job.n]

    @task
    def double(self, job: Job) -> int:
        return 2 * job.n

    @double.batch(max_messages=10, max_seconds=1)
    def double_batch(self, jobs: dict[str, Job]) -> dict[str, int] | None:
        wrong: dict[int, Any] = {3: "three", 4: None, 5: Plain(), 6: 2**70, 7: True}
        if any(j.n == 0 for j in jobs.values()):
            return None  # every task completes with None: the batch contract
        return {t: wrong.get(j.n, 2 * j.n) for t, j in jobs.items()}

    @task
    def anything(self, job: Job) -> Any:
        return job.n

    @anything.batch(max_messages=10, max_seconds=1)
    def anything_batch(self, jobs: dict[str, Job]) -> dict[str, str]:
        return {t: str(j.n) for t, j in jobs.items()}


DEFINITION = define_service(Typed(), name="Jobs")


def check_of(name: str) -> ResultCheck:
    check = result_check(DEFINITION.methods[name])
    assert check is not None
    return check


def items(count: int) -> list[Any]:
    return routed(*(message(f"t{i}", "one") for i in range(count)))


def test_a_method_declared_any_or_not_annotated_is_not_checked() -> None:
    assert result_check(DEFINITION.methods["loose"]) is None
    assert result_check(DEFINITION.methods["bare"]) is None


def test_the_declared_type_is_the_task_method_s_else_its_twin_s() -> None:
    assert declared_result(DEFINITION.methods["double"]) is int
    assert declared_result(DEFINITION.methods["anything"]) is str  # the twin says str
    assert check_of("double").returned_by == "Jobs.double_batch"
    assert check_of("count").returned_by == "Jobs.count"


def test_outputs_that_fit_keep_the_very_same_outcomes() -> None:
    outcomes: list[Outcome] = [Completed(1), Failed(ValueError("x")), Completed(3)]
    assert check_of("count")(items(3), outcomes) is outcomes
    fits: list[Outcome] = [Completed(Item(1)), Completed({"a": 2})]  # a dict with its fields
    assert check_of("item")(items(2), fits) is fits
    assert check_of("maybe")(items(1), [Completed(None)])[0] == Completed(None)
    assert check_of("nothing")(items(1), [Completed(None)])[0] == Completed(None)


def test_a_wrong_output_fails_alone_with_one_line_naming_everything() -> None:
    outputs: list[Any] = [1, "one", None, Plain(), 2**70, True, 2, 1.5]
    tasks = items(len(outputs))
    checked = check_of("count")(tasks, [Completed(o) for o in outputs])
    messages = {}
    for p, outcome in zip(tasks, checked, strict=True):
        if isinstance(outcome, Failed):
            assert isinstance(outcome.error, ResultTypeError)
            assert isinstance(outcome.error, TypeError)  # ignored_exceptions=(TypeError,) works
            messages[p.task.task_id] = str(outcome.error)
    assert [o for o in checked if isinstance(o, Completed)] == [Completed(1), Completed(2)]
    assert messages == {
        "t1": "Jobs.count returned str for task t1: expected int",
        "t2": "Jobs.count returned None for task t2: expected int",
        "t3": ("Jobs.count returned Plain for task t3: expected int (cannot encode it: "
               "Encoding objects of type Plain is unsupported)"),
        "t4": ("Jobs.count returned int for task t4: expected int (cannot encode it: "
               "can't serialize ints < -2**63 or > 2**64 - 1)"),
        "t5": "Jobs.count returned bool for task t5: expected int",
        "t7": "Jobs.count returned float for task t7: expected int",
    }


def test_a_nested_mismatch_says_where() -> None:
    (failed,) = check_of("item")(items(1), [Completed(Item("s"))])  # type: ignore[arg-type]
    assert isinstance(failed, Failed)
    assert str(failed.error) == ("Jobs.item returned Item for task t0: expected Item "
                                 "(Expected `int`, got `str` - at `$.a`)")
    (missing,) = check_of("item")(items(1), [Completed({"b": 1})])
    assert isinstance(missing, Failed)
    assert str(missing.error).endswith("expected Item (Object missing required field `a`)")
    (mixed,) = check_of("listed")(items(1), [Completed([1, "a"])])
    assert isinstance(mixed, Failed)
    assert str(mixed.error) == ("Jobs.listed returned list for task t0: expected list[int] "
                                "(Expected `int`, got `str` - at `$[1]`)")
    (some,) = check_of("nothing")(items(1), [Completed(5)])
    assert isinstance(some, Failed)
    assert str(some.error) == "Jobs.nothing returned int for task t0: expected None"


def test_a_batch_returning_none_completes_every_task_whatever_the_type() -> None:
    outcomes: list[Outcome] = [COMPLETED_NONE] * 3
    assert check_of("double")(items(3), outcomes) is outcomes


def test_type_text_reads_like_the_annotation() -> None:
    assert [type_text(t) for t in (int, type(None), list[int], int | None, dict[str, Item])] == [
        "int", "None", "list[int]", "int | None", f"dict[str, {__name__}.Item]"]


_VALUES = st.one_of(st.integers(min_value=-(2**65), max_value=2**65), st.text(), st.none(),
                    st.booleans(), st.floats(allow_nan=False), st.lists(st.integers(0, 9)),
                    st.builds(Plain))


@given(st.lists(st.one_of(_VALUES.map(Completed), st.builds(Failed, st.just(KeyError("k"))),
                          st.just(COMPLETED_NONE))))
def test_a_task_fails_exactly_when_its_caller_could_not_decode_its_output(
    outcomes: list[Outcome],
) -> None:
    """The unit-wide pass and the per-output pass agree with what a client decodes (the bytes
    the worker would send, read as the declared type)."""
    check = check_of("count")
    checked = check(items(len(outcomes)), outcomes)
    assert len(checked) == len(outcomes)
    for before, after in zip(outcomes, checked, strict=True):
        if not isinstance(before, Completed) or before is COMPLETED_NONE:
            assert after is before
            continue
        try:
            msgspec.msgpack.decode(msgspec.msgpack.encode(before.output), type=int)
        except Exception:
            assert isinstance(after, Failed) and isinstance(after.error, ResultTypeError)
        else:
            assert after is before


async def test_the_invoker_checks_single_and_batched_outputs() -> None:
    invoker = Invoker("Jobs", "w", 2)
    try:
        batch = routed(*(message(f"t{n}", "double", (Job(n),)) for n in (1, 3, 2, 4, 5, 6, 7)))
        result = await invoker.run(DEFINITION.methods["double"], batch, "b1", None, LOG)
        assert [o.output if isinstance(o, Completed) else type(o.error).__name__
                for o in result.outcomes] == [2, "ResultTypeError", 4, "ResultTypeError",
                                              "ResultTypeError", "ResultTypeError",
                                              "ResultTypeError"]
        nones = routed(*(message(f"t{n}", "double", (Job(n),)) for n in (0, 3)))
        result = await invoker.run(DEFINITION.methods["double"], nones, "b2", None, LOG)
        assert result.outcomes == [COMPLETED_NONE] * 2
        (single,) = routed(message("s1", "one", (Job(1),)))
        result = await invoker.run(DEFINITION.methods["nothing"], [single], None, 5.0, LOG)
        assert result.outcomes == [Completed(None)]
        result = await invoker.run(DEFINITION.methods["loose"], [single], None, None, LOG)
        (loose,) = result.outcomes  # -> Any: not checked here (the dialect's encoder decides)
        assert isinstance(loose, Completed) and isinstance(loose.output, Plain)
    finally:
        invoker.shutdown()

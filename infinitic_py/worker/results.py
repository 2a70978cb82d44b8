"""Results: each task's output checked against the result type its method declares. Pure.

A caller reads a result as the method's declared type (msgspec, strict: what ``Deferred.result``
decodes). An output that would not read as that type (another type, ``None`` where the type is
not optional, a Struct with a field of another type, a dict missing a Struct's field, an object
msgspec cannot encode, an int beyond 64 bits) fails its task alone with ``ResultTypeError``
("Svc.echo returned str for task 3f..: expected int"), which then follows the retry policy and
ends in a dead letter like any failure: the caller gets ``TaskFailed``, never a result it cannot
decode, and a task nobody awaits is no longer "completed" with a value no one could read.

Which type: the task method's return annotation (an ``async def``'s awaited result); if that is
``Any``, its batch twin's declared output (``dict[str, O]``). A method declared ``-> Any`` (or
``object``, or not annotated) is not checked: no cost at all. A batch twin returning ``None``
completes every task with ``None`` (``COMPLETED_NONE``), whatever the type: the batch contract.

Cost, per unit: the completed outputs are encoded as one MessagePack array and decoded as
``list[T]`` (two C calls); only when that fails is each output checked alone, to name the ones
that do not fit.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Sequence
from typing import Any

import msgspec

from infinitic_py.errors import ResultTypeError
from infinitic_py.service import MethodDefinition
from infinitic_py.worker.outcomes import COMPLETED_NONE, Completed, Failed, Outcome
from infinitic_py.worker.routing import Pending

_encode = msgspec.msgpack.Encoder().encode  # the settings the native wire encodes outputs with
_UNCHECKED = (Any, object)
# msgspec's reason when it only repeats the two types the message names already
_PLAIN_MISMATCH = re.compile(r"Expected `[^`]*`, got `[^`]*`")


def declared_result(method: MethodDefinition) -> Any:
    """The type a task's output must fit (``Any``: nothing to check)."""
    if method.return_type not in _UNCHECKED or method.batch is None:
        return method.return_type
    return method.batch.output_type


class ResultCheck:
    """Checks the outputs of one method's units (``__call__``). Built once per method."""

    __slots__ = ("_all", "_one", "expected", "returned_by")

    def __init__(self, returned_by: str, expected: Any) -> None:
        self.returned_by = returned_by  # "Svc.method" (a batch twin: "Svc.twin")
        self.expected = expected
        self._all = msgspec.msgpack.Decoder(list[expected]).decode
        self._one = msgspec.msgpack.Decoder(expected).decode

    def __call__(self, items: Sequence[Pending], outcomes: list[Outcome]) -> list[Outcome]:
        """``outcomes`` (one per item, in order) with each completed output that does not fit
        the declared type turned into a ``ResultTypeError`` failure; the same list if all fit."""
        outputs = [o.output for o in outcomes if type(o) is Completed and o is not COMPLETED_NONE]
        if not outputs:
            return outcomes
        try:
            self._all(_encode(outputs))
            return outcomes  # the usual case: every output fits
        except Exception:  # msgspec's errors, OverflowError, UnicodeEncodeError, RecursionError
            pass
        checked = list(outcomes)
        for index, (p, outcome) in enumerate(zip(items, outcomes, strict=True)):
            if type(outcome) is not Completed or outcome is COMPLETED_NONE:
                continue
            error = self.error(p.task.task_id, outcome.output)
            if error is not None:
                checked[index] = Failed(error)
        return checked

    def error(self, task_id: str, output: Any) -> ResultTypeError | None:
        """Why ``output`` does not fit the declared type (None: it fits)."""
        try:
            encoded = _encode(output)
        except Exception as exc:
            return self._mismatch(task_id, output, f"cannot encode it: {_reason(exc)}")
        try:
            self._one(encoded)
        except Exception as exc:
            reason = _reason(exc)
            return self._mismatch(task_id, output,
                                  None if _PLAIN_MISMATCH.fullmatch(reason) else reason)
        return None

    def _mismatch(self, task_id: str, output: Any, reason: str | None) -> ResultTypeError:
        text = (f"{self.returned_by} returned {type_text(type(output))} for task {task_id}: "
                f"expected {type_text(self.expected)}")
        return ResultTypeError(f"{text} ({reason})" if reason else text)


def result_check(method: MethodDefinition) -> ResultCheck | None:
    """The check of ``method``'s outputs, or None when its result type is ``Any``."""
    expected = declared_result(method)
    if expected in _UNCHECKED:
        return None
    name = method.batch.fn_name if method.batch is not None else method.name
    return ResultCheck(f"{method.service}.{name}", expected)


def type_text(tp: Any) -> str:
    """A type as a user wrote it: ``int``, ``list[int]``, ``int | None``, ``None``."""
    if tp is type(None):
        return "None"
    if typing.get_origin(tp) is not None:
        return repr(tp).replace("typing.", "").replace("NoneType", "None")
    return getattr(tp, "__qualname__", None) or repr(tp)


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())  # one line
    return text or type(exc).__name__

"""The client's Infinitic codec: the ExecuteTask a Python client sends (methodParameterTypes from
hints or declared), and JVM client answers read into the client's replies."""

from __future__ import annotations

import pytest

pytest.importorskip("fastavro", reason="the `infinitic` extra (fastavro) is not installed")

from infinitic_py import task
from infinitic_py.client.codecs import InfiniticCodec
from infinitic_py.client.stubs import Call
from infinitic_py.service import describe_class
from infinitic_py.transport.base import ReceivedMessage
from infinitic_py.wire import native
from infinitic_py.wire.infinitic import envelopes as env
from infinitic_py.wire.infinitic import values


class Echo:
    @task
    def echo(self, message: str, times: int) -> str:
        raise NotImplementedError


class Opaque:
    @task
    def send(self, payload: object) -> None:
        raise NotImplementedError


def test_parameter_types_from_hints_or_declared() -> None:
    definition = describe_class(Echo)["echo"]
    codec = InfiniticCodec("public", "ns")
    assert codec.parameter_types("Echo", "echo", definition) == ["java.lang.String", "long"]
    declared = InfiniticCodec("public", "ns", {"Echo.echo": ["java.lang.String", "int"]})
    assert declared.parameter_types("Echo", "echo", definition) == ["java.lang.String", "int"]
    assert codec.parameter_types("Echo", "echo", None) is None
    assert codec.parameter_types("Opaque", "send", describe_class(Opaque)["send"]) is None


def test_build_sends_a_client_waiting_execute_task_on_infinitic_topics() -> None:
    codec = InfiniticCodec("public", "ns")
    definition = describe_class(Echo)["echo"]
    call = Call.build(("hi", 2), {})
    task_id, message = codec.build("Echo", "echo", definition, call, ("hi", 2), {"batchKey": "k"},
                                   (), "reply", "me", None, 0.0, 5)
    sent = env.decode_execute_task(message.data)
    assert sent.task_id == task_id and sent.client_waiting and sent.task_name == "Echo"
    assert sent.method_parameter_types == ["java.lang.String", "long"]
    assert sent.task_meta == {"batchKey": b"k"}
    assert [values.decode_value(p) for p in sent.method_parameters] == ["hi", 2]
    assert codec.task_topic("Echo") == "persistent://public/ns/task-executor:Echo"
    assert codec.topics_to_create("me") == {"persistent://public/ns/response:me": 0}
    # created before dispatching, as a JVM client's producer does (Infinitic: no auto creation)
    assert codec.service_topics("Echo") == {"persistent://public/ns/task-executor:Echo": 3}


def test_jvm_answers_become_client_replies() -> None:
    codec = InfiniticCodec("public", "ns")
    done = env.ClientTaskCompleted("m", "jvm", "me", "t1", values.encode_value(["a", 1]), {})
    reply = codec.decode_reply(_msg(env.encode_client_message("me", done)))
    assert isinstance(reply, native.TaskCompleted) and reply.task_id == "t1"
    failure = env.WorkerError(worker_name="jvm", stack_trace_to_string="at X",
                              exception=env.GenericException("java.lang.IllegalStateException", "no"))
    failed = env.ClientTaskFailed("m", "me", "t2", failure, "jvm")
    reply = codec.decode_reply(_msg(env.encode_client_message("me", failed)))
    assert isinstance(reply, native.TaskFailedReply)
    assert (reply.error_type, reply.message, reply.traceback) == (
        "java.lang.IllegalStateException", "no", "at X")


def test_a_jvm_failure_after_retries_says_how_many() -> None:
    """The JVM's retry policy retried twice: TaskFailed must not say 'after 0 retries'."""
    codec = InfiniticCodec("public", "ns")
    failure = env.WorkerError(worker_name="jvm", retry_index=2,
                              exception=env.GenericException("java.lang.IllegalStateException", "no"))
    reply = codec.decode_reply(_msg(env.encode_client_message(
        "me", env.ClientTaskFailed("m", "me", "t2", failure, "jvm"))))
    assert isinstance(reply, native.TaskFailedReply) and reply.retry_index == 2


def _msg(data: bytes) -> ReceivedMessage:
    return ReceivedMessage(data, {}, 0, "persistent://public/ns/response:me", None)

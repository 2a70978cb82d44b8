"""The end-to-end baseline's worker: raw pulsar-client, no infinitic-py executor.

``python -m benchmarks.raw_echo URL TOPIC SUBSCRIPTION``: a thread-free loop on the sync
``batch_receive()`` (up to 100 messages or 1 ms, like a batch of 100), decoding each ExecuteTask
and its arguments, publishing a TaskCompleted to its ``reply_to`` with a batching producer (the
transport's producer settings), flushing, then acking the chunk: the same "outcomes durable,
then ack" order as the executor, with nothing else. Writes ``raw_echo.ready`` to stderr once
subscribed; stops on SIGTERM.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import msgspec
import pulsar

from benchmarks.common import Order
from infinitic_py.wire import native as wire

_args = msgspec.msgpack.Decoder(tuple[Order])


def main(url: str, topic: str, subscription: str) -> int:
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    client = pulsar.Client(url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    consumer = client.subscribe(
        topic, subscription, consumer_type=pulsar.ConsumerType.Shared,
        receiver_queue_size=1000, batch_index_ack_enabled=True,
        initial_position=pulsar.InitialPosition.Earliest,
        batch_receive_policy=pulsar.ConsumerBatchReceivePolicy(100, -1, 1),
    )
    native: Any = consumer._consumer
    producers: dict[str, Any] = {}

    def sent(*_: Any) -> None:
        return None

    sys.stderr.write("raw_echo.ready\n")
    sys.stderr.flush()
    while not stop:
        msgs = native.batch_receive()
        if not msgs:
            continue
        used = set()
        for msg in msgs:
            task = wire.decode_execute(msg.data())
            (order,) = _args.decode(task.args)
            reply = wire.TaskCompleted(
                task_id=task.task_id, service=task.service, method=task.method,
                output=wire.encode_value(order.amount_cents), retry_index=task.retry_index,
            )
            assert task.reply_to is not None
            producer = producers.get(task.reply_to)
            if producer is None:
                producer = client.create_producer(
                    task.reply_to, batching_enabled=True, batching_max_messages=1000,
                    batching_max_publish_delay_ms=10, block_if_queue_full=True,
                )
                producers[task.reply_to] = producer
            producer.send_async(wire.encode(reply), sent)
            used.add(task.reply_to)
        for reply_to in used:
            producers[reply_to].flush()
        for msg in msgs:
            native.acknowledge(msg)
    for producer in producers.values():
        producer.close()
    consumer.close()
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))

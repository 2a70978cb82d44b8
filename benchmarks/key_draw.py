"""How evenly a Key_Shared subscription spreads K keys over N consumers (issue 15).

The broker hashes each key onto a ring of consumer points placed by consumer name: which worker
owns which key is a draw, fixed for a given set of names (pod names) and keys. Each trial subscribes
N consumers with fresh random names to a fresh topic, publishes one unbatched message per routing
key (``tenant-NN``, or its ``key_spread`` sub-keys ``tenant-NN#i``) and counts what each consumer
got. Prints how many trials put more than 1.5x the fair share on one consumer.

    PULSAR_URL=pulsar://127.0.0.1:6650 .venv/bin/python -m benchmarks.key_draw [trials]

Measured on the project's broker (Pulsar 4.2.4), 20 keys on 4 consumers, two runs of 20 trials:
more than 1.5x in 11 and 12 of 20 (median busiest 1.60x); key_spread 2: 4 and 3 of 20 (1.40x);
key_spread 4: 0 and 3 of 20 (1.25x). The run's topics are deleted at the end.
"""

from __future__ import annotations

import os
import sys
import uuid

import pulsar

from benchmarks.common import Env, native_logger


def trial(client: pulsar.Client, env: Env, keys: int, consumers: int, spread: int) -> float:
    topic = env.topic("keydraw")
    subs = [client.subscribe(topic, "draw", consumer_type=pulsar.ConsumerType.KeyShared,
                             consumer_name=f"pod-{uuid.uuid4().hex[:5]}")
            for _ in range(consumers)]
    producer = client.create_producer(topic, batching_enabled=False)
    routing = [f"tenant-{k:02d}" + (f"#{s}" if spread > 1 else "")
               for k in range(keys) for s in range(spread)]
    for key in routing:
        producer.send(b"x", partition_key=key)
    counts = []
    for consumer in subs:
        n = 0
        while True:
            try:
                consumer.acknowledge(consumer.receive(300))
            except pulsar.Timeout:
                break
            n += 1
        counts.append(n)
    for consumer in subs:
        consumer.close()
    producer.close()
    return max(counts) / (len(routing) / consumers)


def main(argv: list[str]) -> int:
    trials = int(argv[0]) if argv else 20
    env = Env(os.environ.get("PULSAR_URL", "pulsar://127.0.0.1:6650"),
              os.environ.get("PULSAR_ADMIN_URL", "http://127.0.0.1:8080"))
    client = pulsar.Client(env.url, logger=native_logger())
    try:
        for spread in (1, 2, 4):
            shares = sorted(trial(client, env, 20, 4, spread) for _ in range(trials))
            over = sum(share > 1.5 for share in shares)
            print(f"20 keys, 4 consumers, key_spread {spread}: busiest > 1.5x fair share in "
                  f"{over}/{trials} trials, median busiest {shares[len(shares) // 2]:.2f}x",
                  flush=True)
    finally:
        client.close()
        env.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

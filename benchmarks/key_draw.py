"""How evenly a Key_Shared subscription spreads K keys over N consumers (issue 15).

The broker hashes each key onto a ring of consumer points placed by consumer name: which worker
owns which key is a draw, fixed for a given set of names (pod names) and keys. Each trial subscribes
N consumers with fresh random names to a fresh topic, publishes one unbatched message per routing
key (``tenant-NN``, or its ``key_spread`` sub-keys ``tenant-NN#i``) and counts what each consumer
got. Prints how many trials put more than 1.5x the fair share on one consumer, and two exact
figures that split the draw in its two causes (``busiest_odds``): over *random* keys, the odds of
more than 1.5x given the hash ranges the broker gave each trial's consumers (admin API
``keyHashRangeArrays``), and the same odds with perfectly even ranges, the floor that no number of
consistent-hashing points can go below (20 keys, 4 consumers: 39.9%).

    PULSAR_URL=pulsar://127.0.0.1:6650 .venv/bin/python -m benchmarks.key_draw [trials]

Measured on the project's broker (Pulsar 4.2.4, 100 consistent-hashing points per consumer), 20
keys on 4 consumers, runs of 20 trials: more than 1.5x in 11, 12, 7 and 10 of 20 (median busiest
1.40-1.60x); odds over random keys 41.8% with the trials' ranges against 39.9% with even ranges:
the ranges add 2 points, the keys' own draw is the rest. key_spread 2: 4, 3, 3, 2 of 20 (13.0%
vs 10.5%); key_spread 4: 0, 3, 1, 0 of 20 (4.0% vs 1.8%). The run's topics are deleted at the end.
"""

from __future__ import annotations

import math
import os
import sys
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pulsar

from benchmarks.common import Env, native_logger

HASH_RANGE = 65536  # Key_Shared hashes a key to [0, 65535]


def busiest_odds(shares: Sequence[float], balls: int, over: float = 1.5) -> float:
    """Exact probability that ``balls`` keys hashed independently onto consumers owning
    ``shares`` of the hash range (summing to 1) put more than ``over`` times the fair share
    (``balls / len(shares)``) on one consumer."""
    limit = over * balls / len(shares)
    lfact = [math.lgamma(i + 1) for i in range(balls + 1)]

    def term(i: int, k: int) -> float:  # log(share_i ** k / k!); -inf if impossible
        if k == 0:
            return 0.0
        return -math.inf if shares[i] <= 0 else k * math.log(shares[i]) - lfact[k]

    def walk(i: int, left: int, logp: float, top: int) -> float:
        if i == len(shares) - 1:
            logp += term(i, left)
            return math.exp(logp) if max(top, left) > limit and logp > -math.inf else 0.0
        return sum(walk(i + 1, left - k, logp + term(i, k), max(top, k))
                   for k in range(left + 1) if term(i, k) > -math.inf)

    return math.exp(lfact[balls]) * walk(0, balls, 0.0, 0)


def range_shares(stats: Mapping[str, Any], subscription: str) -> list[float]:
    """Each consumer's share of the hash range, from a topic's stats (``keyHashRangeArrays``)."""
    shares = []
    for consumer in stats["subscriptions"][subscription]["consumers"]:
        owned = sum(end - start + 1 for start, end in consumer.get("keyHashRangeArrays") or [])
        shares.append(owned / HASH_RANGE)
    return shares


def trial(client: pulsar.Client, env: Env, keys: int, consumers: int,
          spread: int) -> tuple[float, float]:
    """(busiest consumer over its fair share for keys tenant-NN, odds of > 1.5x over random keys
    given this trial's hash ranges)."""
    topic = env.topic("keydraw")
    subs = [client.subscribe(topic, "draw", consumer_type=pulsar.ConsumerType.KeyShared,
                             consumer_name=f"pod-{uuid.uuid4().hex[:5]}")
            for _ in range(consumers)]
    shares = range_shares(env.admin.topic_stats(topic), "draw")
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
    return max(counts) / (len(routing) / consumers), busiest_odds(shares, len(routing))


def main(argv: list[str]) -> int:
    trials = int(argv[0]) if argv else 20
    env = Env(os.environ.get("PULSAR_URL", "pulsar://127.0.0.1:6650"),
              os.environ.get("PULSAR_ADMIN_URL", "http://127.0.0.1:8080"))
    client = pulsar.Client(env.url, logger=native_logger())
    try:
        for spread in (1, 2, 4):
            results = [trial(client, env, 20, 4, spread) for _ in range(trials)]
            shares = sorted(busiest for busiest, _ in results)
            over = sum(share > 1.5 for share in shares)
            odds = sum(o for _, o in results) / trials
            even = busiest_odds([0.25] * 4, 20 * spread)
            print(f"20 keys, 4 consumers, key_spread {spread}: busiest > 1.5x fair share in "
                  f"{over}/{trials} trials, median busiest {shares[len(shares) // 2]:.2f}x; "
                  f"odds over random keys: {odds:.1%} with these ranges, {even:.1%} with even "
                  "ranges", flush=True)
    finally:
        client.close()
        env.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

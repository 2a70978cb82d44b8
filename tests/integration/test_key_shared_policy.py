"""Key_Shared consumers allow out-of-order delivery (transport/pulsar.py notes): the broker then
never holds a moved key back for its old owner's acks ("draining hashes", where Pulsar 4.x
Key_Shared dispatch has stalled). Checked on the real broker:

- a Key_Shared subscribe has the broker report ``allowOutOfOrderDelivery`` on the subscription;
- a worker joins a subscription held by consumers of either policy (the broker refuses a differing
  policy with ConsumerBusy: a fleet of strict consumers, mid rolling update, is joined with its
  policy, and says so);
- a subscription of another type is still refused, with the broker's own error;
- the broker keeps a subscription's policy while any consumer is connected: a fleet upgraded by
  a rolling update stays strict until every worker has left at once (README);
- ``ensure_subscription`` (the client's) does not join a fleet of the other policy.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pulsar
import pytest
from structlog.testing import capture_logs

from infinitic_py.admin import PulsarAdmin
from infinitic_py.transport.base import ConsumerSettings, SubscriptionType, TransportError
from infinitic_py.transport.pulsar import PulsarTransport

if TYPE_CHECKING:
    from tests.integration.conftest import BrokerInfo

pytestmark = pytest.mark.integration

SUB = "key-shared-policy"
KEY_SHARED = ConsumerSettings(subscription_type=SubscriptionType.KEY_SHARED,
                              receiver_queue_size=10)


@pytest.fixture
async def transport(pulsar_broker: BrokerInfo) -> AsyncIterator[PulsarTransport]:
    t = PulsarTransport(pulsar_broker.service_url, logger=logging.getLogger("test.pulsar"))
    try:
        yield t
    finally:
        await t.close()


@pytest.fixture
def raw(pulsar_broker: BrokerInfo) -> Iterator[pulsar.Client]:
    client = pulsar.Client(pulsar_broker.service_url,
                           logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def topic(unique_name: str) -> str:
    return f"persistent://public/default/key-shared-policy-{unique_name}"


def _subscription(admin: PulsarAdmin, topic: str) -> dict[str, Any]:
    sub: dict[str, Any] = admin.topic_stats(topic)["subscriptions"][SUB]
    return sub


async def test_a_key_shared_subscription_allows_out_of_order_delivery(
    transport: PulsarTransport, topic: str, admin: PulsarAdmin,
) -> None:
    consumer = await transport.subscribe(topic, SUB, KEY_SHARED)
    sub = _subscription(admin, topic)
    assert sub["type"] == "Key_Shared"
    assert sub["allowOutOfOrderDelivery"] is True, sub
    await consumer.close()


@pytest.mark.parametrize("fleet_out_of_order", [False, True], ids=["strict", "out_of_order"])
async def test_a_worker_joins_a_key_shared_fleet_of_either_policy(
    transport: PulsarTransport, raw: pulsar.Client, topic: str, admin: PulsarAdmin,
    fleet_out_of_order: bool,
) -> None:
    policy = pulsar.ConsumerKeySharedPolicy(allow_out_of_order_delivery=fleet_out_of_order)
    fleet = raw.subscribe(topic, SUB, consumer_type=pulsar.ConsumerType.KeyShared,
                          key_shared_policy=policy)
    with capture_logs() as logs:
        consumer = await transport.subscribe(topic, SUB, KEY_SHARED)
    sub = _subscription(admin, topic)
    assert len(sub["consumers"]) == 2
    assert sub["allowOutOfOrderDelivery"] is fleet_out_of_order
    said = [e for e in logs if e["event"] == "consumer.key_shared_strict_order"]
    assert len(said) == (0 if fleet_out_of_order else 1), logs
    await consumer.close()
    fleet.close()


async def test_a_subscription_of_another_type_is_still_refused(
    transport: PulsarTransport, raw: pulsar.Client, topic: str,
) -> None:
    held = raw.subscribe(topic, SUB, consumer_type=pulsar.ConsumerType.Shared)
    with pytest.raises(TransportError, match="ConsumerBusy"):
        await transport.subscribe(topic, SUB, KEY_SHARED)
    held.close()


async def test_a_subscription_keeps_strict_order_while_any_consumer_is_connected(
    pulsar_broker: BrokerInfo, raw: pulsar.Client, topic: str, admin: PulsarAdmin,
) -> None:
    """The broker sets a Key_Shared subscription's policy when its first consumer connects and
    keeps it while any consumer is connected: a fleet upgraded by a rolling update (each worker
    replaced while the others run) stays strict after the older workers are gone, its
    replacements join strict too (and say so); it allows out-of-order delivery again only once
    every worker has left it at the same time (the README tells operators)."""
    old = raw.subscribe(topic, SUB, consumer_type=pulsar.ConsumerType.KeyShared)
    transports = [PulsarTransport(pulsar_broker.service_url, logger=logging.getLogger("t"))
                  for _ in range(3)]
    try:
        with capture_logs() as logs:
            first = await transports[0].subscribe(topic, SUB, KEY_SHARED)
            old.close()  # the last older worker is gone
            second = await transports[1].subscribe(topic, SUB, KEY_SHARED)  # a replacement
        said = [e for e in logs if e["event"] == "consumer.key_shared_strict_order"]
        assert len(said) == 2, logs
        assert "while any consumer is connected" in said[1]["note"]
        sub = _subscription(admin, topic)
        assert (len(sub["consumers"]), sub["allowOutOfOrderDelivery"]) == (2, False)
        await first.close()
        await second.close()  # the whole fleet stopped at once
        with capture_logs() as logs:
            third = await transports[2].subscribe(topic, SUB, KEY_SHARED)
        assert not [e for e in logs if e["event"] == "consumer.key_shared_strict_order"]
        assert _subscription(admin, topic)["allowOutOfOrderDelivery"] is True
        await third.close()
    finally:
        for t in transports:
            await t.close()


async def test_ensure_subscription_does_not_join_a_strict_fleet(
    transport: PulsarTransport, raw: pulsar.Client, topic: str, admin: PulsarAdmin,
) -> None:
    """The client opens a consumer only to create the workers' subscription: on a fleet of the
    other policy it is refused, which says the subscription exists (the client logs that at
    debug level); it does not subscribe again with the fleet's policy nor warn the client's
    operator about the workers' policy."""
    fleet = raw.subscribe(topic, SUB, consumer_type=pulsar.ConsumerType.KeyShared)
    with capture_logs() as logs, pytest.raises(TransportError, match="ConsumerBusy"):
        await transport.ensure_subscription(topic, SUB, SubscriptionType.KEY_SHARED)
    assert not [e for e in logs if e["event"] == "consumer.key_shared_strict_order"], logs
    sub = _subscription(admin, topic)
    assert (len(sub["consumers"]), sub["allowOutOfOrderDelivery"]) == (1, False)
    fleet.close()

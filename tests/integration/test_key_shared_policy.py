"""Key_Shared consumers allow out-of-order delivery (transport/pulsar.py notes): the broker then
never holds a moved key back for its old owner's acks ("draining hashes", where Pulsar 4.x
Key_Shared dispatch has stalled). Checked on the real broker:

- a Key_Shared subscribe has the broker report ``allowOutOfOrderDelivery`` on the subscription;
- a worker joins a subscription held by consumers of either policy (the broker refuses a differing
  policy with ConsumerBusy: a fleet of strict consumers, mid rolling update, is joined with its
  policy, and says so);
- a subscription of another type is still refused, with the broker's own error.
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

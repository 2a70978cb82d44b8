"""Suite-wide hooks."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop and restart the broker run after every other test."""
    items.sort(key=lambda item: item.get_closest_marker("broker_outage") is not None)

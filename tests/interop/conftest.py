"""Fixtures for the Infinitic interop tests: the project's broker (shared with tests/integration)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import admin, pulsar_broker  # noqa: F401  (fixtures)

pytest.importorskip("fastavro", reason="the `infinitic` extra (fastavro) is not installed")

"""The worker daemon's GC settings: startup objects frozen, generation-0 threshold raised."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from infinitic_py.gc_tuning import DEFAULT_GEN0_THRESHOLD, tune_gc_for_worker


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


@pytest.mark.usefixtures("restore_gc")
def test_freezes_startup_objects_and_raises_gen0_threshold() -> None:
    gc.unfreeze()
    startup = [[i] for i in range(100)]  # tracked objects alive at startup
    previous = tune_gc_for_worker()
    assert gc.get_threshold() == (DEFAULT_GEN0_THRESHOLD, previous[1], previous[2])
    assert gc.get_freeze_count() >= len(startup)
    assert not any(o is startup for o in gc.get_objects())  # out of the collector's reach


@pytest.mark.usefixtures("restore_gc")
def test_zero_keeps_python_thresholds() -> None:
    before = gc.get_threshold()
    tune_gc_for_worker(0)
    assert gc.get_threshold() == before


def test_negative_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="gen0_threshold"):
        tune_gc_for_worker(-1)


@pytest.mark.usefixtures("restore_gc")
def test_worker_from_config_applies_the_configured_threshold() -> None:
    from infinitic_py.config import config_from_dict
    from infinitic_py.worker import Worker

    config = config_from_dict({
        "pulsar": {"url": "memory://gc-test"},
        "worker": {"gc_gen0_threshold": 12_345, "http_port": 0},
        "services": [{"class": "tests.unit.worker.parts:Jobs"}],
    })
    Worker.from_config(config)
    assert gc.get_threshold()[0] == 12_345


@pytest.mark.usefixtures("restore_gc")
def test_a_worker_built_in_code_leaves_the_gc_alone_by_default() -> None:
    from infinitic_py.worker import Worker

    before = gc.get_threshold()
    Worker("memory://gc-test").tune_gc()
    assert gc.get_threshold() == before

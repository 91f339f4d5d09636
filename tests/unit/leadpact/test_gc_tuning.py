"""While a service serves, the collector skips the startup heap and collects the young
generation less often; stopping puts it back as it was."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from leadpact.gc_tuning import GcTuning


@pytest.fixture(autouse=True)
def untouched_collector() -> Iterator[None]:
    before = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


async def test_start_freezes_the_heap_and_raises_the_young_threshold() -> None:
    before = gc.get_threshold()
    tuning = GcTuning(5000)
    await tuning.start()
    assert gc.get_threshold() == (5000, before[1], before[2])
    assert gc.get_freeze_count() > 0
    await tuning.stop()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_zero_leaves_the_collector_alone() -> None:
    before = gc.get_threshold()
    tuning = GcTuning(0)
    await tuning.start()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    await tuning.stop()
    assert gc.get_threshold() == before


async def test_a_higher_threshold_already_set_is_kept() -> None:
    gc.set_threshold(20_000, 10, 10)
    tuning = GcTuning(5000)
    await tuning.start()
    assert gc.get_threshold()[0] == 20_000
    await tuning.stop()
    assert gc.get_threshold() == (20_000, 10, 10)


async def test_the_last_of_several_apps_to_stop_restores_the_collector() -> None:
    before = gc.get_threshold()
    first, second = GcTuning(5000), GcTuning(5000)
    await first.start()
    await second.start()
    await first.stop()
    assert gc.get_threshold()[0] == 5000
    assert gc.get_freeze_count() > 0
    await first.stop()  # stopping twice counts once
    assert gc.get_threshold()[0] == 5000
    await second.stop()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0

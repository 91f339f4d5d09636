"""A running service has the collector tuned for serving (see ``leadpact.gc_tuning``), and a
setting switches that off."""

from __future__ import annotations

import gc

import pytest

from tests.fixtures.system import SystemFactory


async def test_a_running_service_tunes_the_collector(system_factory: SystemFactory) -> None:
    await system_factory(only=["scoring"])

    assert gc.get_threshold()[0] == 5000
    assert gc.get_freeze_count() > 0


async def test_the_tuning_can_be_switched_off(
    system_factory: SystemFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = gc.get_threshold()
    assert before[0] != 5000  # an earlier service put the collector back when it stopped
    monkeypatch.setenv("LEADPACT_GC_GEN0_THRESHOLD", "0")
    await system_factory(only=["scoring"])

    assert gc.get_threshold() == before

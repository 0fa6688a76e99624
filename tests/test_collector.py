"""The garbage-collector pause around bulk work and long-lived imports."""

from __future__ import annotations

import gc

import pytest

from transforms.collector import paused_gc


@pytest.fixture
def collections():
    runs: list[str] = []

    def count(phase, info):
        if phase == "start":
            runs.append(info["generation"])

    gc.callbacks.append(count)
    yield runs
    gc.callbacks.remove(count)


def _cycles(n: int) -> list:
    made = []
    for _ in range(n):
        a: list = []
        a.append(a)  # a container the collector tracks
        made.append(a)
    return made


def test_no_collection_inside_and_the_collector_back_on_after(collections):
    assert gc.isenabled()
    with paused_gc():
        assert not gc.isenabled()
        kept = _cycles(50_000)
        inside = list(collections)
    assert inside == [] and gc.isenabled()
    _cycles(50_000)
    assert collections  # allocations trigger collections again
    assert len(kept) == 50_000


def test_a_disabled_collector_stays_disabled_even_if_the_block_raises():
    gc.disable()
    try:
        with pytest.raises(RuntimeError), paused_gc():
            raise RuntimeError("boom")
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_freeze_moves_what_the_block_made_to_the_permanent_generation():
    before = gc.get_freeze_count()
    try:
        with paused_gc(freeze=True):
            kept = _cycles(10_000)
        assert gc.get_freeze_count() >= before + 10_000 and len(kept) == 10_000
        with pytest.raises(RuntimeError), paused_gc(freeze=True):
            raise RuntimeError("nothing frozen when the block fails")
    finally:
        gc.unfreeze()

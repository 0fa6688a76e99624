"""Shared fixtures: an in-process Beam pipeline (never the Prism download path); the real
Pub/Sub emulator, one per test module."""

from __future__ import annotations

import os

import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline

from tests.pubsub_emulator import start_emulator


@pytest.fixture
def pipeline():
    """A TestPipeline on the in-process FnApiRunner; runs when the ``with`` block exits."""
    return TestPipeline(runner=FnApiRunner(), blocking=True)


@pytest.fixture(scope="module")
def pubsub_emulator(tmp_path_factory):
    """A running emulator (``.host`` for ``PUBSUB_EMULATOR_HOST``); skipped when it is not
    installed, except under ``CI=true``."""
    emulator = start_emulator(tmp_path_factory.mktemp("emulator"))
    if emulator is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("the Pub/Sub emulator is not installed (CI=true: required)")
        pytest.skip("the Pub/Sub emulator is not installed")
    yield emulator
    emulator.stop()

"""Shared fixtures: an in-process Beam pipeline (never the Prism download path)."""

from __future__ import annotations

import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.test_pipeline import TestPipeline


@pytest.fixture
def pipeline():
    """A TestPipeline on the in-process FnApiRunner; runs when the ``with`` block exits."""
    return TestPipeline(runner=FnApiRunner(), blocking=True)

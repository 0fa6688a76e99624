"""A speed trick for Great Expectations: each expectation's configuration built once per run.

GX 1.x rebuilds an expectation's ``ExpectationConfiguration`` (a pydantic ``dict()`` of the
expectation, a regex over its class name, a new pydantic model) every time its
``configuration`` property is read, and while a suite runs it reads it about 80 times per
expectation (once per domain, success and runtime keyword, in each of several passes). On
the benchmark output that was a fifth of the suites' CPU (0.8-1.0 of 4.5 CPU-s for 558
expectations, most tables being small: the cost is per expectation, not per row).

Inside :func:`configurations_memoized` the property returns, for the same expectation
object, the configuration it built the first time. This holds because nothing changes an
expectation while a suite runs (GX builds the expectations it validates from the suite's
configurations, then only reads them); ``tests/test_validate.py`` checks that results with
and without the memo are identical, failures included. Outside the block, and in other
threads, the property is GX's own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_local = threading.local()
_installed = threading.Lock()


def _install() -> None:
    """Wrap ``Expectation.configuration`` (once per process) to consult the active memo."""
    from great_expectations.expectations.expectation import Expectation

    with _installed:
        built = Expectation.configuration.fget
        if getattr(built, "_vccflow_memo", False):
            return

        def configuration(self: Any) -> Any:
            memo = getattr(_local, "memo", None)
            if memo is None:
                return built(self)
            hit = memo.get(id(self))
            if hit is None:  # the object is kept with its configuration: its id stays its own
                hit = memo[id(self)] = (self, built(self))
            return hit[1]

        configuration._vccflow_memo = True
        configuration.__doc__ = built.__doc__
        Expectation.configuration = property(configuration)


@contextmanager
def configurations_memoized() -> Iterator[None]:
    """Within the block, in this thread, each expectation's configuration is built once."""
    _install()
    outer = getattr(_local, "memo", None)
    _local.memo = {} if outer is None else outer
    try:
        yield
    finally:
        _local.memo = outer

"""Python's cyclic garbage collector around blocks that build many long-lived or acyclic
objects (imports, events, rows). Standard library only: the ``vccflow`` command uses it
before it imports Beam."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_gc(freeze: bool = False) -> Iterator[None]:
    """The collector off for the block: collections triggered by its allocations would only
    scan its objects again and again. With ``freeze``, what exists once the block is done
    (e.g. the modules it imported) moves to the permanent generation, which later
    collections skip; for a process that keeps it to the end."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        if freeze:
            gc.freeze()
    finally:
        if enabled:
            gc.enable()

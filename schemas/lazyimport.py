"""Importing a library without executing the parts of its dependencies it never uses.

Great Expectations imports SciPy (``scipy.stats``, for expectations vccflow's suites do not
use) and Altair (charts for notebooks) when it is imported: 1.0-1.4 CPU-s of the ~3 CPU-s
its import costs, paid by every batch run. :func:`lazily` imports such packages as
:class:`importlib.util.LazyLoader` modules while a block runs: a module is created at once
and executed on the first access to one of its attributes, so one that is imported and
never used costs nothing, and one that is used is loaded then, as it would have been.
Standard library only.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class _LazyFinder:
    """Finds the modules of ``packages`` (and their submodules) with the other finders and
    loads them lazily; extension modules (compiled, no lazy loading) load as usual."""

    def __init__(self, packages: frozenset[str]) -> None:
        self.packages = packages

    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] not in self.packages:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is None:
                continue
            loader = spec.loader
            compiled = isinstance(loader, importlib.machinery.ExtensionFileLoader)
            if loader is not None and hasattr(loader, "exec_module") and not compiled:
                spec.loader = importlib.util.LazyLoader(loader)
            return spec
        return None


@contextmanager
def lazily(*packages: str) -> Iterator[None]:
    """Modules of ``packages`` first imported inside the block are loaded on first use."""
    finder = _LazyFinder(frozenset(packages))
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)

"""How the batch job's processes allocate memory: freed memory is reused, not handed back.

A batch run moves its data through large buffers again and again (8 MiB reads, 30 MB
messages between the runner and its workers, Arrow columns, Parquet pages). glibc's malloc
serves such sizes with a fresh ``mmap`` and gives them back with ``munmap`` when freed
(and trims the top of its heap beyond 128 KiB of free space), so every buffer is faulted
in page by page again. On the project's virtual machines a first touch is dear, and
dearer still when the memory was free long enough to be reported to the host (free page
reporting, ``page_reporting.page_reporting_order`` on the kernel command line): the next
touch is then a fault in the host too. On the benchmark this cost 0.9M minor faults and
3-8 s of system time per run, depending on the machine's state (bench/README.md).

:func:`keep_freed_memory` tells glibc to serve every size from its heap and to keep what
is freed there (:data:`SETTINGS`): a process then faults in each page of its peak once.
The price is that a process keeps its peak until it exits, which suits the batch job's
short-lived processes (not a long-running one: the streaming job does not call it).
Arrow's buffers are allocated through the same malloc (:data:`ARROW_POOL`) instead of
Arrow's bundled allocator, which returns freed pages to the kernel within milliseconds.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: ``mallopt`` parameters (glibc's ``malloc.h``) and their values: all threads share one
#: arena (a thread's own arena is a separate heap, trimmed and refilled on its own), no
#: size is served by ``mmap``, the heap is never trimmed, and it grows 64 MiB at a time.
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX, M_ARENA_MAX = -1, -2, -4, -8
SETTINGS = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20))
#: Arrow's default memory pool in processes started after :func:`keep_freed_memory`.
ARROW_POOL = "system"


def keep_freed_memory() -> bool:
    """Apply :data:`SETTINGS` to this process's malloc (inherited by processes it forks) and
    make :data:`ARROW_POOL` the default Arrow pool of this process (unless pyarrow is already
    imported) and of the processes it starts (unless ``ARROW_DEFAULT_MEMORY_POOL`` is set).
    Returns whether malloc took the settings: False off Linux or with another C library
    (musl has no ``mallopt``), which is harmless. Call it first thing, before threads start."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", ARROW_POOL)
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return all([mallopt(param, value) == 1 for param, value in SETTINGS])

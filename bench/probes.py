"""What the machine gives right now: figures recorded next to every benchmark run.

Two machines of the same type can differ in what the benchmark's jobs pay for the same work
(see bench/README.md, "Why two machines of one type differ"), so each run records:

- :func:`spin_seconds`: a pure-Python busy loop, timed in CPU seconds (the speed of one core
  on branchy interpreter code);
- :func:`memory_seconds`: CPU seconds to copy a buffer larger than the caches a few times
  (memory bandwidth, which neighbours on the host share);
- :func:`fault_cost`: microseconds per first touch of fresh anonymous memory, right after it
  was taken and after it has been free for a few seconds (under free page reporting, memory
  freed for a while is returned to the host and its next touch is a host-level fault);
- :func:`kernel_settings`: the kernel command line's memory options, transparent huge pages.

Standard library only, Linux figures where the file they read exists (None elsewhere).
``python bench/probes.py`` prints :func:`snapshot` as JSON: the benchmark runs it so, since
a process's peak memory is inherited by the processes it starts (their ``ru_maxrss``).
"""

from __future__ import annotations

import json
import mmap
import os
import resource
import time
from pathlib import Path

PAGE = mmap.PAGESIZE


def spin_seconds(n: int = 5_000_000) -> float:
    """CPU seconds of ``n`` iterations of a pure-Python loop."""
    t0 = time.process_time()
    x = 0
    for i in range(n):
        x += i
    return round(time.process_time() - t0, 3)


def memory_seconds(mib: int = 512, rounds: int = 4) -> float:
    """CPU seconds to copy a ``mib`` MiB buffer ``rounds`` times (both buffers touched first)."""
    src = bytearray(os.urandom(1 << 20)) * mib
    dst = bytearray(len(src))
    t0 = time.process_time()
    for _ in range(rounds):
        dst[:] = src
    elapsed = time.process_time() - t0
    del src, dst
    return round(elapsed, 3)


def _touch(size: int) -> tuple[float, int]:
    """Wall seconds and minor faults to map ``size`` fresh bytes and write one byte per page."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    t0 = time.perf_counter()
    with mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) as m:
        for offset in range(0, size, PAGE):
            m[offset] = 1
        elapsed = time.perf_counter() - t0
    return elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def fault_cost(mib: int = 256, idle_seconds: float = 4.0) -> dict:
    """Microseconds of wall time per page fault on ``mib`` MiB of fresh memory: taken again at
    once after it was freed (``recycled_us``), and after ``idle_seconds`` without it
    (``after_idle_us``; free page reporting runs every 2 s)."""
    size = mib << 20
    _touch(size)  # warm: the first touch of the machine's memory can be dearer still
    recycled = _touch(size)
    time.sleep(idle_seconds)
    idle = _touch(size)
    per = lambda r: round(r[0] / max(r[1], 1) * 1e6, 2)  # noqa: E731
    return {"mib": mib, "recycled_us": per(recycled), "after_idle_us": per(idle), "idle_seconds": idle_seconds}


def kernel_settings() -> dict:
    """Memory options of the kernel command line and the transparent huge page mode."""
    out: dict = {}
    try:
        words = Path("/proc/cmdline").read_text().split(" -- ")[0].split()
        out["cmdline"] = [w for w in words if w.startswith(("page_reporting", "deferred_init", "transparent_hugepage"))]
    except OSError:
        out["cmdline"] = None
    try:
        out["thp"] = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        out["thp"] = None
    return out


def cpu_details() -> dict:
    """CPU flags that change how fast vectorised code runs (AVX-512, AVX2), cache size and clock
    as ``/proc/cpuinfo`` shows them (a virtual machine may hide the model's name)."""
    info: dict = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("cache size", "cpu MHz", "flags") and key not in info:
                info[key] = value.strip()
    except OSError:
        return {}
    flags = set(info.pop("flags", "").split())
    info["simd"] = sorted(f for f in flags if f in ("avx2", "avx512f", "avx512bw", "avx512vl", "sse4_2"))
    return info


def snapshot(with_faults: bool = True) -> dict:
    """All of the above at once (the fault probe takes a few seconds)."""
    out = {
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "spin_cpu_seconds": spin_seconds(),
        "memory_copy_cpu_seconds": memory_seconds(),
    }
    if with_faults:
        out["fault_cost"] = fault_cost()
    return out


if __name__ == "__main__":
    print(json.dumps(snapshot()))

"""Scale check (issue 18, item 3): per-process peak memory of ``vccflow batch`` on the
benchmark's data set and on a multiple of it, with the default shard rule.

    .venv/bin/python bench/scale.py [--scales 1,3] [--keep-data]

For each scale k: a data set of k times ``bench/run.py``'s lines (seed 1, 4k files: an
archive grows by files), generated as ``make bench`` does (kept under ``bench/data/``
with ``--keep-data``); one ``vccflow batch`` run with its default ``--shards`` (logged
by the job), while every process of the job is sampled every 0.1 s with psutil. Prints
and writes to ``bench/out/scale.json``, per scale: the shards, wall and CPU time, and
the peak RSS of each process, grouped by role (the runner holds the local runner's
in-memory shuffle, which Dataflow's shuffle service replaces; the SDK workers are
what a Dataflow worker runs; the validation workers read the finished tables).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from run import BIN, OUT, TreeSampler, ensure_dataset, plan_dataset, say  # noqa: E402

BASE_LINES = 1_500_000


def role(proc: psutil.Process, root_pid: int) -> str:
    """What a process of the job is, from where it sits in the tree: the command itself (the
    runner), the validation workers (named ``vccflow-validate``), the worker zygote (a fork
    of the command), the small clients asking it for a worker (``pipelines.worker --via``),
    the zygote's forks (the SDK workers)."""
    if proc.pid == root_pid:
        return "runner (command, local shuffle)"
    try:
        parent, name = proc.ppid(), proc.name()
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "other"
    if name.startswith("vccflow-valid"):  # named so by transforms.validation
        return "validation worker"
    if parent == root_pid:
        return "worker client (--via)" if "pipelines.worker" in cmd else "worker zygote"
    return "SDK worker"


def sample_job(cmd: list[str], log: Path, interval: float = 0.1) -> dict:
    """Run ``cmd``; per-process peak RSS (by pid, with its role), wall and CPU seconds."""
    log.parent.mkdir(parents=True, exist_ok=True)
    peaks: dict[int, list] = {}
    with open(log, "wb") as sink:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        last_say = t0
        sampler = TreeSampler(proc.pid, interval)
        for rss in sampler:
            for p, size in rss:
                entry = peaks.setdefault(p.pid, [0, "other"])
                entry[0] = max(entry[0], size)
                seen = role(p, proc.pid)  # as last seen: a validation worker names itself once forked
                entry[1] = seen if seen != "other" else entry[1]
            if time.perf_counter() - last_say > 15:
                last_say = time.perf_counter()
                say(f"      ... {last_say - t0:.0f}s, {len(rss)} processes")
    status, usage = sampler.status, sampler.usage
    wall = time.perf_counter() - t0
    text = log.read_text(errors="replace")
    shards = re.search(r"(\d+) shards", text)
    return {
        "exit_code": os.waitstatus_to_exitcode(status),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "shards": int(shards.group(1)) if shards else None,
        "processes": sorted(([r, pid, rss] for pid, (rss, r) in peaks.items()), key=lambda x: (x[0], -x[2])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scales", default="1,3", help="multiples of the bench data set (default 1,3)")
    parser.add_argument("--keep-data", action="store_true", help="keep the generated data sets")
    args = parser.parse_args(argv)
    results = []
    for k in (int(x) for x in args.scales.split(",")):
        plan = plan_dataset(BASE_LINES * k, 1, 4 * k)
        data, info = ensure_dataset(plan, regenerate=False)
        size = sum(p.stat().st_size for p in data.glob("notifications-*.jsonl"))
        out = OUT / f"scale-{k}"
        cmd = [str(BIN / "vccflow"), "batch", "--input", str(data / "notifications-*.jsonl")]
        cmd += ["--output", str(out)]
        say(f"scale {k}: {info['counts']['lines']:,} lines, {size / 2**20:,.0f} MiB: vccflow batch")
        r = sample_job(cmd, OUT / "logs" / f"scale-{k}.log")
        r.update(scale=k, lines=info["counts"]["lines"], input_mib=round(size / 2**20))
        results.append(r)
        say(f"  exit {r['exit_code']}, {r['shards']} shards, {r['wall_seconds']} s wall, {r['cpu_seconds']} CPU-s")
        for name, pid, rss in r["processes"]:
            say(f"  {name:<34} pid {pid:<8} peak RSS {rss / 2**20:8,.0f} MiB")
        if not args.keep_data:
            shutil.rmtree(data)
        shutil.rmtree(out, ignore_errors=True)
    (OUT / "scale.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["exit_code"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The vccflow benchmark (``make bench``): ``vccflow batch`` against a DuckDB SQL reference.

    .venv/bin/python bench/run.py [--lines 1500000] [--seed 1] [--runs 1] [--keep-data]

1. Generates about ``--lines`` notification lines with ``vccflow generate`` (duplicates,
   disorder and malformed lines; ``--files`` plain ``.jsonl`` files) into
   ``bench/data/<params>/``, or reuses that folder when a previous run kept it.
2. Runs ``vccflow batch`` on it (a subprocess, output ``bench/out/vccflow``: all tables,
   validated) and measures wall time and peak memory.
3. Runs the DuckDB reference (``bench/reference.py`` with ``bench/duckdb_reference.sql``, a
   subprocess too) on the same files: per-channel metrics in plain SQL.
4. Checks that the two agree on every channel (ids, anomalous channels, and each metric of
   the others); any mismatch is printed and makes the exit status 1.
5. Measures the streaming sessionizer on a TestStream replay of the first
   ``--stream-lines`` lines, if the streaming job exists.
6. Prints lines, events/s, wall time and peak RSS of each, the ratios vccflow/DuckDB and the
   machine, and writes everything to ``bench/out/results.json``.

Memory: the peak RSS of a job is the larger of (a) the highest sum of the RSS of the process
and all of its descendants, sampled every ``--sample-interval`` seconds with psutil, and (b)
the process's own ``ru_maxrss`` from ``wait4`` (exact, but a single process). Summing RSS
counts pages shared between processes once per process, so (a) is an upper bound for
multi-process jobs. Wall time is from ``Popen`` to exit, interpreter start-up included.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import probes

from schemas.outputs import CHANNEL_METRICS as METRICS

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
DATA = BENCH / "data"
OUT = BENCH / "out"
BIN = Path(sys.executable).parent

#: Notification lines per interaction the generator writes with its default duplicate and
#: malformed shares, with 30 interactions per agent (measured: 1,494,888 lines for 115,920
#: interactions and 3,864 agents, seed 1).
LINES_PER_INTERACTION = 12.9
#: Interactions per agent: keeps the simulation to one day (the generator's PER_AGENT_DAY).
INTERACTIONS_PER_AGENT = 30

#: Columns compared on every channel; the non-anomalous ones are compared on METRICS too.
ALWAYS = ("event_count", "duplicate_count", "first_event_us", "last_event_us")


def say(msg: str) -> None:
    print(msg, flush=True)


# --- data set -----------------------------------------------------------------------------


def plan_dataset(lines: int, seed: int, files: int) -> dict:
    """Generator options for about ``lines`` lines."""
    interactions = max(20, round(lines / LINES_PER_INTERACTION))
    agents = max(3, math.ceil(interactions / INTERACTIONS_PER_AGENT))
    return {"interactions": interactions, "agents": agents, "seed": seed, "files": files}


def dataset_dir(plan: dict) -> Path:
    return DATA / f"i{plan['interactions']}-a{plan['agents']}-s{plan['seed']}-f{plan['files']}-shuffle"


def ensure_dataset(plan: dict, regenerate: bool) -> tuple[Path, dict]:
    """The data set folder (generated unless a complete one is there) and its line counts."""
    folder = dataset_dir(plan)
    marker = folder / "_complete.json"
    if marker.exists() and not regenerate:
        info = json.loads(marker.read_text(encoding="utf-8"))
        say(f"[1/5] data set: reusing {folder.relative_to(ROOT)} ({info['counts']['lines']:,} lines)")
        return folder, info
    if folder.exists():
        shutil.rmtree(folder)
    cmd = [
        str(BIN / "vccflow"),
        "generate",
        "--output",
        str(folder),
        "--agents",
        str(plan["agents"]),
        "--interactions",
        str(plan["interactions"]),
        "--seed",
        str(plan["seed"]),
        "--files",
        str(plan["files"]),
        "--shuffle",
    ]
    say(f"[1/5] data set: generating into {folder.relative_to(ROOT)}: {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    counts = _truth_counts(folder / "truth.json")
    info = {
        "plan": plan,
        "counts": counts,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "generate_seconds": round(time.perf_counter() - t0, 1),
        "bytes": sum(p.stat().st_size for p in folder.glob("notifications-*.jsonl")),
    }
    marker.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    say(f"      generated in {info['generate_seconds']}s, {info['bytes'] / 2**20:,.0f} MiB")
    return folder, info


def _truth_counts(path: Path) -> dict:
    """``counts`` of truth.json, read without loading the (large) rest of it."""
    with open(path, "rb") as f:
        for line in f:
            if line.startswith(b'"counts":'):
                return json.loads(line[len(b'"counts":') :].rstrip(b",\n"))
    raise SystemExit(f"no counts in {path}")


# --- measuring a job ------------------------------------------------------------------------


def _tee(stream, log, prefix: str, echo: bool) -> None:
    for raw in iter(stream.readline, b""):
        log.write(raw)
        log.flush()
        if echo:
            print(prefix + raw.decode("utf-8", errors="replace").rstrip(), flush=True)


class TreeSampler:
    """Iterating samples the process ``pid`` and all its descendants every ``interval`` s:
    each item is a list of ``(psutil.Process, RSS bytes)``. The iteration ends when ``pid``
    exits; it is then reaped, and ``status`` and ``usage`` (``os.wait4``'s: its own CPU time
    and that of the children it reaped) are set."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid, self.interval = pid, interval
        self.status = self.usage = None

    def __iter__(self):
        import psutil

        root = psutil.Process(self.pid)
        while True:
            done, status, usage = os.wait4(self.pid, os.WNOHANG)
            if done:
                self.status, self.usage = status, usage
                return
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                procs = []
            rss = []
            for p in procs:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    rss.append((p, p.memory_info().rss))
            yield rss
            time.sleep(self.interval)


def measure(
    cmd: list[str], log_path: Path, interval: float, echo: bool = True, cwd: Path = ROOT, env: dict | None = None
) -> dict:
    """Run ``cmd``; wall time, peak RSS (process tree sampled, and ru_maxrss), CPU time (user and
    system), minor and major page faults (the process and every descendant it reaped), the
    load average before it started, and the exit code."""

    log_path.parent.mkdir(parents=True, exist_ok=True)
    load = round(os.getloadavg()[0], 2)
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        reader = threading.Thread(target=_tee, args=(proc.stdout, log, "      | ", echo), daemon=True)
        reader.start()
        peak_tree = peak_procs = samples = 0
        sampler = TreeSampler(proc.pid, interval)
        for rss in sampler:
            samples += 1
            total = sum(r for _, r in rss)
            if total > peak_tree:
                peak_tree, peak_procs = total, len(rss)
        status, usage = sampler.status, sampler.usage
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        reader.join(timeout=5)
        proc.stdout.close()
    maxrss = usage.ru_maxrss * 1024  # KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "exit_code": proc.returncode,
        "wall_seconds": round(wall, 3),
        "peak_rss_bytes": max(peak_tree, maxrss),
        "peak_tree_rss_sampled_bytes": peak_tree,
        "processes_at_peak": peak_procs,
        "max_single_process_rss_bytes": maxrss,
        "cpu_seconds": round(cpu, 2),
        "user_seconds": round(usage.ru_utime, 2),
        "system_seconds": round(usage.ru_stime, 2),
        "minor_faults": usage.ru_minflt,
        "major_faults": usage.ru_majflt,
        "load_average_before": load,
        "cores_used": round(cpu / wall, 2) if wall else None,
        "rss_samples": samples,
        "log": str(log_path.relative_to(ROOT)),
    }


#: Figures of a run whose median over the runs is reported next to the best run's.
MEDIANS = ("wall_seconds", "cpu_seconds", "system_seconds", "minor_faults", "load_average_before")


def _best(runs: list[dict]) -> dict:
    """Best-of-N: the fastest run, with the highest peak RSS seen over all runs, and the median
    of each of :data:`MEDIANS` over the runs (``<name>_median``)."""
    best = dict(min(runs, key=lambda r: r["wall_seconds"]))
    best["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in runs)
    for name in MEDIANS:
        best[f"{name}_median"] = round(statistics.median(r[name] for r in runs), 3)
    return best


# --- the two jobs ---------------------------------------------------------------------------


def code_env(code: Path) -> dict:
    """The environment that runs vccflow from the checkout ``code``: first on the path, so that
    every process of the job (the command, its worker zygote, the validation workers) imports
    that checkout's modules, whatever checkout the virtualenv was installed from."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    return env


def run_vccflow(data: Path, args, i: int, code: Path = ROOT, name: str = "vccflow") -> dict:
    out = OUT / name
    if out.exists():
        shutil.rmtree(out)  # a fresh output each time (a re-run would also remove the previous one)
    cmd = [str(BIN / "vccflow"), "batch", "--input", str(data / "notifications-*.jsonl"), "--output", str(out)]
    cmd += args.vccflow_arg
    which = "" if code == ROOT else f" from {code}"
    say(f"[2/5] vccflow batch{which} (run {i + 1}/{args.runs}): {' '.join(cmd[1:])}")
    log = OUT / "logs" / f"{name}-{i + 1}.log"
    result = measure(cmd, log, args.sample_interval, echo=not args.quiet, cwd=code, env=code_env(code))
    report_path = out / "_run_report.json"
    if result["exit_code"] == 0 and report_path.exists():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        validation = report.get("validation", {})
        result["report"] = {
            "lines": report.get("lines"),
            "valid_events": report.get("valid_events"),
            "duplicates_dropped": report.get("duplicates_dropped"),
            "dead_letters": report.get("dead_letters"),
            "accounting_closes": report.get("accounting_closes"),
            "rows": report.get("rows"),
            "validation_success": validation.get("success"),
            "validation_summary": validation.get("summary"),
            "job_wall_seconds": report.get("wall_seconds"),
        }
    _print_job(name, result)
    return result


def run_duckdb(data: Path, args, i: int) -> dict:
    out = OUT / "duckdb"
    if out.exists():
        shutil.rmtree(out)
    cmd = [str(BIN / "python"), str(BENCH / "reference.py"), "--input", str(data / "notifications-*.jsonl")]
    cmd += ["--output", str(out)]
    say(f"[3/5] DuckDB reference (run {i + 1}/{args.runs}): bench/reference.py --input ... --output {out}")
    result = measure(cmd, OUT / "logs" / f"duckdb-{i + 1}.log", args.sample_interval, echo=not args.quiet)
    stats = out / "reference_stats.json"
    if result["exit_code"] == 0 and stats.exists():
        result["report"] = json.loads(stats.read_text(encoding="utf-8"))
    _print_job("duckdb", result)
    return result


def _print_job(name: str, r: dict) -> None:
    status = "ok" if r["exit_code"] == 0 else f"FAILED (exit {r['exit_code']}, log {r['log']})"
    say(
        f"      {name}: {status}, {r['wall_seconds']:.1f}s wall, peak RSS {r['peak_rss_bytes'] / 2**20:,.0f} MiB "
        f"(summed over its processes), {r['cpu_seconds']:.1f}s CPU ({r['user_seconds']:.1f} user, "
        f"{r['system_seconds']:.1f} system; {r['cores_used']} cores), {r['minor_faults']:,} minor faults, "
        f"load average {r['load_average_before']} before"
    )


# --- agreement --------------------------------------------------------------------------------


def compare(limit: int = 10) -> dict:
    """Compare vccflow's channel_sessions with the reference's channel_metrics, channel by channel."""
    import duckdb

    con = duckdb.connect()
    sessions = OUT / "vccflow" / "channel_sessions"
    con.execute(
        "CREATE TABLE v AS SELECT *, epoch_us(first_event_at) AS first_event_us, "
        "epoch_us(last_event_at) AS last_event_us FROM read_parquet(?, hive_partitioning = true)",
        [str(sessions / "**" / "*.parquet")],
    )
    con.execute("CREATE TABLE r AS SELECT * FROM read_parquet(?)", [str(OUT / "duckdb" / "channel_metrics.parquet")])

    def scalar(sql: str) -> int:
        return con.execute(sql).fetchone()[0]

    def examples(sql: str) -> list:
        return [row[0] if len(row) == 1 else list(row) for row in con.execute(sql + f" LIMIT {limit}").fetchall()]

    result = {
        "channels_vccflow": scalar("SELECT count(*) FROM v"),
        "channels_reference": scalar("SELECT count(*) FROM r"),
        "duplicate_channel_ids_vccflow": scalar("SELECT count(*) - count(DISTINCT channel_id) FROM v"),
        "only_in_vccflow": scalar("SELECT count(*) FROM v ANTI JOIN r USING (channel_id)"),
        "only_in_reference": scalar("SELECT count(*) FROM r ANTI JOIN v USING (channel_id)"),
        "anomalous_reference": scalar("SELECT count(*) FROM r WHERE anomalous"),
        "anomalous_vccflow": scalar("SELECT count(*) FROM v WHERE anomaly_count > 0"),
        "anomaly_flag_disagreements": scalar(
            "SELECT count(*) FROM v JOIN r USING (channel_id) WHERE (v.anomaly_count > 0) <> r.anomalous"
        ),
        "compared_channels": scalar("SELECT count(*) FROM v JOIN r USING (channel_id) WHERE NOT r.anomalous"),
        "mismatches_by_column": {},
        "examples": {},
    }
    if result["only_in_vccflow"]:
        result["examples"]["only_in_vccflow"] = examples("SELECT channel_id FROM v ANTI JOIN r USING (channel_id)")
    if result["only_in_reference"]:
        result["examples"]["only_in_reference"] = examples("SELECT channel_id FROM r ANTI JOIN v USING (channel_id)")
    if result["anomaly_flag_disagreements"]:
        result["examples"]["anomaly_flag"] = examples(
            "SELECT channel_id, v.anomaly_count, v.anomalies, r.anomalous FROM v JOIN r USING (channel_id) "
            "WHERE (v.anomaly_count > 0) <> r.anomalous"
        )
    for col in ALWAYS + METRICS:
        where = f"v.{col} IS DISTINCT FROM r.{col}" + ("" if col in ALWAYS else " AND NOT r.anomalous")
        n = scalar(f"SELECT count(*) FROM v JOIN r USING (channel_id) WHERE {where}")
        if n:
            result["mismatches_by_column"][col] = n
            result["examples"][col] = examples(
                f"SELECT channel_id, v.{col} AS vccflow, r.{col} AS reference FROM v JOIN r USING (channel_id) "
                f"WHERE {where} ORDER BY channel_id"
            )
    result["agree"] = not (
        result["duplicate_channel_ids_vccflow"]
        or result["only_in_vccflow"]
        or result["only_in_reference"]
        or result["anomaly_flag_disagreements"]
        or result["mismatches_by_column"]
    )
    return result


def print_agreement(a: dict) -> None:
    say(
        f"      channels: vccflow {a['channels_vccflow']:,}, reference {a['channels_reference']:,}; "
        f"anomalous (excluded from the metric comparison): reference {a['anomalous_reference']:,}, "
        f"vccflow {a['anomalous_vccflow']:,}; metrics compared on {a['compared_channels']:,} channels"
    )
    if a["agree"]:
        say(f"      AGREE on every channel ({len(ALWAYS + METRICS)} columns)")
        return
    say("      DISAGREE:")
    for key in ("duplicate_channel_ids_vccflow", "only_in_vccflow", "only_in_reference", "anomaly_flag_disagreements"):
        if a[key]:
            say(f"        {key}: {a[key]:,}")
    for col, n in a["mismatches_by_column"].items():
        say(f"        {col}: {n:,} channels")
    for key, rows in a["examples"].items():
        say(f"        e.g. {key}:")
        for row in rows:
            say(f"          {row}")


# --- streaming replay -------------------------------------------------------------------------


def _zero_clock() -> float:
    """The replay's wall clock: 0, so the stream's inactivity timers follow event time only."""
    return 0.0


#: Rows the replay's sink has seen, by table (the local runner runs in this process).
REPLAY_ROWS: collections.Counter = collections.Counter()


def count_row(element: tuple) -> None:
    """The replay's sink: counts a ``(table, row)``."""
    REPLAY_ROWS[element[0]] += 1


def stream_replay_worker(args) -> int:
    """(Subprocess) Replay the first ``--stream-lines`` lines through ``SessionizeStream`` on a
    TestStream (BundleBasedDirectRunner, streaming) and print the timing as JSON."""
    import glob

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.testing.test_stream import TestStream
    from apache_beam.utils.timestamp import Timestamp

    from transforms.events import parse_line
    from transforms.streaming import SessionizeStream, StreamSettings

    lines: list[bytes] = []
    for path in sorted(glob.glob(args.stream_replay_worker)):
        with open(path, "rb") as f:
            for raw in f:
                lines.append(raw.rstrip(b"\r\n"))
                if len(lines) >= args.stream_lines:
                    break
        if len(lines) >= args.stream_lines:
            break
    # Messages carry their event time (as a Pub/Sub timestamp attribute would); unparseable
    # ones the time of the previous message. The watermark trails the newest event time by
    # --stream-watermark-lag seconds, advanced after every batch of messages.
    lag_us = args.stream_watermark_lag * 1_000_000
    stream = TestStream()
    now = watermark = None
    batch = 1000
    for i in range(0, len(lines), batch):
        chunk = []
        for raw in lines[i : i + batch]:
            ev = parse_line(raw, "replay")
            ts = getattr(ev, "ts", None)
            now = ts if now is None else (max(now, ts) if ts is not None else now)
            chunk.append(beam.window.TimestampedValue(raw, Timestamp(micros=(ts if ts is not None else now or 0))))
        stream.add_elements(chunk)
        if now is not None and (watermark is None or now - lag_us > watermark):
            watermark = now - lag_us
            stream.advance_watermark_to(Timestamp(micros=watermark))
    stream.advance_watermark_to_infinity()

    options = PipelineOptions(["--runner", "BundleBasedDirectRunner"])
    options.view_as(StandardOptions).streaming = True
    p = beam.Pipeline(options=options)
    # The sink and the clock come from this file imported as a module (bench.run), not from
    # __main__: the runner pickles a DoFn for every bundle, by value what __main__ defines.
    from bench import run as harness

    out = p | "Replay" >> stream | "Sessionize" >> SessionizeStream(StreamSettings(), clock=harness._zero_clock)
    out["rows"] | "CountRows" >> beam.FlatMap(harness.count_row)
    t0, c0 = time.perf_counter(), time.process_time()
    # No runner-API round trip: it would pickle (and bz2-compress) the TestStream with every
    # message in it, ~10 s for 100,000 lines, a cost of the replay, not of the job (whose
    # Pub/Sub source holds no messages).
    p.run(test_runner_api=False).wait_until_finish()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rows = dict(sorted(harness.REPLAY_ROWS.items()))
    timing = {"pipeline_seconds": round(wall, 3), "pipeline_cpu_seconds": round(cpu, 3)}
    print("STREAM_RESULT " + json.dumps({"lines": len(lines), **timing, "rows": rows}))
    return 0


def run_streaming(data: Path, args) -> dict:
    needed = [ROOT / "pipelines" / "stream.py", ROOT / "transforms" / "streaming.py"]
    if not all(p.exists() for p in needed):
        say("[5/5] streaming: not measured (no streaming job yet)")
        return {"measured": False, "reason": "no streaming job yet"}
    if args.stream_lines <= 0:
        say("[5/5] streaming: not measured (--stream-lines 0)")
        return {"measured": False, "reason": "--stream-lines 0"}
    cmd = [str(BIN / "python"), str(Path(__file__).resolve()), "--stream-replay-worker"]
    cmd += [str(data / "notifications-*.jsonl"), "--stream-lines", str(args.stream_lines)]
    cmd += ["--stream-watermark-lag", str(args.stream_watermark_lag)]
    say(
        f"[5/5] streaming: SessionizeStream on a TestStream replay of the first {args.stream_lines:,} lines "
        "(BundleBasedDirectRunner)"
    )
    result = measure(cmd, OUT / "logs" / "streaming.log", args.sample_interval, echo=False)
    text = (ROOT / result["log"]).read_text(encoding="utf-8", errors="replace")
    found = [line for line in text.splitlines() if line.startswith("STREAM_RESULT ")]
    if result["exit_code"] != 0 or not found:
        say(f"      streaming: FAILED (exit {result['exit_code']}), see {result['log']}")
        return {"measured": False, "reason": f"replay failed (exit {result['exit_code']})", **result}
    replay = json.loads(found[-1].removeprefix("STREAM_RESULT "))
    replay["events_per_second"] = round(replay["lines"] / replay["pipeline_seconds"])
    say(
        f"      streaming: {replay['lines']:,} lines in {replay['pipeline_seconds']:.1f}s "
        f"({replay['events_per_second']:,} lines/s in the pipeline, {replay['pipeline_cpu_seconds']:.1f} CPU-s), "
        "peak RSS "
        f"{result['peak_rss_bytes'] / 2**20:,.0f} MiB; rows {replay['rows']}"
    )
    return {"measured": True, **result, **replay}


# --- report -----------------------------------------------------------------------------------


def _spin(n: int) -> None:
    x = 0
    for i in range(n):
        x += i


def effective_cores(n: int = 8_000_000) -> float:
    """How many cores this process can get right now (the machine is shared): the same busy
    loop timed in one process, then in one process per core at once."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")

    def timed(k: int) -> float:
        procs = [ctx.Process(target=_spin, args=(n,)) for _ in range(k)]
        t0 = time.perf_counter()
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
        return time.perf_counter() - t0

    cores = os.cpu_count() or 1
    one = timed(1)
    return round(min(cores, cores * one / timed(cores)), 2)


def probe_snapshot() -> dict:
    """:func:`probes.snapshot` in a process of its own (its memory probe must not raise this
    process's peak RSS, which the jobs started later would inherit in their ``ru_maxrss``)."""
    done = subprocess.run([sys.executable, str(BENCH / "probes.py")], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def machine() -> dict:
    import psutil

    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_bytes": psutil.virtual_memory().total,
        "cpu_model": model or platform.processor() or platform.machine(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "effective_cores_at_start": effective_cores(),
        "cpu": probes.cpu_details(),
        "kernel": probes.kernel_settings(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("apache-beam", "duckdb", "pyarrow", "orjson"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    try:
        out["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.split("\n")
        out["git_modified_files"] = sorted(line[3:] for line in dirty if line.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    return out


def print_table(results: dict) -> None:
    lines = results["dataset"]["lines"]
    v, d = results["vccflow"], results["duckdb"]
    base = results.get("baseline")
    m = results["machine"]
    mib = 2**20
    say("")
    say(
        f"machine: {m['cores']} cores ({m['physical_cores']} physical), {m['ram_bytes'] / 2**30:.1f} GiB RAM, "
        f"{m['cpu_model']}, {m.get('cpu', {}).get('cache size', '?')} cache; kernel "
        f"{' '.join(m.get('kernel', {}).get('cmdline') or []) or '-'}"
    )
    say(
        f"shared machine: load average {m['load_average_at_start'][0]} at start, {m['load_average_at_end'][0]} at "
        f"the end; cores this benchmark could get: {m['effective_cores_at_start']} at start, "
        f"{m['effective_cores_at_end']} at the end"
    )
    for when in ("start", "end"):
        probe = m.get(f"probes_at_{when}")
        if probe:
            faults = probe.get("fault_cost") or {}
            say(
                f"probes at {when}: busy loop {probe['spin_cpu_seconds']} CPU-s, memory copy "
                f"{probe['memory_copy_cpu_seconds']} CPU-s, page fault {faults.get('recycled_us')} us "
                f"(recycled memory) / {faults.get('after_idle_us')} us (after {faults.get('idle_seconds')} s idle)"
            )
    say(f"data: {lines:,} lines ({results['dataset']['bytes'] / mib:,.0f} MiB) in {results['dataset']['files']} files")
    runs = len(v["runs"])
    if runs > 1:
        say(f"medians of {runs} interleaved runs; peak RSS (summed over each job's processes): the highest of the runs")
    header = (
        f"{'':<18}{'lines':>11}{'events/s':>10}{'wall s':>8}{'CPU s':>8}{'user s':>8}{'sys s':>7}"
        f"{'minor faults':>14}{'peak RSS MiB':>14}{'load':>6}"
    )
    say(header)
    say("-" * len(header))
    jobs = [("vccflow batch", v), *((("vccflow baseline", base),) if base else ()), ("DuckDB SQL", d)]
    for name, r in jobs:
        wall = r["wall_seconds_median"]
        eps = f"{lines / wall:,.0f}" if wall else "-"
        user = statistics.median(x["user_seconds"] for x in r["runs"])
        say(
            f"{name:<18}{lines:>11,}{eps:>10}{wall:>8.1f}{r['cpu_seconds_median']:>8.1f}{user:>8.1f}"
            f"{r['system_seconds_median']:>7.1f}{r['minor_faults_median']:>14,.0f}{r['peak_rss_bytes'] / mib:>14,.0f}"
            f"{r['load_average_before_median']:>6.2f}"
        )
    ratio = results["ratio_vccflow_over_duckdb"]
    say(
        f"ratio vccflow/DuckDB (medians): wall {ratio['wall_median']:.2f}x, CPU time {ratio['cpu_median']:.2f}x, "
        f"peak RSS {ratio['peak_rss']:.2f}x; best runs: wall {ratio['wall']:.2f}x, CPU {ratio['cpu']:.2f}x"
    )
    if base:
        ab = results["ratio_vccflow_over_baseline"]
        say(
            f"vccflow / baseline ({results['baseline_code']}), medians: wall {ab['wall_median']:.3f}, "
            f"CPU {ab['cpu_median']:.3f}, minor faults {ab['minor_faults_median']:.3f}, "
            f"system time {ab['system_median']:.3f}; baseline/DuckDB: wall {ab['baseline_wall_over_duckdb']:.2f}x, "
            f"CPU {ab['baseline_cpu_over_duckdb']:.2f}x"
        )
    s = results["streaming"]
    if s.get("measured"):
        say(
            f"streaming sessionizer (TestStream replay, {s['lines']:,} lines): {s['events_per_second']:,} lines/s, "
            f"{s['pipeline_cpu_seconds']:.1f} CPU-s in the pipeline, peak RSS {s['peak_rss_bytes'] / mib:,.0f} MiB"
        )
    else:
        say(f"streaming: not measured ({s.get('reason')})")
    verdict = "agree on every channel" if results["agreement"]["agree"] else "DISAGREE (see above)"
    say(f"vccflow vs DuckDB: {verdict}")


# --- main -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/run.py",
        description="Benchmark vccflow batch against a DuckDB SQL reference on a generated data set.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  .venv/bin/python bench/run.py\n"
        "  .venv/bin/python bench/run.py --lines 200000 --runs 3 --keep-data\n",
    )
    parser.add_argument("--lines", type=int, default=1_500_000, help="target notification lines (default 1500000)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default 1)")
    parser.add_argument("--files", type=int, default=4, help="number of .jsonl files (default 4)")
    parser.add_argument("--runs", type=int, default=1, help="runs of each job; best wall time is reported (default 1)")
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the generated data set under bench/data/ for the next run (default: delete it at the end)",
    )
    parser.add_argument("--regenerate", action="store_true", help="generate the data set even if a kept one exists")
    parser.add_argument(
        "--vccflow-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for vccflow batch (repeatable), e.g. --vccflow-arg=--shards=8",
    )
    parser.add_argument(
        "--stream-lines",
        type=int,
        default=100_000,
        help="lines replayed through the streaming sessionizer, 0 to skip (default 100000)",
    )
    parser.add_argument(
        "--stream-watermark-lag",
        type=int,
        default=300,
        help="seconds the replay's watermark trails the newest event time (default 300)",
    )
    parser.add_argument(
        "--baseline",
        metavar="CHECKOUT",
        help="also run vccflow batch from this other checkout (e.g. /work/main), interleaved with this one's "
        "runs, and report the two side by side (an A/B on the same data, machine and load)",
    )
    parser.add_argument(
        "--no-probes", action="store_true", help="skip the machine probes (busy loop, memory copy, page-fault cost)"
    )
    parser.add_argument("--sample-interval", type=float, default=0.1, help="RSS sampling period in s (default 0.1)")
    parser.add_argument("--quiet", action="store_true", help="do not echo the jobs' own output")
    parser.add_argument("--stream-replay-worker", metavar="GLOB", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.stream_replay_worker:
        sys.path.insert(0, str(ROOT))
        return stream_replay_worker(args)
    if args.runs < 1 or args.files < 1 or args.lines < 1:
        raise SystemExit("--runs, --files and --lines must be >= 1")
    try:
        import duckdb  # noqa: F401
        import psutil  # noqa: F401
    except ImportError as exc:
        raise SystemExit(f"{exc.name} is missing: .venv/bin/pip install -e '.[bench]'") from None

    OUT.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    info_machine = machine()
    if not args.no_probes:
        info_machine["probes_at_start"] = probe_snapshot()
    plan = plan_dataset(args.lines, args.seed, args.files)
    data, info = ensure_dataset(plan, args.regenerate)
    counts = info["counts"]
    say(
        f"      {counts['lines']:,} lines: {counts['valid']:,} valid, {counts['duplicates']:,} duplicates, "
        f"{sum(counts['dead_letters'].values()):,} dead letters, {counts['blank']:,} blank "
        f"({counts['late_deliveries']:,} delivered hours late)"
    )

    vruns, druns, bruns = [], [], []
    baseline = Path(args.baseline).resolve() if args.baseline else None
    for i in range(args.runs):
        # with a baseline, the two checkouts take turns at going first (the page cache, the load)
        order = [(ROOT, "vccflow", vruns), (baseline, "baseline", bruns)] if baseline else [(ROOT, "vccflow", vruns)]
        for code, name, runs in order if i % 2 == 0 else order[::-1]:
            runs.append(run_vccflow(data, args, i, code, name))
        druns.append(run_duckdb(data, args, i))
    jobs = (("vccflow", vruns), ("duckdb", druns), ("baseline", bruns))
    failed = [name for name, runs in jobs if any(r["exit_code"] for r in runs)]

    if failed:
        agreement = {"agree": False, "error": f"{', '.join(failed)} failed: nothing to compare"}
        say(f"[4/5] agreement: not checked ({agreement['error']})")
    else:
        say("[4/5] agreement: vccflow channel_sessions vs the DuckDB reference, channel by channel")
        agreement = compare()
        print_agreement(agreement)

    streaming = run_streaming(data, args)

    v, d = _best(vruns), _best(druns)
    lines = counts["lines"]
    for r in (v, d):
        r["events_per_second"] = round(lines / r["wall_seconds"]) if r["wall_seconds"] else None
    info_machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    info_machine["effective_cores_at_end"] = effective_cores()
    if not args.no_probes:
        info_machine["probes_at_end"] = probe_snapshot()
    results = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": info_machine,
        "versions": versions(),
        "dataset": {
            "folder": str(data.relative_to(ROOT)),
            "generator": plan,
            "lines": lines,
            "files": args.files,
            "bytes": info["bytes"],
            "counts": counts,
        },
        "events_per_second_means": "input notification lines / wall time of the whole command",
        "vccflow": {**v, "runs": vruns},
        "duckdb": {**d, "runs": druns},
        "ratio_vccflow_over_duckdb": {
            "wall": round(v["wall_seconds"] / d["wall_seconds"], 3),
            "wall_median": round(v["wall_seconds_median"] / d["wall_seconds_median"], 3),
            "peak_rss": round(v["peak_rss_bytes"] / d["peak_rss_bytes"], 3),
            "cpu": round(v["cpu_seconds"] / d["cpu_seconds"], 3),
            "cpu_median": round(v["cpu_seconds_median"] / d["cpu_seconds_median"], 3),
        },
        "agreement": agreement,
        "streaming": streaming,
    }
    if bruns:
        b = _best(bruns)
        results["baseline_code"] = str(baseline)
        results["baseline"] = {**b, "runs": bruns}
        results["ratio_vccflow_over_baseline"] = {
            "wall_median": round(v["wall_seconds_median"] / b["wall_seconds_median"], 3),
            "cpu_median": round(v["cpu_seconds_median"] / b["cpu_seconds_median"], 3),
            "minor_faults_median": round(v["minor_faults_median"] / max(b["minor_faults_median"], 1), 3),
            "system_median": round(v["system_seconds_median"] / max(b["system_seconds_median"], 0.01), 3),
            "baseline_wall_over_duckdb": round(b["wall_seconds_median"] / d["wall_seconds_median"], 3),
            "baseline_cpu_over_duckdb": round(b["cpu_seconds_median"] / d["cpu_seconds_median"], 3),
        }
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_table(results)
    say(f"results: {(OUT / 'results.json').relative_to(ROOT)}")

    if not args.keep_data:
        shutil.rmtree(data)
        say(f"removed {data.relative_to(ROOT)} (--keep-data keeps it for the next run)")
    return 0 if not failed and agreement["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Batch job: archived VCC notifications (files) in; validated Parquet tables out.

    vccflow batch --input 'archive/2024-03-*.jsonl.gz' --output out/

Reads every file matching the ``--input`` globs (local or ``gs://``, plain or ``.gz``),
parses and deduplicates the notifications, sessionizes channels, agents and interactions
with the pure cores, and writes ``channel_sessions``, ``channel_segments``,
``agent_presence``, ``agent_sessions``, ``interactions``, ``agent_intervals``,
``service_intervals`` and ``dead_letter`` as hive-partitioned Parquet under ``--output``, then
validates them with Great Expectations and writes ``_run_report.json``. Arguments it does
not know are Beam pipeline options (``--runner DataflowRunner --project ...``); without
``--runner`` the job runs on Beam's FnApiRunner (the DirectRunner's engine), in-process for
small inputs and with one worker process per core for large ones.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from contextlib import nullcontext
from datetime import UTC, datetime

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import outputs
from pipelines.options import add_interval_options
from pipelines.worker import flag_given, worker_processes, zygote_for
from schemas import TABLES
from transforms.events import MAX_EVENT_BYTES
from transforms.intervals import DEFAULT_INTERVAL_MINUTES, DEFAULT_SHORT_ABANDON_SECONDS, interval_ms
from transforms.io import ReadNotifications, expand_patterns, input_weight, total_size
from transforms.parquet import RowBatch, WriteTables, utc_date
from transforms.sessionize import (
    SERVICE,
    ServiceIntervals,
    SessionizeAgents,
    SessionizeChannels,
    SessionizeInteractions,
    dead_letter_rows,
)
from transforms.validation import ValidationWorkers, format_verdict, validate_output

log = logging.getLogger(__name__)

#: Sessionization shards follow the input size: one per ``SHARD_INPUT_BYTES`` of input
#: (about 115,000 notifications; a shard's sessionizer decodes 1/32 of them at a time,
#: transforms.io.part_of), and at least ``MIN_SHARDS`` (enough to keep every core of a small
#: machine busy). Each shard costs a state fetch per stage and a file per table: on the bench
#: data 14 shards ran ~3% faster than 18 (bench/README.md).
MIN_SHARDS = 8
SHARD_INPUT_BYTES = 56 << 20


def shards_for(input_weight: int, workers: int = 1) -> int:
    """The default ``--shards`` for ``input_weight`` bytes of (uncompressed) input, rounded up
    to a multiple of ``workers`` (the local SDK worker processes, which the FnApiRunner deals
    a stage's keys to in turn: 17 shards on 2 workers would leave one finishing alone)."""
    shards, per = max(MIN_SHARDS, -(-input_weight // SHARD_INPUT_BYTES)), max(workers, 1)
    return -(-shards // per) * per


def _shards(text: str) -> int | None:
    if text == "auto":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a whole number >= 1, got {text}")
    return value


EXAMPLES = """examples:
  vccflow batch --input samples/vcc-demo/notifications-*.jsonl --output out/demo
  vccflow batch --input 'gs://bucket/vcc/2024-03-*.jsonl.gz' --output gs://bucket/vcc-out \\
      --runner DataflowRunner --project my-project --region europe-west1 \\
      --temp_location gs://bucket/tmp --setup_file ./setup.py
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vccflow batch",
        description="Sessionize archived VCC webhook notifications into validated Parquet tables.",
        epilog=EXAMPLES + "\nAny other --option is passed to Beam's PipelineOptions.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--input",
        action="append",
        required=True,
        metavar="GLOB",
        help="file glob of notifications (NDJSON, .gz, or .json documents); repeatable, "
        "e.g. --input 'archive/*.jsonl.gz' --input extra.json",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="output root (local or gs://), e.g. out/2024-03")
    parser.add_argument(
        "--shards",
        type=_shards,
        default=None,
        metavar="N|auto",
        help="key shards events are grouped by (parallelism of sessionization; memory per shard); "
        f"default auto: one per {SHARD_INPUT_BYTES >> 20} MiB of (uncompressed) input, at least {MIN_SHARDS}, "
        "a multiple of the local worker processes",
    )
    parser.add_argument(
        "--max-event-bytes",
        type=int,
        default=MAX_EVENT_BYTES,
        help=f"notifications larger than this become 'oversized' dead letters, default {MAX_EVENT_BYTES}",
    )
    add_interval_options(parser)
    return parser


def sum_dicts(dicts) -> dict:
    """Key-wise sum of count dicts (an associative combine)."""
    total: Counter = Counter()
    for d in dicts:
        total.update(d)
    return dict(total)


def build_pipeline(
    p: beam.Pipeline,
    paths: list[str],
    staging: str,
    shards: int,
    max_bytes: int,
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES,
    short_abandon_seconds: int = DEFAULT_SHORT_ABANDON_SECONDS,
) -> None:
    """The batch graph: read, sessionize channels then agents and interactions, aggregate the
    service intervals, write every table and a statistics file ``_stats.json`` under ``staging``."""
    step = interval_ms(interval_minutes)
    # Read spreads the files over the workers itself: Create's own reshuffle would be a second one
    read = p | "InputFiles" >> beam.Create(paths, reshuffle=False) | "Read" >> ReadNotifications(shards, max_bytes)
    channels = read.events | "Channels" >> SessionizeChannels(shards, step)
    agents = channels.agent_work | "Agents" >> SessionizeAgents(step)
    interactions = channels.interaction_work | "Interactions" >> SessionizeInteractions(
        step, short_abandon_seconds * 1000
    )
    service = (channels[SERVICE], interactions[SERVICE]) | "Service" >> ServiceIntervals(step)
    dead = read.dead | "DeadLetterRows" >> beam.Map(dead_letter_rows).with_output_types(RowBatch)
    # each writer is fused with the step producing its rows: row batches are never encoded
    written = [
        channels.rows | "WriteChannelTables" >> WriteTables(staging),
        agents.rows | "WriteAgentTables" >> WriteTables(staging),
        service | "WriteServiceIntervals" >> WriteTables(staging),
        interactions.rows | "WriteInteractionTables" >> WriteTables(staging),
        dead | "WriteDeadLetters" >> WriteTables(staging),
    ]
    stats_path = beam.io.filesystems.FileSystems.join(staging, "_stats.json")
    (
        (read.stats, channels.stats, agents.stats, interactions.stats, *written)
        | "AllStats" >> beam.Flatten()
        | "SumStats" >> beam.CombineGlobally(sum_dicts)
        | "WriteStats" >> beam.Map(lambda stats: outputs.write_json(stats_path, stats))
    )


def make_pipeline(beam_args: list[str], input_bytes: int = 0, worker_command: str | None = None) -> beam.Pipeline:
    """A pipeline on the user's ``--runner``, or on Beam's FnApiRunner: in-process, or with
    :func:`worker_processes` SDK worker processes started by ``worker_command`` (default
    ``python -m pipelines.worker``, see :mod:`pipelines.worker`)."""
    options = PipelineOptions(beam_args)
    if flag_given(beam_args, "--runner"):
        return beam.Pipeline(options=options)
    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    direct = options.view_as(DirectOptions)
    processes = worker_processes(beam_args, input_bytes)
    if not processes:
        log.info(
            "runner: FnApiRunner, %s, %d worker(s) (%.0f MiB of input)",
            direct.direct_running_mode, direct.direct_num_workers, input_bytes / (1 << 20),
        )  # fmt: skip
        return beam.Pipeline(runner=FnApiRunner(), options=options)
    direct.direct_num_workers = processes
    # Beam's "multi_processing" mode with vccflow's worker command; the runner's mode option
    # stays "in_memory" (it would replace the environment), so its warning about it is dropped.
    _FN_RUNNER_LOG.addFilter(_drop_running_mode_warning)
    # Each worker warns that no main session was staged for it: vccflow stages none (its
    # workers import its modules, which register what they need), so the warning is dropped.
    _JOB_SERVICE_LOG.addFilter(_drop_main_session_warning)
    command = worker_command or f"{sys.executable} -m pipelines.worker"
    log.info(
        "runner: FnApiRunner, %d worker processes: %s (%.0f MiB of input)",
        processes, command.removeprefix(sys.executable + " "), input_bytes / (1 << 20),
    )  # fmt: skip
    # Beam starts it through a shell: ``exec`` leaves no shell between the runner and the
    # worker, for a terminal's Ctrl-C to kill (the job handles it and ends its workers)
    worker = SubprocessSDKEnvironment.from_command_string(f"exec {command}")
    # Grouped values reach the workers through the state API, read as a DoFn iterates them,
    # not inline in the stage's input: the runner no longer copies every group into one
    # message per worker (on the bench data: summed peak RSS 2.0 -> 1.6 GiB for ~1% more CPU;
    # at 3x the data the runner's peak 1.6 -> 0.9 GiB, an SDK worker's 0.7-0.8 -> 0.55 GiB).
    runner = FnApiRunner(default_environment=worker, use_state_iterables=True)
    return beam.Pipeline(runner=runner, options=options)


_FN_RUNNER_LOG = logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner")


def _drop_running_mode_warning(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("If direct_num_workers is not equal to 1")


_JOB_SERVICE_LOG = logging.getLogger("apache_beam.runners.portability.local_job_service")


def _drop_main_session_warning(record: logging.LogRecord) -> bool:
    return "No semi_persistent_directory found" not in record.getMessage()


def build_report(stats: dict, paths: list[str], run_id: str, started: float, verdict, staging: str, root: str) -> dict:
    dead = {k.removeprefix("dead."): v for k, v in sorted(stats.items()) if k.startswith("dead.")}
    lines, blank = stats.get("lines", 0), stats.get("blank", 0)
    valid, dups = stats.get("valid", 0), stats.get("duplicates", 0)
    return {
        "run_id": run_id,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.monotonic() - started, 3),
        "input_files": len(paths),
        "lines": lines,
        "blank_lines": blank,
        "valid_events": valid,
        "duplicates_dropped": dups,
        "dead_letters": sum(dead.values()),
        "dead_letters_by_code": dead,
        "accounting_closes": lines == valid + dups + sum(dead.values()) + blank,
        "channels": stats.get("channels", 0),
        "agents": stats.get("agents", 0),
        "interactions": stats.get("interactions", 0),
        "rows": {t: stats.get(f"rows.{t}", 0) for t in TABLES},
        "validation": _relocated(verdict.as_dict(), staging, root) if verdict is not None else None,
    }


def _relocated(validation: dict, staging: str, root: str) -> dict:
    """The verdict with paths pointing where the files live after publishing."""
    docs = validation.get("data_docs")
    if isinstance(docs, str) and outputs.is_local(docs):
        staging, root = os.path.abspath(staging), os.path.abspath(root)
    if isinstance(docs, str) and docs.startswith(staging):
        validation = {**validation, "data_docs": root + docs[len(staging) :]}
    return validation


def summary_text(report: dict, root: str) -> str:
    """A few lines for the terminal: rows per table, dead letters by code, headline numbers."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    out = [f"vccflow batch: {report['lines']} lines from {report['input_files']} file(s) -> {root}"]
    out.append(
        f"  valid events {report['valid_events']}, duplicates dropped {report['duplicates_dropped']}, "
        f"dead letters {report['dead_letters']}, blank {report['blank_lines']}"
        f" (accounting {'closes' if report['accounting_closes'] else 'DOES NOT close'})"
    )
    out.append("  rows: " + ", ".join(f"{t} {n}" for t, n in report["rows"].items()))
    if report["dead_letters_by_code"]:
        out.append("  dead letters: " + ", ".join(f"{c} {n}" for c, n in report["dead_letters_by_code"].items()))
    sessions = ds.dataset(
        beam.io.filesystems.FileSystems.join(root, "channel_sessions"), format="parquet", partitioning="hive"
    ).to_table(columns=["party_role", "is_complete", "connected_at", "handle_ms", "talk_ms", "hold_count"])
    handled = sessions.filter(
        pc.and_(
            pc.and_(pc.equal(sessions["party_role"], "agent"), sessions["is_complete"]),
            pc.is_valid(sessions["connected_at"]),
        )
    )
    if handled.num_rows:
        mean = lambda col: pc.mean(handled[col]).as_py() / 1000  # noqa: E731
        held = pc.sum(pc.greater(handled["hold_count"], 0)).as_py()
        out.append(
            f"  completed agent channels {handled.num_rows}: mean handle {mean('handle_ms'):.1f}s, "
            f"mean talk {mean('talk_ms'):.1f}s, {100 * held / handled.num_rows:.0f}% with a hold"
        )
    out.extend(_interactions_line(root))
    v = report.get("validation")
    if v is not None:
        out.append(f"  validation: {'passed' if v['success'] else 'FAILED'} ({v['summary']})")
    return "\n".join(out)


def _interactions_line(root: str) -> list[str]:
    """The headline contact numbers: answered, speed of answer, abandons by stage, transfers."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    contacts = ds.dataset(
        beam.io.filesystems.FileSystems.join(root, "interactions"), format="parquet", partitioning="hive"
    ).to_table(columns=["direction", "outcome", "time_to_answer_ms", "transfers"])
    if not contacts.num_rows:
        return []
    directions = Counter(contacts["direction"].to_pylist())
    line = f"  interactions {contacts.num_rows} ({', '.join(f'{d} {n}' for d, n in sorted(directions.items()))})"
    inbound = contacts.filter(pc.equal(contacts["direction"], "inbound"))
    if inbound.num_rows:
        outcomes = Counter(inbound["outcome"].to_pylist())
        pct = lambda n: f"{100 * n / inbound.num_rows:.1f}%"  # noqa: E731
        answered = inbound.filter(pc.equal(inbound["outcome"], "answered"))
        speed = pc.mean(answered["time_to_answer_ms"]).as_py() if answered.num_rows else None
        stages = ("before_offer", "while_alerting", "after_offer")
        line += f": answered {pct(answered.num_rows)}" + (
            f", mean speed of answer {speed / 1000:.1f}s" if speed is not None else ""
        )
        line += f", abandoned {pct(sum(outcomes[f'abandoned_{s}'] for s in stages))} ("
        line += ", ".join(f"{s.replace('_', ' ')} {pct(outcomes[f'abandoned_{s}'])}" for s in stages) + ")"
    return [f"{line}; transfers {pc.sum(contacts['transfers']).as_py()}"]


def run(argv: list[str] | None = None) -> int:
    """Run the batch job; returns the process exit code (0 ok, 1 validation failed)."""
    known, beam_args = build_parser().parse_known_args(argv)
    started = time.monotonic()
    paths = expand_patterns(known.input)
    input_bytes = total_size(paths)
    shards = known.shards or shards_for(input_weight(paths), worker_processes(beam_args, input_bytes))
    root = known.output.rstrip("/")
    outputs.check_output_root(root)
    run_id = outputs.new_run_id()
    staging = outputs.staging_root(root, run_id)
    log.info("batch run %s: %d input file(s), %d shards, staging in %s", run_id, len(paths), shards, staging)
    validators = None
    try:
        # started before the pipeline runs (and starts gRPC threads): the worker zygote, then the
        # validation workers (forked; the first imports GX while the pipeline runs), unless the
        # vccflow command forked them already (transforms.validation.start_workers_ahead)
        zygote = zygote_for(beam_args, input_bytes)
        with zygote or nullcontext(), make_pipeline(beam_args, input_bytes, zygote and zygote.command) as p:
            build_pipeline(
                p,
                paths,
                staging,
                shards,
                known.max_event_bytes,
                known.interval_minutes,
                known.short_abandon_seconds,
            )
            validators = ValidationWorkers.take()
        stats = outputs.read_json(beam.io.filesystems.FileSystems.join(staging, "_stats.json"))
        outputs.fill_empty_tables(
            staging, {t: stats.get(f"rows.{t}", 0) for t in TABLES}, utc_date(time.time_ns() // 1000)
        )
        log.info("pipeline done in %.1fs; validating", time.monotonic() - started)
        verdict = validate_output(staging, data_docs=outputs.is_local(root), workers=validators)
        log.info("validation %s in %.1fs", "passed" if verdict.success else "FAILED", time.monotonic() - started)
        report = build_report(stats, paths, run_id, started, verdict, staging, root)
        outputs.write_json(beam.io.filesystems.FileSystems.join(staging, outputs.REPORT), report)
        outputs.publish(staging, root, run_id)
    except BaseException:  # a failure or Ctrl-C: nothing published, no process left behind
        if validators is not None:
            validators.close()
        outputs.discard(staging)
        raise
    print(summary_text(report, root))
    if not verdict.success:
        print(format_verdict(verdict), file=sys.stderr)
        return 1
    return 0

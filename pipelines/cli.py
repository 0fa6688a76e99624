"""The ``vccflow`` command: one subcommand per pipeline module, each with its own options.

Exit codes: 0 success, 1 validation failed, 2 an error the user can fix (no input,
unusable output folder), 3 the pipeline failed. Errors print one line; ``--verbose``
shows tracebacks and debug logs.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from transforms.collector import paused_gc

COMMANDS = {
    "batch": ("pipelines.batch", "sessionize archived notification files into validated Parquet"),
    "stream": ("pipelines.stream", "sessionize notifications from Pub/Sub into Parquet files, continuously"),
    "publish": ("pipelines.publish", "replay notification files into a Pub/Sub topic"),
    "receive": ("pipelines.receive", "receive VCC webhooks over HTTP, verified, into Pub/Sub or hourly files"),
    "generate": ("pipelines.generate", "write realistic synthetic VCC traffic and its ground truth"),
    "validate": ("pipelines.validate", "validate an existing output folder with Great Expectations"),
}

USAGE = "usage: vccflow [--verbose] COMMAND [options]   (vccflow COMMAND --help for a command's options)"


def _help() -> str:
    lines = [
        USAGE,
        "",
        "Vonage Contact Center webhook notifications to analytics Parquet, with Apache Beam.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<10} {about}" for name, (_, about) in COMMANDS.items()]
    lines += ["", "example:", "  vccflow batch --input 'samples/vcc-demo/notifications-*.jsonl' --output out/demo"]
    return "\n".join(lines)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    for name in ("pipelines", "transforms"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


def _command(args: list[str]) -> str | None:
    """The command named by the console's arguments (after ``-v``/``--verbose``), if any."""
    rest = [a for a in args if a not in ("-v", "--verbose")]
    return rest[0] if rest else None


def main(argv: list[str] | None = None, freeze: bool = False) -> int:
    """Entry point of the console script; returns the exit code. ``freeze``: the process
    runs this one command, so what it imports is frozen (:func:`transforms.collector.paused_gc`)."""
    args = list(sys.argv[1:] if argv is None else argv)
    verbose = False
    while args and args[0] in ("-v", "--verbose"):
        verbose = True
        args.pop(0)
    if not args or args[0] in ("-h", "--help"):
        print(_help())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"vccflow: unknown command {name!r}\n{USAGE}", file=sys.stderr)
        return 2
    setup_logging(verbose)
    try:  # importing Beam takes a while: Ctrl-C may come now
        # importing Beam (or GX) builds about a million long-lived objects; frozen, when
        # this process runs only this command, so that no collection scans them again
        with paused_gc(freeze):
            module = importlib.import_module(COMMANDS[name][0])
        from pipelines.outputs import OutputError
        from transforms.io import NoInputError
    except KeyboardInterrupt:
        print(f"vccflow {name}: interrupted", file=sys.stderr)
        return 130
    try:
        return module.run(rest)
    except (NoInputError, OutputError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        if verbose:
            raise
        print(f"vccflow {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vccflow {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a failed pipeline: one line, the traceback only with --verbose
        if verbose:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"vccflow {name}: failed: {type(exc).__name__}: {first[:500]} (--verbose shows the traceback)",
            file=sys.stderr,
        )
        return 3


def console() -> None:
    """The ``vccflow`` console script: :func:`main`, then a fast exit. The process runs one
    command, so a ``batch`` run's worker zygote may be forked from it
    (:func:`pipelines.worker.allow_forked_zygote`). Once a large job has written and closed
    every file, tearing the interpreter down frees its objects one by one (about a second on
    a 1.5M-line batch run) for nothing; streams are flushed and logging shut down first. An
    exception escaping :func:`main` exits the usual way."""
    from pipelines.allocator import keep_freed_memory
    from pipelines.worker import allow_forked_zygote

    # vccflow's processes are its parallelism: BLAS thread pools (numpy, scipy) would only
    # spin on the cores the pipeline uses (set before anything imports numpy; inherited)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if _command(sys.argv[1:]) == "batch":  # a short-lived process: it may keep what it frees
        keep_freed_memory()
        if not {"-h", "--help"} & set(sys.argv):
            from transforms.validation import start_workers_ahead

            start_workers_ahead()  # GX imports while this process imports Beam
    allow_forked_zygote()
    code = main(freeze=True)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console()

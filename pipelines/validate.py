"""``vccflow validate DIR``: re-validate an existing output folder with Great Expectations.

The engine (reading tables, suites, verdicts, Data Docs, the validation worker processes) is
:mod:`transforms.validation`; this module is the command around it.
"""

from __future__ import annotations

import argparse
import sys

import pyarrow as pa

from schemas.outputs import TABLES
from transforms.validation import NotAnOutputError, format_verdict, validate_output


def run(argv: list[str] | None = None) -> int:
    """``vccflow validate DIR [--no-docs]``: 0 all suites pass, 1 a suite fails, 2 bad DIR."""
    parser = argparse.ArgumentParser(
        prog="vccflow validate",
        description="Validate the Parquet tables of a vccflow output folder with Great Expectations.\n"
        "Exit codes: 0 all suites pass, 1 a suite fails (verdict on stderr), 2 DIR is not a vccflow output.",
        epilog="example:\n  vccflow validate out/demo\n  then open out/demo/_validation/data_docs/index.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dir", metavar="DIR", help="output root holding channel_sessions/, ... (local or gs://)")
    parser.add_argument("--no-docs", action="store_true", help="skip the HTML Data Docs (JSON results only)")
    parser.add_argument(
        "--table",
        action="append",
        choices=list(TABLES),
        metavar="TABLE",
        help=f"validate only this table (repeatable): {', '.join(TABLES)}",
    )
    args = parser.parse_args(argv)
    docs = not args.no_docs
    if docs and "://" in args.dir and not args.dir.startswith("file://"):
        print("vccflow validate: Data Docs need a local DIR; writing JSON results only", file=sys.stderr)
        docs = False
    try:
        verdict = validate_output(args.dir, tables=args.table, data_docs=docs)
    except (OSError, NotAnOutputError, pa.ArrowInvalid) as exc:  # missing folder, bad URI, not an output
        print(f"vccflow validate: {exc}", file=sys.stderr)
        return 2
    print(format_verdict(verdict), file=sys.stdout if verdict.success else sys.stderr)
    return 0 if verdict.success else 1

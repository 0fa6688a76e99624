"""The DuckDB reference of the benchmark: ``bench/duckdb_reference.sql`` on notification files.

    python bench/reference.py --input 'bench/data/.../notifications-*.jsonl' --output bench/out/duckdb

Writes ``channel_metrics.parquet`` (one row per channel, see the SQL file for the columns and
rules) and ``reference_stats.json`` into ``--output``, and prints the stats as one JSON line.
``bench/run.py`` runs this as a subprocess so that its wall time and memory are measured the
same way as ``vccflow batch``'s; the tests call :func:`run_reference` in-process.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SQL_PATH = Path(__file__).with_name("duckdb_reference.sql")


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def run_reference(inputs: list[str], con=None, threads: int | None = None, memory_limit: str | None = None):
    """Run the reference SQL on ``inputs`` (paths or globs); returns the DuckDB connection
    holding the tables ``channel_metrics`` and ``reference_stats``."""
    import duckdb

    if con is None:
        con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if memory_limit:
        con.execute(f"SET memory_limit = {_sql_string(memory_limit)}")
    con.execute(f"SET VARIABLE input = [{', '.join(_sql_string(str(p)) for p in inputs)}]")
    con.execute(SQL_PATH.read_text(encoding="utf-8"))
    return con


def stats(con) -> dict:
    """The one row of ``reference_stats`` as a dict."""
    cur = con.execute("SELECT * FROM reference_stats")
    names = [d[0] for d in cur.description]
    return {k: (int(v) if v is not None else 0) for k, v in zip(names, cur.fetchone(), strict=True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/reference.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", action="append", required=True, metavar="GLOB", help="NDJSON files (repeatable)")
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for channel_metrics.parquet")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads (default: all cores)")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 4GB (default: DuckDB's)")
    args = parser.parse_args(argv)

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    con = run_reference(args.input, threads=args.threads, memory_limit=args.memory_limit)
    t_sql = time.perf_counter() - t0
    target = out / "channel_metrics.parquet"
    con.execute(f"COPY channel_metrics TO {_sql_string(str(target))} (FORMAT parquet)")
    result = {**stats(con), "sql_seconds": round(t_sql, 3), "total_seconds": round(time.perf_counter() - t0, 3)}
    (out / "reference_stats.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

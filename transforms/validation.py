"""The validation engine: vccflow output tables against the Great Expectations suites of
:mod:`schemas.expectations` (the ``vccflow validate`` command is :mod:`pipelines.validate`).

:func:`validate_output` reads every table of an output folder as a whole (rules across
partitions, such as ``channel_id`` uniqueness, see all files at once), validates it, and
writes next to the tables::

    DIR/_validation/<table>.json        GX validation result of each table
    DIR/_validation/summary.json        verdict: success and failing expectations per table
    DIR/_validation/data_docs/index.html  GX Data Docs (suites and results, HTML)

Great Expectations is imported lazily (importing this module does not import it), runs
offline with usage statistics and progress bars off, and its warnings and log records
below ERROR are silenced while it runs. Roots may be local paths or pyarrow filesystem URIs
(``gs://bucket/out``: tables and JSON are read/written through ``pyarrow.fs``); Data Docs
need a local root.

A caller that can start early (``vccflow batch``, before its pipeline) creates
:class:`ValidationWorkers`: the tables are then validated in two processes at once, which
import GX while the caller still works. The ``vccflow`` command forks them first thing
(:func:`start_workers_ahead`), before it imports Beam: GX is then imported on the core the
command's start-up leaves idle, not on CPU the pipeline wants.
"""

from __future__ import annotations

import copy
import ctypes
import json
import logging
import multiprocessing
import os
import posixpath
import shutil
import signal
import sys
import tempfile
import threading
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from schemas.outputs import PARTITION_COLUMN, TABLES, dataset_schema
from transforms.collector import paused_gc
from transforms.gxmemo import configurations_memoized

log = logging.getLogger(__name__)

VALIDATION_DIR = "_validation"
RUN_REPORT = "_run_report.json"
_EXAMPLES = 5
_RESULT_FORMAT = {
    "result_format": "BASIC",
    "partial_unexpected_count": _EXAMPLES,
    "return_unexpected_index_query": False,
}
_PARTITIONING = ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.string())]), flavor="hive")
#: Tables are decoded with the system allocator: reading a whole output in a fresh process
#: took ~30% less CPU than with pyarrow's default (mimalloc) pool on the project's machine.
_READ_POOL = pa.system_memory_pool()


class NotAnOutputError(ValueError):
    """The folder exists but holds no table folder and no run report."""


@dataclass(frozen=True)
class Failure:
    """One failing expectation of one table; ``rule``: the rule in words when the expectation
    checks a rule column (see :mod:`schemas.expectations`)."""

    table: str
    expectation: str
    columns: tuple[str, ...]
    condition: str | None = None
    unexpected_count: int | None = None
    element_count: int | None = None
    examples: list = field(default_factory=list)
    example_rows: list[dict] = field(default_factory=list)
    detail: str | None = None
    rule: str | None = None

    def describe(self) -> str:
        """One line, e.g. ``t: expect_column_values_to_be_between(hold_ms) failed: 1 of 120 rows, e.g. [-5]``.

        A rule column's failure names its rule, and its examples are the values of the
        columns the rule shows: ``t: expect_column_values_to_be_in_set(_end_at_not_before_start_at)
        [rule: end_at >= start_at where both are present] failed: 1 of 120 rows, e.g. [{"end_at": ...}]``.
        """
        name = f"{self.expectation}({', '.join(self.columns)})" if self.columns else self.expectation
        if self.rule:
            name += f" [rule: {self.rule}]"
        where = f" where {self.condition}" if self.condition else ""
        if self.unexpected_count is not None:
            what = f"{self.unexpected_count} of {self.element_count} rows, e.g. {_short(self.examples)}"
            if self.example_rows:
                what += " at " + ", ".join(f"{k}={v}" for k, v in self.example_rows[0].items())
        else:
            what = self.detail or "see the result JSON"
        return f"{self.table}: {name}{where} failed: {what}"


@dataclass(frozen=True)
class TableVerdict:
    """The outcome of one table's suite; ``result`` is GX's result as a JSON-ready dict."""

    table: str
    success: bool
    rows: int
    evaluated: int
    failures: list[Failure]
    result: dict = field(repr=False, compare=False)

    def as_dict(self) -> dict:
        """JSON-ready summary (without the GX result)."""
        return {
            "success": self.success,
            "rows": self.rows,
            "evaluated_expectations": self.evaluated,
            "failures": [asdict(f) for f in self.failures],
        }


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`validate_output`: ``success`` when every table passed."""

    success: bool
    tables: dict[str, TableVerdict]
    data_docs: str | None = None

    @property
    def failures(self) -> list[Failure]:
        """Every failing expectation, table by table."""
        return [f for t in self.tables.values() for f in t.failures]

    @property
    def headline(self) -> str:
        """E.g. ``5 tables, 120 rows, 252 expectations, 2 failed (channel_sessions)``."""
        failed = [name for name, t in self.tables.items() if not t.success]
        n = len(self.tables)
        text = (
            f"{n} table{'s' * (n != 1)}, {sum(t.rows for t in self.tables.values())} rows, "
            f"{sum(t.evaluated for t in self.tables.values())} expectations, {len(self.failures)} failed"
        )
        return text + (f" ({', '.join(failed)})" if failed else "")

    def as_dict(self) -> dict:
        """JSON-ready summary, as written to ``_validation/summary.json``."""
        return {
            "success": self.success,
            "summary": self.headline,
            "tables": {name: t.as_dict() for name, t in self.tables.items()},
            "data_docs": self.data_docs,
        }


def _short(value: Any, limit: int = 120) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence GX's warnings and log records below ERROR while it runs."""
    logger = logging.getLogger("great_expectations")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _site(docs_dir: str) -> dict:
    """The config of the Data Docs site written to ``docs_dir``."""
    return {
        "class_name": "SiteBuilder",
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }


def _gx_context(docs_dir: str | None, results_dir: str | None = None) -> Any:
    """An ephemeral, offline GX context; with a Data Docs site at ``docs_dir`` if given.

    Validation results are kept in memory, or as files in ``results_dir`` if given, where
    the contexts of other processes find them (to index one Data Docs site).
    """
    from schemas.expectations import import_gx

    gx = import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    defaults = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    stores = defaults.stores
    if results_dir is not None:
        backend = {"class_name": "TupleFilesystemStoreBackend", "base_directory": results_dir}
        stores[defaults.validation_results_store_name]["store_backend"] = backend
    config = DataContextConfig(
        store_backend_defaults=defaults,
        stores=stores,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        data_docs_sites={} if docs_dir is None else {"vccflow": _site(docs_dir)},
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.data_sources.add_pandas("vccflow")
    return context


def _condition(kwargs: dict) -> str | None:
    """The row condition in words (``end_at IS NULL``); GX keeps it as a dict in results."""
    from great_expectations.expectations.row_conditions import deserialize_row_condition

    cond = kwargs.get("row_condition")
    return None if cond is None else repr(deserialize_row_condition(cond))


def _columns(expectation: str, kwargs: dict) -> tuple[str, ...]:
    if "column" in kwargs:
        return (kwargs["column"],)
    if "column_A" in kwargs:
        return (kwargs["column_A"], kwargs["column_B"])
    if "column_list" in kwargs and expectation != "expect_table_columns_to_match_ordered_list":
        return tuple(kwargs["column_list"])
    return ()


def _exception_message(info: dict) -> str | None:
    """The message of an exception GX caught: ``exception_info`` is flat, or keyed by metric."""
    infos = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for item in infos:
        if item.get("raised_exception"):
            return " ".join(str(item.get("exception_message")).split())
    return None


def _detail(expectation: str, kwargs: dict, result: dict, exception: dict, dtypes: dict[str, str]) -> str | None:
    """What failed, for expectations that do not count unexpected rows."""
    message = _exception_message(exception)
    if message is not None:
        return f"raised {message}"
    if expectation == "expect_table_columns_to_match_ordered_list":
        mismatched = result.get("details", {}).get("mismatched", [])
        return "; ".join(
            f"position {m['Expected Column Position']}: expected {m['Expected']}, found {m['Found']}"
            for m in mismatched[:_EXAMPLES]
        )
    if expectation == "expect_column_values_to_be_of_type":
        return f"dtype {dtypes.get(kwargs['column'])}, expected {kwargs['type_']}"
    observed = result.get("observed_value")
    return None if observed is None else f"observed {_short(observed)}"


@dataclass(frozen=True)
class _Examples:
    """Unexpected rows of one failing expectation: their keys and, for a rule column, the
    values of the columns the rule shows."""

    rows: list[dict] = field(default_factory=list)
    shown: list[dict] | None = None


def _failures(table: str, result: dict, examples: list[_Examples], dtypes: dict[str, str]) -> list[Failure]:
    """Failures of a GX ``result`` (JSON dict); ``examples``: per failure, from :func:`_examples`."""
    failures = []
    failing = [item for item in result["results"] if not item["success"]]
    for item, found in zip(failing, examples, strict=True):
        config = item["expectation_config"]
        kwargs = config["kwargs"]
        res = item.get("result") or {}
        counted = "unexpected_count" in res
        failures.append(
            Failure(
                table=table,
                expectation=config["type"],
                columns=_columns(config["type"], kwargs),
                condition=_condition(kwargs),
                unexpected_count=res.get("unexpected_count"),
                element_count=res.get("element_count"),
                examples=res.get("partial_unexpected_list", [])[:_EXAMPLES] if found.shown is None else found.shown,
                example_rows=found.rows,
                detail=None if counted else _detail(config["type"], kwargs, res, item["exception_info"], dtypes),
                rule=(config.get("meta") or {}).get("rule"),
            )
        )
    return failures


def _examples(batch_definition: Any, parameters: dict, result: Any, keys: list[str]) -> list[_Examples]:
    """Per failing expectation of ``result``, a few of its unexpected rows (none when not row-wise).

    The suite runs in GX's BASIC result format (SUMMARY with row indexes costs ~50% more
    per expectation); only the failing row-wise expectations are re-run, on a batch of the
    same ``parameters``, to name rows by ``keys`` and to read the columns rules show.
    """
    import great_expectations as gx

    failing = [r for r in result.results if not r.success]
    found = [_Examples() for _ in failing]
    rowwise = [i for i, r in enumerate(failing) if "unexpected_count" in (r.result or {})]
    shows = {i: list((failing[i].expectation_config.meta or {}).get("shows", [])) for i in rowwise}
    columns = list(dict.fromkeys([*keys, *(c for i in rowwise for c in shows[i])]))
    if not rowwise or not columns:
        return found
    again = [copy.copy(failing[i].expectation_config.to_domain_obj()) for i in rowwise]
    batch = batch_definition.get_batch(batch_parameters=parameters)
    detailed = batch.validate(
        gx.ExpectationSuite(name="failing", expectations=again),
        result_format={**_RESULT_FORMAT, "result_format": "SUMMARY", "unexpected_index_column_names": columns},
    )
    for i, item in zip(rowwise, detailed.to_json_dict()["results"], strict=True):
        rows = ((item.get("result") or {}).get("partial_unexpected_index_list") or [])[:_EXAMPLES]
        found[i] = _Examples(
            rows=[{k: row.get(k) for k in keys} for row in rows] if keys else [],
            shown=[{c: row.get(c) for c in shows[i]} for row in rows] if shows[i] else None,
        )
    return found


def _suite_frame(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """The frame ``table``'s suite validates for ``df`` (typed by ``to_pandas``); the suite
    checks the partition rule when ``df`` has the partition column."""
    from schemas.expectations import validation_frame

    return validation_frame(table, df, partitioned=PARTITION_COLUMN in df.columns)


def _read_for_suite(root: str, table: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``table`` of ``root`` as read and as its suite validates it."""
    df = read_table(root, table)
    return df, _suite_frame(table, df)


def _run_suite(context: Any, table: str, df: pd.DataFrame, frame: pd.DataFrame) -> TableVerdict:
    """Validate ``df`` (typed by ``to_pandas``), as ``frame`` from :func:`_suite_frame`,
    against ``table``'s suite in ``context``.

    Runs it as a GX ValidationDefinition, so the suite and the result are in the context's
    stores (for Data Docs), with each expectation's configuration built once
    (:mod:`transforms.gxmemo`); a batch is built again only to name the rows of failures.
    """
    import great_expectations as gx

    from schemas.expectations import ROW_KEYS, build_suite

    suite = context.suites.add(build_suite(table, partitioned=PARTITION_COLUMN in df.columns))
    asset = context.data_sources.get("vccflow").add_dataframe_asset(table)
    batch_definition = asset.add_batch_definition_whole_dataframe(table)
    parameters = {"dataframe": frame}
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=table, data=batch_definition, suite=suite)
    )
    # GX makes many short-lived objects: collections during the run would only rescan them
    with paused_gc(), configurations_memoized():
        result = definition.run(batch_parameters=parameters, result_format=_RESULT_FORMAT)
    keys = [c for c in (*ROW_KEYS[table], PARTITION_COLUMN) if c in df.columns]
    as_json = result.to_json_dict()
    examples = _examples(batch_definition, parameters, result, keys)
    return TableVerdict(
        table=table,
        success=bool(result.success),
        rows=len(df),
        evaluated=int(result.statistics["evaluated_expectations"]),
        failures=_failures(table, as_json, examples, df.dtypes.astype(str).to_dict()),
        result=as_json,
    )


def validate_table(table: str, df: pd.DataFrame | pa.Table) -> TableVerdict:
    """Validate one in-memory table (e.g. one file) against ``table``'s suite.

    ``df`` is typed as :func:`schemas.expectations.to_pandas` types it (an Arrow table is
    converted); with an ``event_date`` column the partition rule is checked too. Rules
    across rows (uniqueness, last segment) only see ``df``. Writes nothing.
    """
    from schemas.expectations import to_pandas

    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; expected one of {', '.join(TABLES)}")
    frame = to_pandas(df) if isinstance(df, pa.Table) else df
    with _quiet():
        return _run_suite(_gx_context(None), table, frame, _suite_frame(table, frame))


def _filesystem(root: str) -> tuple[pafs.FileSystem, str]:
    if "://" in root:
        return pafs.FileSystem.from_uri(root)
    return pafs.LocalFileSystem(), posixpath.abspath(root)


def _same_columns(physical: pa.Schema, expected: pa.Schema) -> bool:
    return [(f.name, f.type) for f in physical] == [(f.name, f.type) for f in expected]


def read_table(root: str, table: str) -> pd.DataFrame:
    """The whole ``table`` under output ``root``, typed for its suite, with ``event_date``.

    A missing or empty table folder gives zero rows. Files whose columns differ from the
    schema (a wrong type, a missing or extra column) are read as they are, so the suite
    reports the difference instead of the read failing or casting it away.
    """
    from schemas.expectations import empty_frame, to_pandas

    fs, base = _filesystem(root)
    path = posixpath.join(base, table)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return empty_frame(table)
    dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning=_PARTITIONING)
    fragments = sorted(dataset.get_fragments(), key=lambda f: f.path)
    if not fragments:
        return empty_frame(table)
    if all(_same_columns(f.physical_schema, TABLES[table]) for f in fragments):
        typed = ds.dataset(
            path, filesystem=fs, format="parquet", partitioning=_PARTITIONING, schema=dataset_schema(table)
        )
        return to_pandas(typed.to_table(memory_pool=_READ_POOL))
    frames = []
    for fragment in fragments:
        data = fragment.to_table(schema=fragment.physical_schema, memory_pool=_READ_POOL)
        day = ds.get_partition_keys(fragment.partition_expression).get(PARTITION_COLUMN)
        frames.append(to_pandas(data.append_column(PARTITION_COLUMN, pa.array([day] * len(data), pa.string()))))
    return pd.concat(frames, ignore_index=True)


def _write_json(fs: pafs.FileSystem, path: str, data: dict) -> None:
    with fs.open_output_stream(path) as out:
        out.write(json.dumps(data, indent=2, default=str, ensure_ascii=False).encode())


#: Tables in decreasing validation time on the benchmark output (reading, and GX's time per
#: expectation: ``service_intervals``' 76 rows take longer than ``agent_sessions``' 3,878 for
#: its 105 expectations): workers are handed them in this order, so the longest ones start
#: first and the two workers finish close together.
_LONGEST_FIRST = (
    "channel_segments",
    "channel_sessions",
    "interactions",
    "agent_intervals",
    "service_intervals",
    "agent_sessions",
    "agent_presence",
    "dead_letter",
)
_INDEX = "index"  # the request to build the Data Docs index, once every table is validated


@dataclass(frozen=True)
class _Job:
    """What :class:`ValidationWorkers` validate: tables of ``root``, Data Docs in ``docs_dir``
    (validation results shared through ``results_dir``), in ``workers`` processes."""

    root: str
    docs_dir: str | None
    results_dir: str | None
    workers: int


class ValidationWorkers:
    """Two processes validating tables at once, Great Expectations imported once, ahead of time.

    Creating it forks the first worker, which imports GX (2-3 CPU-s) while the caller goes on.
    Create it before the caller starts threads a fork could catch holding a lock, such as
    the gRPC threads of Beam's runner. :func:`validate_output` then forks the second worker
    from the first (GX imported), hands them the tables one at a time, longest first, and
    ends them: one use. A failure to import GX is raised by :func:`validate_output`.
    """

    def __init__(self) -> None:
        fork = multiprocessing.get_context("fork")
        pairs = [fork.Pipe() for _ in range(2)]
        self._conns = [mine for mine, _ in pairs]
        ends = [theirs for _, theirs in pairs]
        self._process = fork.Process(target=_serve, args=(*ends, self._conns), name="vccflow-validate", daemon=True)
        self._process.start()
        os.setpgid(self._process.pid, 0)  # as the worker does: whichever runs first
        for end in ends:
            end.close()

    @classmethod
    def take(cls) -> ValidationWorkers:
        """The workers :func:`start_workers_ahead` forked, else new ones."""
        return _AHEAD.pop() if _AHEAD else cls()

    def validate(self, root: str, names: list[str], docs_dir: str | None) -> Iterator[TableVerdict]:
        """The verdicts of the tables ``names`` of ``root`` as the workers finish them; the
        Data Docs index in ``docs_dir`` is built once the last one is done."""
        results_dir = tempfile.mkdtemp(prefix="vccflow-gx-") if docs_dir is not None else None
        count = max(1, min(len(self._conns), len(names)))
        conns, spare = self._conns[:count], self._conns[count:]
        done = False
        try:
            for conn in spare:
                conn.close()
            self._send(conns[0], _Job(root, docs_dir, results_dir, count))
            todo = sorted(names, key=_LONGEST_FIRST.index)
            for conn in conns[: len(todo)]:  # the second worker reads its first table once forked
                self._send(conn, todo.pop(0))
            last = conns[0]
            for _ in names:
                last = wait(conns)[0]
                yield self._receive(last)
                if todo:
                    self._send(last, todo.pop(0))
            if docs_dir is not None:
                self._send(last, _INDEX)
                self._receive(last)
            for conn in conns:
                self._send(conn, None)
            done = True
        finally:
            for conn in conns:
                conn.close()
            if done:
                self._process.join()
            else:
                self.close()
            if results_dir is not None:
                shutil.rmtree(results_dir, ignore_errors=True)

    def close(self) -> None:
        """End the workers, whatever they are doing (importing, validating, waiting)."""
        if self._process.exitcode is None:
            with suppress(ProcessLookupError):  # the workers are a process group: the second one too
                os.killpg(self._process.pid, signal.SIGTERM)
        self._process.join()

    def _send(self, conn: Connection, request: Any) -> None:
        try:
            conn.send(request)
        except OSError as exc:
            raise RuntimeError("a validation worker process ended unexpectedly") from exc

    def _receive(self, conn: Connection) -> Any:
        """A worker's reply; the exception it replied is raised here."""
        try:
            reply = conn.recv()
        except (EOFError, OSError) as exc:
            raise RuntimeError("a validation worker process ended unexpectedly") from exc
        except Exception as exc:  # noqa: BLE001 (an exception sent that cannot be rebuilt here)
            raise RuntimeError(f"a validation worker failed; its error could not be read: {exc}") from exc
        if isinstance(reply, BaseException):
            raise reply
        return reply


_AHEAD: list[ValidationWorkers] = []


def start_workers_ahead() -> None:
    """Fork the :class:`ValidationWorkers` of this process's next :meth:`ValidationWorkers.take`
    now. For a process that runs one command, before it imports Beam or starts a thread."""
    if not _AHEAD:
        _AHEAD.append(ValidationWorkers())


def _import_gx_when_idle(wanted: Callable[[float], bool]) -> Exception | None:
    """Import GX in a thread at the lowest CPU priority (Linux sets it per thread), so that it
    takes mostly CPU the pipeline leaves idle (on the benchmark it ends about a second before
    the pipeline does). ``wanted(timeout)`` is polled while it runs: once validation waits
    for it, the thread gets the process's own priority back where the system allows it.
    Validation then runs in the main thread at that priority. Returns the import's
    exception, if any (raised when validating)."""
    from schemas.expectations import import_gx

    failure: list[Exception] = []
    lock = threading.Lock()
    niced: list[int] = []  # the thread's id once it runs at the lowest priority
    boosted = threading.Event()

    def load() -> None:
        with lock:  # not once validation already waits
            if not boosted.is_set():
                with suppress(OSError):  # a platform without per-thread priorities: full priority
                    os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
                    niced.append(threading.get_native_id())
        try:
            import_gx()
        except Exception as exc:  # noqa: BLE001 (reported when validating)
            failure.append(exc)

    own = os.getpriority(os.PRIO_PROCESS, 0)
    thread = threading.Thread(target=load, name="vccflow-import-gx")
    thread.start()
    while thread.is_alive():
        if wanted(0.05):
            with lock:
                boosted.set()
                for tid in niced:
                    with suppress(OSError):  # raising a priority back needs a privilege (RLIMIT_NICE)
                        os.setpriority(os.PRIO_PROCESS, tid, own)
            break
    thread.join()  # the process forks later: no thread may be left running
    return failure[0] if failure else None


def _serve(first: Connection, second: Connection, parent_ends: list[Connection]) -> None:
    """The first worker process: import GX, wait for a :class:`_Job`, fork the second worker
    (sharing the imports) if the job needs two, and validate what ``first`` asks for.

    The workers form a process group of their own: Ctrl-C in a terminal reaches only the
    main process, which ends them. They are named ``vccflow-validate`` (in ``ps``, ``top``).
    """
    os.setpgid(0, 0)
    _name_process(b"vccflow-validate")
    for conn in parent_ends:
        conn.close()
    with paused_gc(freeze=True):  # the imports live as long as the process
        failure = _import_gx_when_idle(first.poll)
    try:
        job = first.recv()
    except EOFError:  # the main process ended without validating
        return
    child = 0
    if job.workers > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
        if child == 0:
            try:
                first.close()
                _work(second, job, failure)
            finally:
                os._exit(0)
    second.close()
    _work(first, job, failure)
    if child:
        os.waitpid(child, 0)


_PR_SET_NAME = 15  # prctl(2)


def _name_process(name: bytes) -> None:
    """Set this process's name as ``ps`` and ``top`` show it (Linux keeps 15 bytes; elsewhere
    nothing happens)."""
    with suppress(OSError, AttributeError):  # no prctl off Linux
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)


def _work(conn: Connection, job: _Job, failure: Exception | None) -> None:
    """Answer what ``conn`` asks for until it sends ``None`` or closes: a table's
    :class:`TableVerdict`, ``None`` once the Data Docs index is built, or the exception
    that stopped the worker (then it stops)."""
    try:
        if failure is not None:
            raise failure
        with _quiet():
            context = _gx_context(job.docs_dir, job.results_dir)
            site = None if job.docs_dir is None else _site_builder(context, job.docs_dir)
            while (request := conn.recv()) is not None:
                if request == _INDEX:  # every table's pages are written (the folder was emptied first)
                    site.target_store.copy_static_assets()
                    site.site_index_builder.build(skip_and_clean_missing=False)
                    conn.send(None)
                else:
                    conn.send(_worker_verdict(context, site, job.root, request))
    except EOFError:  # the main process stopped asking (it raised, or was interrupted)
        return
    except BaseException as exc:  # noqa: BLE001 (raised again by the main process)
        exc.add_note(f"in validation worker process {os.getpid()}:\n{traceback.format_exc()}")
        try:
            conn.send(exc)
        except Exception:  # noqa: BLE001 (an exception that cannot be sent: its text instead)
            conn.send(_as_text(exc))


def _as_text(exc: BaseException) -> RuntimeError:
    """A RuntimeError carrying ``exc``'s type, text and notes (it always crosses a pipe)."""
    notes = "\n".join(getattr(exc, "__notes__", ()))
    return RuntimeError(f"{type(exc).__name__}: {exc}\n{notes}")


def _site_builder(context: Any, docs_dir: str) -> Any:
    """The GX SiteBuilder of the Data Docs site in ``docs_dir``."""
    from great_expectations.render.renderer.site_builder import SiteBuilder

    site = _site(docs_dir)
    del site["class_name"]
    return SiteBuilder(data_context=context, site_name="vccflow", **site)


def _worker_verdict(context: Any, site: Any, root: str, table: str) -> TableVerdict:
    """Validate ``table`` of ``root`` in ``context`` and render its Data Docs pages (suite and
    result; what ``SiteBuilder.build`` does but the index and static files)."""
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    df, frame = _read_for_suite(root, table)
    verdict = _run_suite(context, table, df, frame)
    if site is not None:
        results = context.validation_results_store.list_keys()
        keys = [
            ExpectationSuiteIdentifier(name=table),
            *(k for k in results if k.expectation_suite_identifier.name == table),
        ]
        for section in site.site_section_builders.values():
            section.build(resource_identifiers=keys)
    return verdict


def _validate_here(root: str, names: list[str], docs_dir: str | None) -> Iterator[TableVerdict]:
    """The verdicts of the tables ``names`` of ``root``, validated in this process; then the
    Data Docs in ``docs_dir``."""
    # One table is read and prepared ahead in a thread (Parquet decoding and most of
    # pandas' work release the GIL) while GX is imported or validates the table before it.
    with _quiet(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="vccflow-read") as reader:
        reads = [reader.submit(_read_for_suite, root, name) for name in names[:1]]
        context = _gx_context(docs_dir)
        for i, name in enumerate(names):
            df, frame = reads.pop().result()
            reads += [reader.submit(_read_for_suite, root, after) for after in names[i + 1 : i + 2]]
            yield _run_suite(context, name, df, frame)
        if docs_dir is not None:
            context.build_data_docs()


def validate_output(
    root: str, tables: Iterable[str] | None = None, data_docs: bool = True, workers: ValidationWorkers | None = None
) -> Verdict:
    """Validate the tables (default: all of ``TABLES``) of the output folder ``root``.

    Writes ``root/_validation/<table>.json``, ``summary.json`` and, with ``data_docs``,
    GX Data Docs under ``root/_validation/data_docs/`` (``Verdict.data_docs`` is its
    index.html). A missing table folder is validated as an empty table. The tables are
    validated in this process, or in the processes of ``workers`` (not used before).
    Raises ``FileNotFoundError`` when ``root`` is not a folder, :class:`NotAnOutputError`
    when it has no table folder and no run report, ``ValueError`` for an unknown table or
    Data Docs on a non-local root.
    """
    fs, base = _filesystem(root)
    names = list(TABLES) if tables is None else list(tables)
    unknown = [t for t in names if t not in TABLES]
    if unknown:
        raise ValueError(f"unknown table(s) {', '.join(unknown)}; expected some of {', '.join(TABLES)}")
    if fs.get_file_info(base).type != pafs.FileType.Directory:
        raise FileNotFoundError(f"no such output folder: {root}")
    found = fs.get_file_info([posixpath.join(base, name) for name in (*TABLES, RUN_REPORT)])
    if all(info.type == pafs.FileType.NotFound for info in found):
        raise NotAnOutputError(f"{root} is not a vccflow output: no table folder and no {RUN_REPORT}")
    if data_docs and not isinstance(fs, pafs.LocalFileSystem):
        raise ValueError("Data Docs need a local output root; pass data_docs=False")

    out_dir = posixpath.join(base, VALIDATION_DIR)
    docs_dir = posixpath.join(out_dir, "data_docs") if data_docs else None
    fs.create_dir(out_dir, recursive=True)
    if docs_dir is not None:
        fs.delete_dir_contents(docs_dir, missing_dir_ok=True)
    verdicts = {}
    finished = _validate_here(root, names, docs_dir) if workers is None else workers.validate(root, names, docs_dir)
    for verdict in finished:
        log.debug("validated %s: %s", verdict.table, "passed" if verdict.success else "FAILED")
        verdicts[verdict.table] = verdict
        _write_json(fs, posixpath.join(out_dir, f"{verdict.table}.json"), verdict.result)
    verdicts = {name: verdicts[name] for name in names}
    index = posixpath.join(docs_dir, "index.html") if docs_dir is not None else None
    verdict = Verdict(success=all(v.success for v in verdicts.values()), tables=verdicts, data_docs=index)
    _write_json(fs, posixpath.join(out_dir, "summary.json"), verdict.as_dict())
    return verdict


def format_verdict(verdict: Verdict | TableVerdict) -> str:
    """Short text for stderr: one line per failing expectation, then a summary line."""
    if isinstance(verdict, TableVerdict):
        verdict = Verdict(success=verdict.success, tables={verdict.table: verdict})
    lines = [f.describe() for f in verdict.failures]
    lines.append(f"validation {'passed' if verdict.success else 'FAILED'}: {verdict.headline}")
    if verdict.data_docs:
        lines.append(f"Data Docs: {verdict.data_docs}")
    return "\n".join(lines)

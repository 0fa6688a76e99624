"""Great Expectations validation of output folders (transforms/validation.py, the engine; pipelines/validate.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

import schemas.expectations
from pipelines.validate import run
from schemas.outputs import PARTITION_COLUMN, PARTITION_SOURCE, SERVICE_THRESHOLDS, TABLES
from transforms import validation as validate
from transforms.gxmemo import configurations_memoized
from transforms.validation import ValidationWorkers, Verdict, format_verdict, validate_output, validate_table

REPO = Path(__file__).resolve().parents[1]
DAY1 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z in microseconds
DAY2 = DAY1 + 86_400_000_000
S = 1_000_000  # one second in microseconds


def _session(channel_id: str, t0: int, **changes) -> dict:
    """A complete agent channel: alert 1 s, talk 20 s + hold 5 s (one episode), wrap 4 s."""
    row = {
        "channel_id": channel_id,
        "interaction_id": "i-" + channel_id,
        "conversation_id": "conv-" + channel_id,
        "party_role": "agent",
        "agent_id": "a1",
        "user_id": "u1",
        "alerted_at": t0,
        "connected_at": t0 + S,
        "disconnected_at": t0 + 26 * S,
        "wrap_started_at": t0 + 26 * S,
        "ended_at": t0 + 30 * S,
        "first_event_at": t0,
        "last_event_at": t0 + 30 * S,
        "connection_failed": False,
        "end_reason": "normal",
        "alert_ms": 1000,
        "connected_ms": 25000,
        "talk_ms": 20000,
        "hold_ms": 5000,
        "park_ms": 0,
        "interruption_ms": 0,
        "wrap_ms": 4000,
        "handle_ms": 29000,
        "hold_count": 1,
        "park_count": 0,
        "interruption_count": 0,
        "longest_hold_ms": 5000,
        "longest_park_ms": 0,
        "longest_interruption_ms": 0,
        "held_at_disconnect": False,
        "disconnect_state": "connected",
        "is_complete": True,
        "open_state": None,
        "event_count": 7,
        "duplicate_count": 0,
        "anomaly_count": 0,
        "anomalies": [],
    }
    return {**row, **changes}


def _open_session(channel_id: str, t0: int) -> dict:
    """A channel still talking at the end of the data."""
    return _session(
        channel_id,
        t0,
        disconnected_at=None,
        wrap_started_at=None,
        ended_at=None,
        last_event_at=t0 + S,
        end_reason=None,
        connected_ms=0,
        talk_ms=0,
        hold_ms=0,
        wrap_ms=0,
        handle_ms=0,
        hold_count=0,
        longest_hold_ms=0,
        disconnect_state=None,
        is_complete=False,
        open_state="connected",
        event_count=2,
    )


def _interaction(interaction_id: str, t0: int, **changes) -> dict:
    """A complete inbound interaction answered 5 s after arrival (offered after 3 s, rung 2 s),
    one agent, a hold of 5 s, 4 s of wrap."""
    row = {
        "interaction_id": interaction_id,
        "conversation_id": "conv-" + interaction_id,
        "started_at": t0,
        "ended_at": t0 + 40 * S,
        "last_event_at": t0 + 40 * S,
        "duration_ms": 40000,
        "is_complete": True,
        "customer_channels": 1,
        "agent_channels": 1,
        "distinct_agents": 1,
        "direction": "inbound",
        "outcome": "answered",
        "offers": 1,
        "first_offered_at": t0 + 3 * S,
        "answered_at": t0 + 5 * S + 876,
        "time_to_answer_ms": 5000,
        "wait_before_offer_ms": 3000,
        "ring_ms": 2000,
        "abandon_ms": None,
        "transfers": 0,
        "blind_transfers": 0,
        "warm_transfers": 0,
        "consults": 0,
        "conferences": 0,
        "agent_path": ["a1"],
        "first_agent_id": "a1",
        "final_agent_id": "a1",
        "talk_ms": 26000,
        "hold_ms": 5000,
        "park_ms": 0,
        "interruption_ms": 0,
        "wrap_ms": 4000,
        "handle_ms": 35000,
        "customer_hold_ms": 5000,
        "customer_hold_count": 1,
        "hold_abandon": False,
        "anomaly_count": 0,
        "inference": ["direction"],
    }
    return {**row, **changes}


def _unanswered(interaction_id: str, t0: int, **changes) -> dict:
    """An interaction nobody answered: no agent connected (an inbound abandon by default)."""
    nobody = dict.fromkeys(("answered_at", "time_to_answer_ms", "ring_ms", "first_agent_id", "final_agent_id"))
    zero = dict.fromkeys(("talk_ms", "hold_ms", "wrap_ms", "handle_ms", "customer_hold_ms", "customer_hold_count"), 0)
    row = _interaction(interaction_id, t0, **nobody, **zero, agent_path=[])
    return {**row, "outcome": "abandoned_while_alerting", "abandon_ms": 4000, "ended_at": t0 + 4 * S, **changes}


def _segments(channel_id: str, parts: list[tuple[str, int, int | None, str, str | None]]) -> list[dict]:
    rows = []
    for seq, (state, start, end, started_by, ended_by) in enumerate(parts):
        duration = None if end is None else end // 1000 - start // 1000
        rows.append(
            {
                "channel_id": channel_id,
                "interaction_id": "i-" + channel_id,
                "conversation_id": "conv-" + channel_id,
                "agent_id": "a1",
                "party_role": "agent",
                "seq": seq,
                "state": state,
                "start_at": start,
                "end_at": end,
                "duration_ms": duration,
                "started_by": started_by,
                "ended_by": ended_by,
            }
        )
    return rows


def _agent_interval(start: int, **values) -> dict:
    """Agent a1's 15-minute interval from ``start``: zeros but ``values``."""
    row = {"agent_id": "a1", "user_id": "u1", "interval_start": start, "interval_end": start + 900 * S}
    return {**row, **dict.fromkeys(TABLES["agent_intervals"].names[4:], 0), **values}


def _service_interval(start: int, **values) -> dict:
    """The 15-minute service interval from ``start``: zeros but ``values``."""
    row = {"interval_start": start, "interval_end": start + 900 * S}
    return {**row, **dict.fromkeys(TABLES["service_intervals"].names[2:], 0), **values}


def _valid_tables() -> dict[str, list[dict]]:
    t0 = DAY1 + 3600 * S + 123  # odd microseconds: durations floor per endpoint
    closed = _segments(
        "c1",
        [
            ("alerting", t0, t0 + S, "alerted", "connected"),
            ("connected", t0 + S, t0 + 11 * S + 999, "connected", "held"),
            ("held", t0 + 11 * S + 999, t0 + 16 * S, "held", "retrieved"),
            ("connected", t0 + 16 * S, t0 + 26 * S, "retrieved", "disconnected"),
            ("wrap", t0 + 26 * S, t0 + 30 * S, "wrapstarted", "ended"),
        ],
    )
    still_open = _segments(
        "c2", [("alerting", DAY2, DAY2 + S, "alerted", "connected"), ("connected", DAY2 + S, None, "connected", None)]
    )
    presence = [
        ("ready", DAY1, DAY1 + 60 * S + 500, False),
        ("away", DAY1 + 60 * S + 500, DAY1 + 90 * S, False),
        ("loggedOut", DAY1 + 90 * S, None, True),
    ]
    return {
        "channel_sessions": [_session("c1", t0), _open_session("c2", DAY2)],
        "channel_segments": closed + still_open,
        "agent_presence": [
            {
                "agent_id": "a1",
                "user_id": "u1",
                "presence_id": f"p{i}",
                "presence_type": kind,
                "presence_subcategory": None,
                "presence_description": kind,
                "start_at": start,
                "end_at": end,
                "duration_ms": None if end is None else end // 1000 - start // 1000,
                "is_open": is_open,
            }
            for i, (kind, start, end, is_open) in enumerate(presence)
        ],
        "agent_sessions": [
            {
                "agent_id": "a1",
                "user_id": "u1",
                "session_id": "a1:2024-01-01T00:00:00.000000Z",
                "login_at": DAY1,
                "logout_at": DAY1 + 90 * S,
                "duration_ms": 90000,
                "ready_ms": 60000,
                "away_ms": 30000,
                "extended_away_ms": 0,
                "other_presence_ms": 0,
                "channels_handled": 1,
                "talk_ms": 20000,
                "hold_ms": 5000,
                "park_ms": 0,
                "interruption_ms": 0,
                "wrap_ms": 4000,
                "handle_ms": 29000,
                "busy_ms": 29000,
                "occupancy": 29000 / 90000,
                "is_open": False,
                "is_inferred": False,
            }
        ],
        "interactions": [
            _interaction("i1", t0),
            _unanswered("i2", t0 + 60 * S, last_event_at=t0 + 64 * S, duration_ms=4000),
            _unanswered(
                "i3",
                DAY2,
                direction="outbound",
                outcome="in_progress",
                abandon_ms=None,
                ended_at=None,
                duration_ms=None,
                is_complete=False,
                first_offered_at=None,
                wait_before_offer_ms=None,
                last_event_at=DAY2 + 3 * S,
            ),
        ],
        "agent_intervals": [
            _agent_interval(DAY1, logged_in_ms=90000, ready_ms=60000, away_ms=30000, idle_ms=60000),
            _agent_interval(
                DAY1 + 3600 * S,
                logged_in_ms=30000,
                other_presence_ms=30000,  # inferred: c1 after the logout
                alert_ms=1000,
                talk_ms=20000,
                hold_ms=5000,
                wrap_ms=4000,
                busy_ms=29000,
                active_channel_ms=29000,
                max_concurrency=1,
                offers=1,
                answered=1,
                handled=1,
                handle_ms_of_handled=29000,
            ),
        ],
        "service_intervals": [
            _service_interval(
                DAY1 + 3600 * S,
                inbound=1,
                answered=1,
                **{f"answered_within_{s}s": 1 for s in SERVICE_THRESHOLDS},
                sum_time_to_answer_ms=1000,
                max_time_to_answer_ms=1000,
                handled=1,
                handle_ms_of_handled=29000,
            ),
            _service_interval(
                DAY2,
                inbound=3,
                answered=1,
                abandoned=1,
                in_progress=1,
                short_abandoned=1,
                **{f"answered_within_{s}s": 1 for s in SERVICE_THRESHOLDS[1:]},
                **{f"abandoned_within_{s}s": 1 for s in SERVICE_THRESHOLDS},
                sum_time_to_answer_ms=15000,
                max_time_to_answer_ms=15000,
                sum_abandon_ms=3000,
                outbound=2,
                outbound_connected=1,
                transfers=1,
                consults=1,
                conferences=1,
            ),
        ],
        "dead_letter": [
            {
                "error_code": "invalid_json",
                "error_detail": "Expecting value: line 1 column 1",
                "raw": "{nope",
                "raw_bytes": 5,
                "raw_truncated": False,
                "origin": "events.jsonl:3",
                "event_type": None,
                "event_id": None,
                "ingested_at": DAY2 + 5 * S,
            }
        ],
    }


def _write(root: Path, table: str, rows: list[dict], schema: pa.Schema | None = None, name: str = "part-{i}") -> None:
    """Rows as a hive-partitioned dataset: ``root/table/event_date=YYYY-MM-DD/<name>.parquet``."""
    schema = schema or TABLES[table]
    data = pa.Table.from_pylist(rows, schema=schema)
    source = data[PARTITION_SOURCE[table]].cast(pa.timestamp("us", tz="UTC"))
    data = data.append_column(PARTITION_COLUMN, pc.strftime(source, "%Y-%m-%d"))
    ds.write_dataset(
        data,
        root / table,
        format="parquet",
        partitioning=ds.partitioning(pa.schema([(PARTITION_COLUMN, pa.string())]), flavor="hive"),
        basename_template=name + ".parquet",
        existing_data_behavior="overwrite_or_ignore",
    )


def _output(root: Path, **overrides: list[dict]) -> Path:
    for table, rows in {**_valid_tables(), **overrides}.items():
        _write(root, table, rows)
    return root


def _failure(verdict: Verdict, table: str, expectation: str, columns: tuple[str, ...]):
    hits = [f for f in verdict.failures if (f.table, f.expectation, f.columns) == (table, expectation, columns)]
    assert hits, f"no {expectation}{columns} failure in:\n{format_verdict(verdict)}"
    line = hits[0].describe()
    assert line.startswith(f"{table}: {expectation}({', '.join(columns)})"), line
    assert line in format_verdict(verdict)
    return hits[0]


def test_lazy_import_offline_and_quiet_in_a_fresh_process(tmp_path):
    root = _output(tmp_path)
    code = f"""
import socket, sys
def offline(*args, **kwargs):
    raise OSError("network access in a test")
socket.socket.connect = socket.create_connection = socket.getaddrinfo = offline
import transforms.validation, schemas.expectations
assert "great_expectations" not in sys.modules, "great_expectations imported at module import"
assert transforms.validation.validate_output({str(root)!r}).success
assert "great_expectations" in sys.modules
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")


def test_valid_output_passes_quietly_and_writes_results(tmp_path, capfd):
    root = _output(tmp_path)
    capfd.readouterr()
    verdict = validate_output(str(root))
    captured = capfd.readouterr()
    assert verdict.success, format_verdict(verdict)
    assert (captured.out, captured.err) == ("", "")
    assert {t: v.rows for t, v in verdict.tables.items()} == {t: len(r) for t, r in _valid_tables().items()}
    assert all(v.evaluated > 10 for v in verdict.tables.values())
    out = root / "_validation"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["success"] is True and set(summary["tables"]) == set(TABLES)
    result = json.loads((out / "channel_sessions.json").read_text())
    assert result["success"] is True and result["suite_name"] == "channel_sessions"
    assert (out / "data_docs" / "index.html").is_file()
    assert verdict.data_docs == str(out / "data_docs" / "index.html")
    rows = sum(len(r) for r in _valid_tables().values())
    assert format_verdict(verdict).startswith(f"validation passed: {len(TABLES)} tables, {rows} rows, ")
    assert summary["summary"] == verdict.headline and "0 failed" in verdict.headline


def test_missing_table_counts_as_empty_and_passes(tmp_path):
    _write(tmp_path, "dead_letter", _valid_tables()["dead_letter"])
    verdict = validate_output(tmp_path.as_uri(), data_docs=False)  # a pyarrow filesystem URI
    assert verdict.success, format_verdict(verdict)
    assert verdict.tables["channel_sessions"].rows == 0
    assert not (tmp_path / "_validation" / "data_docs").exists()


def test_negative_hold_ms_fails(tmp_path):
    sessions = [_session("c1", DAY1, hold_ms=-5, talk_ms=20005), _open_session("c2", DAY2)]
    verdict = validate_output(str(_output(tmp_path, channel_sessions=sessions)), ["channel_sessions"], data_docs=False)
    assert not verdict.success
    failure = _failure(verdict, "channel_sessions", "expect_column_values_to_be_between", ("hold_ms",))
    assert (failure.unexpected_count, failure.element_count, failure.examples) == (1, 2, [-5])
    assert failure.example_rows[0]["channel_id"] == "c1"
    assert "failed: 1 of 2 rows, e.g. [-5]" in failure.describe()
    summary = json.loads((tmp_path / "_validation" / "summary.json").read_text())
    assert summary["success"] is False
    assert summary["tables"]["channel_sessions"]["failures"][0]["table"] == "channel_sessions"


def test_duplicate_channel_id_across_partitions_fails(tmp_path):
    sessions = [_session("c1", DAY1), _session("c1", DAY2)]
    verdict = validate_output(str(_output(tmp_path, channel_sessions=sessions)), ["channel_sessions"], data_docs=False)
    assert len(list((tmp_path / "channel_sessions").iterdir())) == 2  # two event_date folders
    failure = _failure(verdict, "channel_sessions", "expect_column_values_to_be_unique", ("channel_id",))
    assert failure.unexpected_count == 2 and failure.examples == ["c1", "c1"]
    assert {r[PARTITION_COLUMN] for r in failure.example_rows} == {"2024-01-01", "2024-01-02"}
    assert len(verdict.failures) == 1, format_verdict(verdict)


def test_timestamps_out_of_order_fail_naming_the_rule(tmp_path):
    sessions = [_session("c1", DAY1, connected_at=DAY1 - S), _open_session("c2", DAY2)]
    verdict = validate_output(str(_output(tmp_path, channel_sessions=sessions)), ["channel_sessions"], data_docs=False)
    failure = _failure(
        verdict, "channel_sessions", "expect_column_values_to_be_in_set", ("_connected_at_not_before_alerted_at",)
    )
    assert failure.rule == "connected_at >= alerted_at where both are present"
    assert (failure.unexpected_count, failure.element_count) == (1, 2)
    assert failure.examples == [
        {"connected_at": "2023-12-31T23:59:59+00:00", "alerted_at": "2024-01-01T00:00:00+00:00"}
    ]
    assert failure.example_rows == [{"channel_id": "c1", PARTITION_COLUMN: "2024-01-01"}]
    assert failure.describe() == (
        "channel_sessions: expect_column_values_to_be_in_set(_connected_at_not_before_alerted_at) "
        "[rule: connected_at >= alerted_at where both are present] failed: 1 of 2 rows, e.g. "
        '[{"connected_at": "2023-12-31T23:59:59+00:00", "alerted_at": "2024-01-01T00:00:00+00:00"}] '
        "at channel_id=c1, event_date=2024-01-01"
    )
    assert len(verdict.failures) == 1, format_verdict(verdict)
    summary = json.loads((tmp_path / "_validation" / "summary.json").read_text())
    assert summary["tables"]["channel_sessions"]["failures"][0]["rule"] == failure.rule


def test_rule_failures_show_the_rule_columns_and_row_keys(tmp_path):
    sessions = [_session("c1", DAY1), {**_open_session("c2", DAY2), "hold_ms": 5, "talk_ms": -5}]
    presence = _valid_tables()["agent_presence"]
    presence[0] = {**presence[0], "is_open": True}
    segments = _valid_tables()["channel_segments"]
    segments[-1] = {**segments[-1], "ended_by": "held"}  # the open segment of c2
    root = _output(tmp_path, channel_sessions=sessions, agent_presence=presence, channel_segments=segments)
    verdict = validate_output(str(root), ["channel_sessions", "agent_presence", "channel_segments"], data_docs=False)

    hold = _failure(verdict, "channel_sessions", "expect_column_values_to_be_in_set", ("_hold_ms_zero_without_holds",))
    assert hold.rule == "hold_ms == 0 where hold_count == 0"
    assert (hold.examples, hold.example_rows) == (
        [{"hold_ms": 5, "hold_count": 0}],
        [{"channel_id": "c2", PARTITION_COLUMN: "2024-01-02"}],
    )
    talk = _failure(verdict, "channel_sessions", "expect_column_values_to_be_between", ("talk_ms",))
    assert talk.examples == [-5]  # a column without nulls, checked by the built-in range expectation
    is_open = _failure(verdict, "agent_presence", "expect_column_values_to_be_in_set", ("_is_open_iff_no_end_at",))
    assert is_open.examples == [{"is_open": True, "end_at": "2024-01-01T00:01:00.000500+00:00"}]
    assert is_open.example_rows == [
        {"agent_id": "a1", "start_at": "2024-01-01T00:00:00+00:00", PARTITION_COLUMN: "2024-01-01"}
    ]
    ended_by = _failure(
        verdict, "channel_segments", "expect_column_values_to_be_in_set", ("_ended_by_null_iff_no_end_at",)
    )
    assert ended_by.examples == [{"ended_by": "held", "end_at": "NaT"}]
    assert ended_by.example_rows == [{"channel_id": "c2", "seq": 1, PARTITION_COLUMN: "2024-01-02"}]
    assert "[rule: ended_by is null exactly when end_at is null] failed: 1 of 7 rows" in ended_by.describe()
    assert len(verdict.failures) == 4, format_verdict(verdict)


def test_workers_give_the_verdict_files_and_docs_of_one_process(tmp_path):
    sessions = [_session("c1", DAY1, hold_ms=-5), {**_open_session("c2", DAY2), "hold_ms": 5, "talk_ms": -5}]
    segments = _valid_tables()["channel_segments"]
    segments[-1] = {**segments[-1], "ended_by": "held"}
    _output(tmp_path / "here", channel_sessions=sessions, channel_segments=segments)
    _output(tmp_path / "workers", channel_sessions=sessions, channel_segments=segments)
    here = validate_output(str(tmp_path / "here"))
    there = validate_output(str(tmp_path / "workers"), workers=ValidationWorkers())

    assert not there.success and there.headline == here.headline
    assert list(there.tables) == list(TABLES)
    assert [t.failures for t in there.tables.values()] == [t.failures for t in here.tables.values()]
    assert format_verdict(there) == format_verdict(here).replace("/here/", "/workers/")
    docs = [
        sorted(p.relative_to(r).parts[:2] for p in r.rglob("*.html")) for r in (tmp_path / "here", tmp_path / "workers")
    ]
    assert docs[0] == docs[1] and len(docs[0]) == 1 + 2 * len(TABLES)  # the index, a suite and a result page per table
    index = (tmp_path / "workers" / "_validation" / "data_docs" / "index.html").read_text()
    assert all(f"expectations/{table}.html" in index and f"validations/{table}/" in index for table in TABLES)
    assert "dataContextId" not in index  # as in one process: no id in the pages' links


def _comparable(result: dict) -> dict:
    """A GX result without what differs between two runs of one suite (run time, ids)."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "id"}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return strip({k: v for k, v in result.items() if k != "meta"})


def test_memoized_configurations_give_the_results_gx_gives(tmp_path, monkeypatch):
    """transforms.gxmemo is a speed trick only: every table's result, failures and their
    examples included, is the one GX gives without it."""
    from contextlib import nullcontext

    from great_expectations.expectations.expectation import Expectation

    sessions = [_session("c1", DAY1, hold_ms=-5), {**_open_session("c2", DAY2), "hold_ms": 5, "talk_ms": -5}]
    segments = _valid_tables()["channel_segments"]
    segments[-1] = {**segments[-1], "ended_by": "held"}
    root = str(_output(tmp_path, channel_sessions=sessions, channel_segments=segments))
    memoized = validate_output(root, data_docs=False)
    monkeypatch.setattr(validate, "configurations_memoized", nullcontext)
    plain = validate_output(root, data_docs=False)

    assert not memoized.success and len(memoized.failures) == 7, format_verdict(memoized)
    assert memoized.failures == plain.failures
    for table in TABLES:
        assert _comparable(memoized.tables[table].result) == _comparable(plain.tables[table].result), table

    expectation = schemas.expectations.build_suite("dead_letter").expectations[0]
    assert isinstance(expectation, Expectation)
    built = expectation.configuration
    assert built is not expectation.configuration  # GX's own property outside the block
    with configurations_memoized():
        assert expectation.configuration is expectation.configuration
        assert expectation.configuration == built
    assert expectation.configuration is not expectation.configuration


def test_workers_take_every_table_and_raise_what_a_worker_raised(tmp_path, monkeypatch):
    assert sorted(validate._LONGEST_FIRST) == sorted(TABLES)
    root = _output(tmp_path)
    next((root / "agent_sessions").rglob("*.parquet")).write_bytes(b"not parquet")
    with pytest.raises(pa.ArrowInvalid):  # as in one process (``vccflow validate`` exits 2 on it)
        validate_output(str(root), workers=ValidationWorkers())

    def fail() -> None:
        raise ImportError("no great_expectations here")

    monkeypatch.setattr(schemas.expectations, "import_gx", fail)
    workers = ValidationWorkers()  # the worker imports GX with the function it forked with
    with pytest.raises(ImportError, match="no great_expectations here"):
        validate_output(str(root), ["dead_letter"], data_docs=False, workers=workers)


def test_connected_parts_not_summing_fails(tmp_path):
    sessions = [_session("c1", DAY1, connected_ms=25001), _open_session("c2", DAY2)]
    verdict = validate_output(str(_output(tmp_path, channel_sessions=sessions)), ["channel_sessions"], data_docs=False)
    failure = _failure(
        verdict,
        "channel_sessions",
        "expect_column_pair_values_to_be_equal",
        ("connected_ms", "_talk_hold_park_interruption_ms"),
    )
    assert failure.examples == [[25001, 25000]]
    assert len(verdict.failures) == 1, format_verdict(verdict)


def test_wrong_column_type_fails(tmp_path):
    _output(tmp_path)
    as_string = TABLES["channel_sessions"].set(
        TABLES["channel_sessions"].get_field_index("hold_ms"), pa.field("hold_ms", pa.string(), nullable=False)
    )
    rows = [{**r, "hold_ms": str(r["hold_ms"])} for r in _valid_tables()["channel_sessions"]]
    for path in (tmp_path / "channel_sessions").rglob("*.parquet"):
        path.unlink()
    _write(tmp_path, "channel_sessions", rows, schema=as_string)
    verdict = validate_output(str(tmp_path), ["channel_sessions"], data_docs=False)
    failure = _failure(verdict, "channel_sessions", "expect_column_values_to_be_of_type", ("hold_ms",))
    assert failure.detail == "dtype string, expected int"


def test_float_column_in_one_file_fails(tmp_path):
    _output(tmp_path)  # c1 on 2024-01-01, c2 on 2024-01-02
    as_float = TABLES["channel_sessions"].set(
        TABLES["channel_sessions"].get_field_index("hold_ms"), pa.field("hold_ms", pa.float64(), nullable=False)
    )
    _write(tmp_path, "channel_sessions", [_session("c3", DAY1 + 7200 * S)], schema=as_float, name="late-{i}")
    verdict = validate_output(str(tmp_path), ["channel_sessions"], data_docs=False)
    assert verdict.tables["channel_sessions"].rows == 3
    failure = _failure(verdict, "channel_sessions", "expect_column_values_to_be_of_type", ("hold_ms",))
    assert failure.detail == "dtype Float64, expected int"  # pandas merges the Int64 and Float64 files


def test_validate_table_in_memory_checks_segment_rules():
    rows = _valid_tables()["channel_segments"]
    rows[1] = {**rows[1], "end_at": None, "duration_ms": None, "ended_by": None}  # open, but not the last segment
    verdict = validate_table("channel_segments", pa.Table.from_pylist(rows, schema=TABLES["channel_segments"]))
    assert not verdict.success
    failure = next(f for f in verdict.failures if f.columns == ("_open_segment_is_last",))
    assert failure.rule == "seq == _channel_max_seq where end_at is null (an open segment is its channel's last)"
    assert failure.examples == [{"seq": 1, "_channel_max_seq": 4}]
    assert failure.example_rows == [{"channel_id": "c1", "seq": 1}]
    valid = pa.Table.from_pylist(_valid_tables()["channel_segments"], schema=TABLES["channel_segments"])
    assert validate_table("channel_segments", valid).success


def test_validate_table_checks_the_timestamp_unit():
    data = pa.Table.from_pylist(_valid_tables()["dead_letter"], schema=TABLES["dead_letter"])
    index = data.schema.get_field_index("ingested_at")
    data = data.set_column(index, "ingested_at", data["ingested_at"].cast(pa.timestamp("ms", tz="UTC")))
    verdict = validate_table("dead_letter", data)
    failure = _failure(verdict, "dead_letter", "expect_column_values_to_be_of_type", ("ingested_at",))
    assert failure.detail == "dtype timestamp[ms, tz=UTC][pyarrow], expected Timestamp"


def test_run_exit_codes(tmp_path, capsys):
    good = _output(tmp_path / "good")
    assert run([str(good), "--no-docs"]) == 0
    assert "validation passed" in capsys.readouterr().out

    bad = _output(tmp_path / "bad", channel_sessions=[_session("c1", DAY1, hold_ms=-5, talk_ms=20005)])
    assert run([str(bad), "--no-docs", "--table", "channel_sessions"]) == 1
    err = capsys.readouterr().err
    assert "channel_sessions: expect_column_values_to_be_between(hold_ms) failed: 1 of 1 rows, e.g. [-5]" in err

    assert run([str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert run([str(tmp_path / "empty")]) == 2
    assert "not a vccflow output" in capsys.readouterr().err
    (tmp_path / "empty" / "_run_report.json").write_text("{}")
    assert run([str(tmp_path / "empty"), "--no-docs"]) == 0


_PRIORITY_PROBE = """
import os, threading, time
import schemas.expectations
from transforms.validation import _import_gx_when_idle

priority = lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
before = priority()
seen = []
asked = threading.Event()

def can_raise_priority():
    def probe():
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), before)
            ok.append(True)
        except OSError:
            pass
    ok = []
    t = threading.Thread(target=probe)
    t.start()
    t.join()
    return bool(ok)

def fake_import():
    seen.append(priority())
    if WAIT:
        asked.set()
        deadline = time.monotonic() + 30
        while priority() == 19 and time.monotonic() < deadline and can_raise:
            time.sleep(0.01)
        seen.append(priority())

def wanted(timeout):
    time.sleep(timeout)
    return asked.is_set()

can_raise = can_raise_priority()
schemas.expectations.import_gx = fake_import
assert _import_gx_when_idle(wanted) is None
expected = [19, before if can_raise else 19] if WAIT else [19]
assert seen == expected, (seen, expected)
assert priority() == before
"""


@pytest.mark.parametrize("wait", [False, True], ids=["import", "import-while-validation-waits"])
def test_validation_workers_import_gx_at_low_priority_until_validation_waits(wait):
    """Only the importing thread is niced (Linux priorities are per thread); once validation
    waits for it, it gets the process's priority back where the system allows it."""
    probe = f"WAIT = {wait}\n" + _PRIORITY_PROBE
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

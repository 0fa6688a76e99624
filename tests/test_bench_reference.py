"""The benchmark's DuckDB reference (bench/duckdb_reference.sql) against the generator's ground truth.

The benchmark (``make bench``) trusts the reference to check vccflow on every channel, so the
reference itself is checked here, on a small shuffled data set with duplicates and every kind
of malformed line, against ``truth.json`` (known by construction). No timing is asserted.
"""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.generate import Config, generate, write_output
from schemas.outputs import CHANNEL_METRICS as METRICS

duckdb = pytest.importorskip("duckdb", reason="duckdb is not installed (pip install -e '.[test]' or '.[bench]')")

REFERENCE = Path(__file__).resolve().parents[1] / "bench" / "reference.py"

ALWAYS = ("event_count", "duplicate_count", "first_event_at", "last_event_at")


def _load_reference():
    spec = importlib.util.spec_from_file_location("bench_reference", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _us(iso: str) -> int:
    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (dt - datetime(1970, 1, 1, tzinfo=UTC)) // (datetime.resolution)


def _reference_rows(inputs: list[str]) -> dict[str, dict]:
    con = _load_reference().run_reference(inputs, threads=2)
    cur = con.execute("SELECT * FROM channel_metrics")
    names = [d[0] for d in cur.description]
    rows = {}
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        row["first_event_at"] = row.pop("first_event_us")
        row["last_event_at"] = row.pop("last_event_us")
        rows[row["channel_id"]] = row
    return rows


def _truth_row(row: dict) -> dict:
    return {
        **row,
        "first_event_at": _us(row["first_event_at"]),
        "last_event_at": _us(row["last_event_at"]),
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[dict, dict]:
    """A small shuffled data set in 3 files; returns (truth, reference rows)."""
    out = tmp_path_factory.mktemp("bench-ref")
    generated = generate(Config(agents=6, interactions=80, seed=3, shuffle=True, files=3))
    write_output(generated, out)
    truth = json.loads((out / "truth.json").read_text(encoding="utf-8"))
    return truth, _reference_rows([str(out / "notifications-*.jsonl")])


def test_reference_has_every_channel_and_only_them(dataset):
    truth, rows = dataset
    assert set(rows) == set(truth["channels"])


def test_reference_flags_exactly_the_anomalous_channels(dataset):
    truth, rows = dataset
    expected = {cid for cid, row in truth["channels"].items() if row["anomaly_count"] > 0}
    flagged = {cid for cid, row in rows.items() if row["anomalous"]}
    assert expected, "the generator always plants a few anomalies"
    assert flagged == expected


def test_reference_metrics_match_the_truth(dataset):
    truth, rows = dataset
    mismatches = []
    compared = 0
    for cid, expected in truth["channels"].items():
        got, want = rows[cid], _truth_row(expected)
        columns = ALWAYS if got["anomalous"] else ALWAYS + METRICS
        compared += not got["anomalous"]
        for col in columns:
            if got[col] != want[col]:
                mismatches.append(f"{cid} {col}: reference {got[col]!r} != truth {want[col]!r}")
    assert not mismatches, "\n".join(mismatches[:20])
    assert compared > 100


def test_reference_stats_account_for_valid_channel_events(dataset):
    truth, rows = dataset
    valid_channel_events = sum(row["event_count"] for row in truth["channels"].values())
    duplicates = sum(row["duplicate_count"] for row in truth["channels"].values())
    assert sum(r["event_count"] for r in rows.values()) == valid_channel_events
    assert sum(r["duplicate_count"] for r in rows.values()) == duplicates


def test_reference_parses_times_like_the_parser(tmp_path):
    """Zone offsets, 7 fractional digits, spaces and impossible dates, as transforms/events.py reads them."""
    from transforms.events import parse_line

    def line(i: int, ts: str, etype: str = "channel.alerted.v1") -> str:
        body = {"channelId": f"c{i}", "party": {"role": "customer"}}
        doc = {"type": etype, "id": f"e{i}", "source": "/channel", "data": {"timestamp": ts, "channel": body}}
        return json.dumps(doc)

    stamps = [
        "2024-03-04T08:00:00Z",
        "2024-03-04T08:00:00.1234567Z",
        "2024-03-04 08:00:00,5+01:30",
        " 2024-03-04T08:00:00.25-0530 ",
        "2024-03-04T24:00:00Z",
        "2024-02-30T08:00:00Z",
        "2024-03-04T08:00:60Z",
        "2024-03-04T08:00:00+24:00",
        "0001-01-01T00:30:00+01:00",
        "0001-01-01T00:30:00Z",
        "9999-12-31T23:30:00-01:00",
        "9999-12-31T23:59:59.999999Z",
        "2024-03-04T08:00:00",
        "yesterday",
    ]
    lines = [line(i, ts) for i, ts in enumerate(stamps)]
    lines += [line(90, "2024-03-04T08:00:00Z", "channel.held.v9"), line(91, "2024-03-04T08:00:00Z", "channel.held")]
    path = tmp_path / "times.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    expected = {}
    for raw in lines:
        ev = parse_line(raw.encode(), "x")
        if hasattr(ev, "ts"):
            expected[ev.key] = ev.ts
    assert len(expected) == 7  # 4 plain times, the two calendar ends, the unversioned type
    rows = _reference_rows([str(path)])
    assert {cid: row["first_event_at"] for cid, row in rows.items()} == expected

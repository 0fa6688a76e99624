"""The ``vccflow`` command: help, exit codes, and the output folder's life cycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pandas as pd
import pytest

from pipelines.cli import COMMANDS, main
from tests.test_events import HELD, with_

ROOT = Path(__file__).resolve().parents[1]


def notification(kind: str, at: str, channel: str, id_: str, **data) -> bytes:
    ev = with_(HELD, "type", f"channel.{kind}.v1")
    ev = with_(with_(ev, "id", id_), "subject", channel)
    ev = with_(with_(ev, "data.channel.channelId", channel), "data.timestamp", at)
    for k, v in data.items():
        ev = with_(ev, f"data.{k}", v)
    return orjson.dumps(ev)


def call_lines(channel: str, day: str = "2024-03-04") -> list[bytes]:
    return [
        notification("alerted", f"{day}T09:00:00.000Z", channel, f"{channel}-1"),
        notification("connected", f"{day}T09:00:04.000Z", channel, f"{channel}-2"),
        notification("disconnected", f"{day}T09:01:04.000Z", channel, f"{channel}-3"),
        notification("wrapstarted", f"{day}T09:01:04.000Z", channel, f"{channel}-4"),
        notification("ended", f"{day}T09:01:34.000Z", channel, f"{channel}-5", reason="released"),
    ]


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.jsonl").write_bytes(b"\n".join(call_lines("chA") + [b"", b"not json"]) + b"\n")
    return d


def run_cli(*args: str) -> int:
    return main(list(args))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_has_help_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(command, "--help")
    assert exc.value.code == 0
    assert "example" in capsys.readouterr().out.lower()


def test_top_level_help_lists_commands(capsys):
    assert run_cli("--help") == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)
    assert run_cli("nope") == 2


def test_console_script_help_does_not_import_great_expectations():
    code = "import sys; from pipelines.cli import main; main(['--help']); print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip().endswith("False")


def test_commands_import_without_collections_and_the_console_freezes_them():
    code = """
import gc, importlib, types
from pipelines import cli
runs, importing = [], []
def watched(name):
    importing.append(name)
    try:
        return importlib.import_module(name)
    finally:
        importing.clear()
cli.importlib = types.SimpleNamespace(import_module=watched)  # the command's import, watched
gc.callbacks.append(lambda phase, info: importing and runs.append(phase))
gc.enable()
try:
    cli.main(["batch", "--help"], freeze=True)
except SystemExit:
    pass
print(len(runs), gc.isenabled(), gc.get_freeze_count())
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    collections, enabled, frozen = out.splitlines()[-1].split()
    assert collections == "0" and enabled == "True"  # none while importing Beam; the collector back on
    assert int(frozen) > 100_000  # Beam's objects, skipped by every later collection


def test_console_keeps_blas_to_one_thread_unless_told_otherwise(monkeypatch):
    import pipelines.cli
    import pipelines.worker

    monkeypatch.setattr(pipelines.worker, "_fork_allowed", [])  # what the console allows: this process's only
    seen = []
    monkeypatch.setattr(
        pipelines.cli, "main", lambda freeze: seen.append((freeze, os.environ.get("OPENBLAS_NUM_THREADS"))) or 0
    )
    monkeypatch.setattr(pipelines.cli.os, "_exit", lambda code: seen.append(code))
    monkeypatch.setattr(sys, "argv", ["vccflow", "--help"])
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    pipelines.cli.console()
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    pipelines.cli.console()
    assert seen == [(True, "1"), 0, (True, "4"), 0]
    assert pipelines.worker._fork_allowed == [True]  # its batch run's zygote may be forked from it


def test_glob_matching_nothing_is_exit_2_with_one_line(tmp_path, capsys):
    assert run_cli("batch", "--input", str(tmp_path / "missing-*.jsonl"), "--output", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no input file matches" in err[0]
    assert not (tmp_path / "o").exists()


def test_output_that_is_a_file_is_refused(inputs, tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("keep me")
    assert run_cli("batch", "--input", str(inputs / "*.jsonl"), "--output", str(target)) == 2
    assert "is a file" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_foreign_output_folder_is_refused_not_deleted(inputs, tmp_path, capsys):
    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.docx").write_text("precious")
    assert run_cli("batch", "--input", str(inputs / "*.jsonl"), "--output", str(home)) == 2
    assert "not vccflow output" in capsys.readouterr().err
    assert [p.name for p in home.iterdir()] == ["thesis.docx"]


def test_rerun_replaces_previous_output_as_a_whole(inputs, tmp_path):
    out = tmp_path / "out"
    assert run_cli("batch", "--input", str(inputs / "*.jsonl"), "--output", str(out)) == 0
    first = json.loads((out / "_run_report.json").read_text())
    assert first["accounting_closes"] and first["lines"] == 7 and first["dead_letters_by_code"] == {"invalid_json": 1}
    other = tmp_path / "other"
    other.mkdir()
    (other / "b.jsonl").write_bytes(b"\n".join(call_lines("chB", day="2024-05-06")) + b"\n")
    assert run_cli("batch", "--input", str(other / "*.jsonl"), "--output", str(out)) == 0
    sessions = pd.read_parquet(out / "channel_sessions")
    assert list(sessions["channel_id"]) == ["chB"]
    assert sorted(p.name for p in (out / "channel_sessions").iterdir()) == ["event_date=2024-05-06"]
    assert len(pd.read_parquet(out / "dead_letter")) == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_crash_midway_leaves_previous_output_intact(inputs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    assert run_cli("batch", "--input", str(inputs / "*.jsonl"), "--output", str(out)) == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())

    import transforms.sessionize

    def boom(*_a, **_k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(transforms.sessionize, "sessionize_channel", boom)
    assert run_cli("batch", "--input", str(inputs / "*.jsonl"), "--output", str(out)) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "failed" in err[0] and "Traceback" not in err[0]
    after = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert after == before
    assert list(pd.read_parquet(out / "channel_sessions")["channel_id"]) == ["chA"]


def test_ctrl_c_midway_exits_130_publishes_nothing_and_ends_the_validation_workers(
    inputs, tmp_path, monkeypatch, capsys
):
    import pipelines.batch

    out = tmp_path / "out"
    started = []

    class Workers(pipelines.batch.ValidationWorkers):
        def __init__(self) -> None:
            super().__init__()
            started.append(self)

    def interrupt(*_a, **_k):  # as Ctrl-C does, in the main thread: here once the pipeline is done
        raise KeyboardInterrupt

    monkeypatch.setattr(pipelines.batch, "ValidationWorkers", Workers)
    monkeypatch.setattr(pipelines.batch.outputs, "read_json", interrupt)
    assert run_cli("batch", "--input", str(inputs / "*.jsonl"), "--output", str(out)) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "vccflow batch: interrupted"
    assert not out.exists() or not any(out.iterdir())
    assert len(started) == 1 and started[0]._process.exitcode is not None  # ended, not left importing


def test_ctrl_c_while_importing_beam_exits_130(monkeypatch, capsys):
    import pipelines.cli

    def interrupt(_name):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipelines.cli.importlib, "import_module", interrupt)
    assert run_cli("batch", "--input", "x", "--output", "y") == 130
    assert capsys.readouterr().err.strip() == "vccflow batch: interrupted"


def test_failed_validation_exits_1_with_a_verdict_and_keeps_the_evidence(inputs, tmp_path, monkeypatch, capsys):
    import transforms.sessionize
    from transforms.timeline import SESSION_COLUMNS, ChannelResult, sessionize_channel

    def corrupt(events):
        session, segments = sessionize_channel(events)
        hold = SESSION_COLUMNS.index("hold_ms")
        return ChannelResult((*session[:hold], -5, *session[hold + 1 :]), segments)

    monkeypatch.setattr(transforms.sessionize, "sessionize_channel", corrupt)
    out = tmp_path / "out"
    assert run_cli("batch", "--input", str(inputs / "*.jsonl"), "--output", str(out)) == 1
    err = capsys.readouterr().err
    assert "channel_sessions" in err and "hold_ms" in err
    report = json.loads((out / "_run_report.json").read_text())
    assert report["validation"]["success"] is False
    assert (out / "_validation" / "data_docs" / "index.html").exists()


def test_output_below_a_file_is_refused(inputs, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    assert run_cli("batch", "--input", str(inputs / "*.jsonl"), "--output", str(tmp_path / "file.txt" / "out")) == 2
    assert "is a file" in capsys.readouterr().err


def test_unreadable_file_is_a_dead_letter_and_the_run_goes_on(inputs, tmp_path):
    (inputs / "b.jsonl.gz").write_bytes(b"this is not gzip at all" * 10)
    out = tmp_path / "out"
    assert run_cli("batch", "--input", str(inputs / "*"), "--output", str(out)) == 0
    report = json.loads((out / "_run_report.json").read_text())
    assert report["dead_letters_by_code"] == {"invalid_json": 1, "unreadable": 1} and report["accounting_closes"]
    dead = pd.read_parquet(out / "dead_letter").set_index("error_code")
    assert dead.loc["unreadable", "origin"] == f"{inputs / 'b.jsonl.gz'}:1"
    assert "cannot read" in dead.loc["unreadable", "error_detail"]
    assert list(pd.read_parquet(out / "channel_sessions")["channel_id"]) == ["chA"]


def test_verbose_shows_the_traceback(inputs, tmp_path, monkeypatch):
    import transforms.sessionize

    def boom(*_a, **_k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(transforms.sessionize, "sessionize_channel", boom)
    with pytest.raises(Exception, match="disk on fire"):
        run_cli("--verbose", "batch", "--input", str(inputs / "*.jsonl"), "--output", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_default_runner_uses_one_worker_process_per_core_for_large_inputs(monkeypatch):
    from apache_beam.options.pipeline_options import DirectOptions
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    from pipelines import batch
    from pipelines.worker import PARALLEL_INPUT_BYTES

    monkeypatch.setattr(batch.os, "cpu_count", lambda: 4)

    def mode(args, size):
        p = batch.make_pipeline(args, size)
        direct = p.options.view_as(DirectOptions)
        env = p.runner._default_environment
        worker = env.command_string if isinstance(env, SubprocessSDKEnvironment) else None
        return direct.direct_running_mode, direct.direct_num_workers, worker

    vccflow_worker = f"exec {sys.executable} -m pipelines.worker"  # Beam runs it in a shell
    big = PARALLEL_INPUT_BYTES
    assert mode([], big - 1) == ("in_memory", 1, None)
    assert mode([], big) == ("in_memory", 4, vccflow_worker)
    assert mode(["--direct_num_workers=3"], big) == ("in_memory", 3, vccflow_worker)
    assert mode(["--direct_num_workers=2"], 0) == ("in_memory", 2, vccflow_worker)
    assert mode(["--direct_num_workers", "3"], 0) == ("in_memory", 3, vccflow_worker)
    assert mode(["--direct_num_workers=0"], 0) == ("in_memory", 4, vccflow_worker)  # 0: one per core, as in Beam
    assert mode(["--direct_num_workers=1"], big) == ("in_memory", 1, None)
    assert mode(["--direct_running_mode", "in_memory"], big) == ("in_memory", 1, None)
    beams_own = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    assert mode(beams_own, 0) == ("multi_processing", 2, None)


def test_interval_options_set_the_grid_of_the_interval_tables(inputs, tmp_path):
    out = tmp_path / "out"
    args = ["--input", str(inputs / "*.jsonl"), "--output", str(out), "--interval-minutes", "60"]
    assert run_cli("batch", *args, "--short-abandon-seconds", "3") == 0
    (agent,) = pd.read_parquet(out / "agent_intervals").to_dict("records")
    assert (str(agent["interval_start"]), str(agent["interval_end"])) == (
        "2024-03-04 09:00:00+00:00",
        "2024-03-04 10:00:00+00:00",
    )
    # no presence: the call's 94 s are an inferred session's, logged-in time of unknown presence
    assert (agent["agent_id"], agent["logged_in_ms"], agent["other_presence_ms"]) == ("1544", 94_000, 94_000)
    assert (agent["alert_ms"], agent["talk_ms"], agent["wrap_ms"], agent["busy_ms"]) == (4_000, 60_000, 30_000, 90_000)
    assert (agent["offers"], agent["answered"], agent["handled"], agent["handle_ms_of_handled"]) == (1, 1, 1, 90_000)
    (service,) = pd.read_parquet(out / "service_intervals").to_dict("records")
    assert (str(service["interval_start"]), service["handled"], service["handle_ms_of_handled"]) == (
        "2024-03-04 09:00:00+00:00",
        1,
        90_000,
    )
    report = json.loads((out / "_run_report.json").read_text())
    assert (report["rows"]["agent_intervals"], report["rows"]["service_intervals"]) == (1, 1)


@pytest.mark.parametrize("command", ["batch", "stream"])
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--interval-minutes", "20", "expected one of 15, 30, 60 (minutes), got '20'"),
        ("--interval-minutes", "quarter", "expected one of 15, 30, 60 (minutes), got 'quarter'"),
        ("--short-abandon-seconds", "0", "expected a whole number >= 1, got 0"),
        ("--short-abandon-seconds", "2.5", "expected a whole number >= 1, got '2.5'"),
    ],
)
def test_other_interval_option_values_are_usage_errors(command, option, value, message, inputs, tmp_path, capsys):
    where = {
        "batch": ["--input", str(inputs / "*.jsonl")],
        "stream": ["--topic", "projects/p/topics/t"],
    }[command]
    with pytest.raises(SystemExit) as exc:
        run_cli(command, *where, "--output", str(tmp_path / "out"), option, value)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {option}" in err and message in err
    assert not (tmp_path / "out").exists()


def test_shards_follow_the_input_size_and_bad_values_are_usage_errors(tmp_path, capsys):
    import gzip as gz

    from pipelines.batch import MIN_SHARDS, SHARD_INPUT_BYTES, build_parser, shards_for
    from transforms.io import GZIP_RATIO, input_weight

    assert shards_for(0) == shards_for(MIN_SHARDS * SHARD_INPUT_BYTES) == MIN_SHARDS
    assert shards_for(MIN_SHARDS * SHARD_INPUT_BYTES + 1) == MIN_SHARDS + 1
    # a year of archives (~500 GB): ~8,500 shards of ~115,000 notifications each
    assert shards_for(500 * 10**9) == -(-500 * 10**9 // SHARD_INPUT_BYTES) == 8515
    # rounded up to a multiple of the local workers, so each gets as many shards
    assert shards_for(MIN_SHARDS * SHARD_INPUT_BYTES + 1, workers=2) == MIN_SHARDS + 2
    assert shards_for(MIN_SHARDS * SHARD_INPUT_BYTES, workers=2) == MIN_SHARDS
    assert shards_for(0, workers=3) == 9 and shards_for(0, workers=0) == MIN_SHARDS
    plain, packed = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    plain.write_bytes(b"x" * 1000)
    packed.write_bytes(gz.compress(b"y" * 10_000))
    assert input_weight([str(plain), str(packed)]) == 1000 + GZIP_RATIO * packed.stat().st_size
    assert build_parser().parse_args(["--input", "x", "--output", "o"]).shards is None  # auto
    assert build_parser().parse_args(["--input", "x", "--output", "o", "--shards", "auto"]).shards is None
    assert build_parser().parse_args(["--input", "x", "--output", "o", "--shards", "40"]).shards == 40
    for bad in ("0", "-3", "many"):
        with pytest.raises(SystemExit) as exit_:
            build_parser().parse_args(["--input", "x", "--output", "o", "--shards", bad])
        assert exit_.value.code == 2
    assert "--shards" in capsys.readouterr().err

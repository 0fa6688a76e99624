"""The SDK worker processes of local multi-process runs (``pipelines.worker``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

from pipelines.batch import make_pipeline
from pipelines.worker import WorkerZygote


def _client(zygote: WorkerZygote, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = zygote.command.split()
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)


def test_zygote_passes_the_harness_exit_code_and_streams_and_stops_when_closed():
    with WorkerZygote() as zygote:
        assert zygote.command == f"{sys.executable} -m pipelines.worker --via {zygote.socket_path}"
        # no control endpoint in the environment: Beam's harness fails, in the forked process,
        # and prints why on the client's stderr
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_SERVICE_DESCRIPTOR")}
        done = _client(zygote, env)
        assert done.returncode == 1
        assert "KeyError: 'CONTROL_API_SERVICE_DESCRIPTOR'" in done.stderr
        assert _client(zygote, env).returncode == 1  # one harness per request
        process, path = zygote._process, zygote.socket_path
    assert process.returncode == 0
    assert not os.path.exists(path)


def test_client_without_a_zygote_fails():
    done = subprocess.run(
        [sys.executable, "-m", "pipelines.worker", "--via", "/nonexistent/zygote.sock"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "FileNotFoundError" in done.stderr


def test_client_leaves_ctrl_c_to_the_job(tmp_path):
    """A terminal's Ctrl-C reaches the job's whole process group, worker clients included; the
    job handles it and ends its workers, so a client waits on for its harness, quietly."""
    path = str(tmp_path / "zygote.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        client = subprocess.Popen(
            [sys.executable, "-m", "pipelines.worker", "--via", path], stderr=subprocess.PIPE, text=True
        )
        conn, _ = listener.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1, 3)
            for fd in fds:
                os.close(fd)
            with conn.makefile("rb") as f:
                assert b"PATH" in f.readline()  # the client's environment: it now waits for an exit code
            client.send_signal(signal.SIGINT)
            time.sleep(0.5)
            assert client.poll() is None
            conn.sendall(bytes([7]))
        assert client.wait(timeout=60) == 7
        assert client.stderr.read() == ""


def _sums_per_key(p: beam.Pipeline) -> None:
    """A small keyed sum, computed outside this process."""
    here = os.getpid()
    sums = (
        p
        | beam.Create(range(1000))
        | beam.Map(lambda x: (x % 7, x))
        | beam.GroupByKey()
        | beam.MapTuple(lambda k, xs: (k, sum(xs), os.getpid()))
    )
    expected = [(k, sum(range(k, 1000, 7))) for k in range(7)]
    assert_that(sums | "Sums" >> beam.MapTuple(lambda k, s, pid: (k, s)), equal_to(expected), label="CheckSums")
    elsewhere = sums | "Elsewhere" >> beam.MapTuple(lambda k, s, pid: pid != here) | beam.Distinct()
    assert_that(elsewhere, equal_to([True]), label="CheckElsewhere")


def test_pipeline_runs_on_fresh_worker_processes():
    with make_pipeline(["--direct_num_workers=2"]) as p:
        _sums_per_key(p)


def test_pipeline_runs_on_workers_forked_by_the_zygote(caplog):
    with WorkerZygote() as zygote, make_pipeline(["--direct_num_workers=2"], 0, zygote.command) as p:
        _sums_per_key(p)
    # each worker's warning that it found no staged main session (vccflow stages none: the
    # workers import its modules) is not passed on to the user
    assert not [r for r in caplog.records if "semi_persistent_directory" in r.getMessage()]


def test_zygote_is_forked_once_when_allowed_and_only_for_a_run_with_worker_processes(monkeypatch):
    from pipelines import worker

    monkeypatch.setattr(worker, "_fork_allowed", [])
    monkeypatch.setattr(worker.os, "cpu_count", lambda: 2)
    big = worker.PARALLEL_INPUT_BYTES
    for args, size in (
        ([], big - 1),
        (["--runner", "DataflowRunner"], big),
        (["--direct_num_workers=1"], big),
        (["--direct_running_mode", "multi_processing"], big),
    ):
        assert worker.zygote_for(args, size) is None, args
    forks = []
    monkeypatch.setattr(worker.WorkerZygote, "__init__", lambda self, fork=False: forks.append(fork))
    worker.zygote_for([], big)  # not allowed: a fresh interpreter
    worker.allow_forked_zygote()
    worker.zygote_for(["--direct_num_workers", "2"], 0)  # allowed: forked, once
    worker.zygote_for([], big)
    assert forks == [False, True, False]


FORKED_RUN = """
import os, sys
from pipelines.worker import WorkerZygote
from pipelines.batch import make_pipeline
import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to

here = os.getpid()
with WorkerZygote(fork=True) as zygote:
    zygote_pid = zygote._pid
    assert zygote_pid and zygote._process is None
    with make_pipeline(["--direct_num_workers=2"], 0, zygote.command) as p:
        pids = (
            p
            | beam.Create(range(100))
            | beam.Map(lambda x: (x % 5, x))
            | beam.GroupByKey()
            | beam.MapTuple(lambda k, xs: (k, sum(xs), os.getpid(), os.getppid()))
        )
        sums = pids | beam.MapTuple(lambda k, s, pid, ppid: (k, s))
        assert_that(sums, equal_to([(k, sum(range(k, 100, 5))) for k in range(5)]))
        parents = pids | beam.MapTuple(lambda k, s, pid, ppid: ppid == zygote_pid) | beam.Distinct()
        assert_that(parents, equal_to([True]), label="Parents")
try:
    os.kill(zygote_pid, 0)
except ProcessLookupError:
    print("ZYGOTE GONE")
"""


def test_pipeline_runs_on_workers_of_a_zygote_forked_from_the_caller():
    """In a fresh process (one that has run no pipeline, as under the console script): the
    harnesses are children of the forked zygote, which is reaped when the run is over."""
    done = subprocess.run([sys.executable, "-c", FORKED_RUN], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ZYGOTE GONE" in done.stdout

"""The SDK worker processes of local multi-process runs.

Beam's FnApiRunner starts one worker per core for large batch inputs
(:func:`pipelines.batch.make_pipeline`) by running a command; the workers are Beam's own
harness (``apache_beam.runners.worker.sdk_worker_main``). Two ways to start them:

- ``python -m pipelines.worker``: the harness in a fresh interpreter, which leaves with
  ``os._exit`` once it has finished and flushed its logs (the runner stops its workers one
  after the other and waits for each; tearing down an interpreter that has imported Beam,
  pyarrow and pandas costs ~0.4 s of garbage collection).
- ``python -m pipelines.worker --via SOCKET``: a small client that asks a
  :class:`WorkerZygote` to fork the harness and waits for it. ``vccflow batch`` starts the
  zygote before it builds its pipeline; it has Beam and vccflow imported once, so every
  worker is ready in milliseconds instead of each paying the ~1.5 CPU-s an import of Beam
  costs. Run by the ``vccflow`` command, the zygote is a fork of the command's own process,
  which has imported all of it already (:func:`allow_forked_zygote`); otherwise (a job run
  from a process that may have run pipelines before, such as a test session) it is a fresh
  interpreter that imports them.

The client imports nothing heavy: it hands over its standard streams and its environment
(the runner's control and logging endpoints), then exits with the harness's exit code.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

from transforms.collector import paused_gc


def run_harness() -> int:
    """Beam's SDK harness until the runner closes it: 0, or 1 after printing the error."""
    from apache_beam.runners.worker import sdk_worker_main

    try:
        sdk_worker_main.main(sys.argv)
    except BaseException:  # noqa: BLE001 (printed, then the exit code says it)
        traceback.print_exc()
        return 1
    return 0


def _leave(code: int) -> None:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class WorkerZygote:
    """A process that forks one SDK harness per request of ``python -m pipelines.worker
    --via`` (:attr:`command` is that command line), with Beam and vccflow imported once.

    By default it is a fresh interpreter (``python -m pipelines.worker --zygote``), never a
    fork of the caller: a process that has run a pipeline holds gRPC state a forked harness
    must not inherit. With ``fork`` (see :func:`allow_forked_zygote`) it is a fork of the
    caller, which must not have started any pipeline, gRPC channel or thread yet: the
    imports are then shared, not repeated (the ~2 CPU-s of importing Beam once more).
    It listens from the start, so workers asked for while it still imports wait.
    Use it as a context manager around the pipeline run: leaving it stops the zygote (the
    harnesses it forked end when the runner closes them).
    """

    def __init__(self, fork: bool = False) -> None:
        self._dir = tempfile.mkdtemp(prefix="vccflow-workers-")
        self.socket_path = os.path.join(self._dir, "zygote.sock")
        self._process: subprocess.Popen | None = None
        self._pid = 0
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
            listener.bind(self.socket_path)
            listener.listen(64)
            stop_r, self._stop_w = os.pipe()
            fds = (listener.fileno(), stop_r)
            if fork:
                self._fork(listener, stop_r)
            else:
                cmd = [sys.executable, "-m", "pipelines.worker", "--zygote", *map(str, fds)]
                self._process = subprocess.Popen(cmd, pass_fds=fds, stdin=subprocess.DEVNULL)
            os.close(stop_r)
        self.command = f"{sys.executable} -m pipelines.worker --via {self.socket_path}"

    def _fork(self, listener: socket.socket, stop_r: int) -> None:
        from apache_beam.runners.worker import sdk_worker_main  # noqa: F401 (what every harness runs)

        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the zygote: it never returns to the caller's code
            try:
                os.close(self._stop_w)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
                _serve(listener, stop_r)
            finally:
                _leave(0)
        self._pid = pid

    def __enter__(self) -> WorkerZygote:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the zygote and remove its socket (idempotent)."""
        if self._stop_w >= 0:
            os.write(self._stop_w, b"x")  # (processes forked since may hold copies: no EOF yet)
            os.close(self._stop_w)
            self._stop_w = -1
            if self._process is not None:
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            else:
                _wait_or_kill(self._pid, timeout=10)
        shutil.rmtree(self._dir, ignore_errors=True)


def _wait_or_kill(pid: int, timeout: float) -> int:
    """Reap the child ``pid``, killing it if it has not exited within ``timeout`` seconds;
    its exit status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


#: From this much input on, the default runner uses one worker process per core.
PARALLEL_INPUT_BYTES = 64 << 20
_fork_allowed: list[bool] = []


def flag_given(args: list[str], flag: str) -> bool:
    """Whether ``--flag`` (alone or as ``--flag=value``) is among ``args``."""
    return any(a == flag or a.startswith(flag + "=") for a in args)


def worker_processes(beam_args: list[str], input_bytes: int) -> int:
    """How many SDK worker processes vccflow starts for a run on the default runner: one per
    core from :data:`PARALLEL_INPUT_BYTES` of input on, or ``--direct_num_workers`` (0: one
    per core, as in Beam); 0 when that is 1 (the run is in-process) or when ``--runner`` or
    ``--direct_running_mode`` (Beam's own choice of mode and worker) is given."""
    if flag_given(beam_args, "--runner") or flag_given(beam_args, "--direct_running_mode"):
        return 0
    cores = os.cpu_count() or 1
    count = cores if input_bytes >= PARALLEL_INPUT_BYTES else 1
    for i, arg in enumerate(beam_args):
        value = arg.removeprefix("--direct_num_workers=") if arg.startswith("--direct_num_workers=") else None
        if arg == "--direct_num_workers" and i + 1 < len(beam_args):
            value = beam_args[i + 1]
        if value is not None and value.isdigit():
            count = int(value) or cores
    return count if count > 1 else 0


def allow_forked_zygote() -> None:
    """Declare that this process runs one command and has not started any pipeline: the
    zygote of its batch run may be forked from it (``WorkerZygote(fork=True)``, see
    :func:`zygote_for`). The ``vccflow`` console script does this before it runs ``batch``."""
    _fork_allowed[:] = [True]


def zygote_for(beam_args: list[str], input_bytes: int) -> WorkerZygote | None:
    """The zygote of a batch run that uses worker processes (:func:`worker_processes`), None
    for one that does not: forked from this process once, if :func:`allow_forked_zygote` was
    called (later ones, and every one otherwise, are fresh interpreters)."""
    if not worker_processes(beam_args, input_bytes):
        return None
    return WorkerZygote(fork=bool(_fork_allowed and _fork_allowed.pop()))


def _serve(listener: socket.socket, stop: int) -> None:
    """The zygote: import Beam's harness and vccflow's transforms, then fork a harness per
    connection until ``stop`` is readable (a byte from :meth:`WorkerZygote.close`, or EOF
    once every process holding its other end is gone)."""
    with paused_gc(freeze=True):  # the imports live as long as the process
        from apache_beam.runners.worker import sdk_worker_main  # noqa: F401 (imported once, for every harness)

        import transforms.io  # noqa: F401 (what the batch job's workers run)
        import transforms.parquet  # noqa: F401
        import transforms.sessionize  # noqa: F401

    while True:
        ready, _, _ = select.select([listener, stop], [], [])
        if stop in ready:
            _reap(block=True)
            return
        _reap(block=False)
        conn, _ = listener.accept()
        _, stdio, _, _ = socket.recv_fds(conn, 1, 3)
        with conn.makefile("rb") as f:
            env = json.loads(f.readline())
        if os.fork() == 0:
            listener.close()
            os.close(stop)
            _harness_child(conn, stdio, env)
        conn.close()
        for fd in stdio:
            os.close(fd)


def _reap(block: bool) -> None:
    """Collect exited harnesses (all of them, waiting, with ``block``): their CPU time then
    counts in this process's children, and so in its caller's."""
    try:
        while os.waitpid(-1, 0 if block else os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _harness_child(conn: socket.socket, stdio: list[int], env: dict[str, str]) -> None:
    """In a fresh fork of the zygote: the harness with the client's standard streams and
    environment, its exit code sent back to the client."""
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (the process's own streams)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    for handler in logging.root.handlers[:]:  # the caller's console logging: the harness logs to the runner
        logging.root.removeHandler(handler)
    os.environ.clear()
    os.environ.update(env)
    code = run_harness()
    try:
        conn.sendall(bytes([code]))
    finally:
        _leave(code)


def _via(path: str) -> int:
    """The client: have the zygote at ``path`` fork a harness with this environment, wait for
    it to finish and return its exit code (1 if it vanished without one).

    Ctrl-C in a terminal reaches every process of the job's process group, this one too: it
    is the job's to handle (it ends its workers), so the client waits on without a traceback.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        socket.send_fds(conn, [b"."], [0, 1, 2])
        conn.sendall(json.dumps(dict(os.environ)).encode() + b"\n")
        status = conn.recv(1)
    return status[0] if status else 1


def main(argv: list[str]) -> None:
    if argv[:1] == ["--via"] and len(argv) == 2:
        sys.exit(_via(argv[1]))
    if argv[:1] == ["--zygote"] and len(argv) == 3:
        from pipelines.allocator import keep_freed_memory

        keep_freed_memory()  # before any import: the zygote's harnesses inherit it
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
        listener, stop = (int(fd) for fd in argv[1:])
        _serve(socket.socket(fileno=listener), stop)
        _leave(0)
    _leave(run_harness())


if __name__ == "__main__":
    main(sys.argv[1:])

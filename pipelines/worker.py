"""The SDK worker process of local multi-process runs: ``python -m pipelines.worker``.

Beam's own worker (``apache_beam.runners.worker.sdk_worker_main``), which the FnApiRunner
starts once per core for large batch inputs (:func:`pipelines.batch.make_pipeline`). The
only difference: once the harness has finished its work and flushed its logs, the process
leaves with ``os._exit`` instead of tearing the interpreter down. The runner stops its
workers one after the other and waits for each to exit, and tearing down a process that
has imported Beam, pyarrow and pandas costs ~0.4 s of garbage collection each.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback

from apache_beam.runners.worker import sdk_worker_main


def main() -> None:
    """Run the harness until the runner closes it; exit 0, or 1 after printing the error."""
    try:
        sdk_worker_main.main(sys.argv)
        code = 0
    except BaseException:  # noqa: BLE001 (printed, then the exit code says it)
        traceback.print_exc()
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()

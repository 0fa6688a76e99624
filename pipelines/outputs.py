"""The life of a batch output folder: safety checks, staging, the final swap, the run report.

A run writes everything under a hidden staging folder inside the output root
(``ROOT/.staging-<run id>/``, invisible to pyarrow and pandas, which skip ``.`` and ``_``
names). Only after the pipeline succeeded are the table folders swapped in, each with one
rename on local disks, so a reader never sees a table mixing two runs, and a crash midway
leaves the previous output untouched. On object stores (``gs://``) the swap is a copy and
delete per file: publish-then-read ordering comes from ``_run_report.json``, written last.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from datetime import UTC, datetime

from apache_beam.io.filesystems import FileSystems

from schemas import TABLES
from transforms.parquet import table_file, to_arrow, write_parquet

log = logging.getLogger(__name__)

REPORT = "_run_report.json"
VALIDATION = "_validation"
#: Names a vccflow output root may hold (the streaming job adds its archive and quarantine).
_OURS = set(TABLES) | {REPORT, VALIDATION, "raw", "_quarantine"}


class OutputError(ValueError):
    """The output folder cannot be used (not a folder, not ours, not writable)."""


def is_local(path: str) -> bool:
    return "://" not in path


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]


def check_output_root(root: str) -> None:
    """Refuse a root that is a file, is not writable, or holds anything but vccflow output."""
    if not is_local(root):
        return
    if os.path.exists(root) and not os.path.isdir(root):
        raise OutputError(f"output {root!r} is a file, not a folder")
    if os.path.isdir(root):
        foreign = sorted(
            name for name in os.listdir(root) if name not in _OURS and not name.startswith((".staging-", ".trash-"))
        )
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise OutputError(f"refusing to write into {root!r}: it holds files that are not vccflow output ({shown})")
        if not os.access(root, os.W_OK | os.X_OK):
            raise OutputError(f"output folder {root!r} is not writable")
    else:
        parent = os.path.dirname(os.path.abspath(root))
        while not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if not os.path.isdir(parent):
            raise OutputError(f"cannot create output folder {root!r}: {parent!r} is a file")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise OutputError(f"cannot create output folder {root!r}: {parent!r} is not writable")


def staging_root(root: str, run_id: str) -> str:
    return FileSystems.join(root, f".staging-{run_id}")


def fill_empty_tables(staging: str, rows: dict[str, int], day: str) -> None:
    """Give every table with no rows one empty file, so readers still get its schema."""
    for table in TABLES:
        if not rows.get(table):
            write_parquet(table_file(staging, table, day, "empty"), to_arrow(table, []))


def read_json(path: str) -> dict:
    with FileSystems.open(path) as f:
        return json.loads(f.read())


def write_json(path: str, value: dict) -> None:
    with FileSystems.create(path) as f:
        f.write(json.dumps(value, indent=2, sort_keys=True).encode("utf-8"))


def publish(staging: str, root: str, run_id: str) -> None:
    """Swap the staged tables, validation results and report into ``root``, replacing
    the previous run's as a whole; the report goes last."""
    names = [*TABLES, VALIDATION, REPORT]
    if is_local(root):
        trash = os.path.join(root, f".trash-{run_id}")
        os.makedirs(trash, exist_ok=True)
        for name in names:
            new, cur = os.path.join(staging, name), os.path.join(root, name)
            if os.path.lexists(cur):
                os.replace(cur, os.path.join(trash, name))
            if os.path.lexists(new):
                os.replace(new, cur)
        shutil.rmtree(trash, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
        return
    for name in names:
        cur = FileSystems.join(root, name)
        old = [m.path for m in FileSystems.match([cur + "/**", cur])[0].metadata_list] if name != REPORT else []
        if old:
            FileSystems.delete(old)
        new = FileSystems.join(staging, name)
        files = [m.path for m in FileSystems.match([new + "/**" if name != REPORT else new])[0].metadata_list]
        if files:
            FileSystems.rename(files, [root + f[len(staging) :] for f in files])
    remaining = [m.path for m in FileSystems.match([staging + "/**"])[0].metadata_list]
    if remaining:
        FileSystems.delete(remaining)


def discard(staging: str) -> None:
    """Remove a failed run's staging folder (the previous output stays as it was)."""
    if is_local(staging):
        shutil.rmtree(staging, ignore_errors=True)
    else:
        left = [m.path for m in FileSystems.match([staging + "/**"])[0].metadata_list]
        if left:
            FileSystems.delete(left)

"""Security hygiene (issue 7, item 6).

- No dynamic code execution or unsafe deserialization anywhere in the pipeline code
  (``pipelines/``, ``transforms/``, ``schemas/``): no ``eval``/``exec``, no pickle, marshal,
  dill or shelve loads, no ``yaml.load``, no shell commands. Beam pickles the pipeline's
  own functions to ship them to workers, and a ``PickleCoder`` on a state spec decodes only
  bytes the job itself encoded into runner state: neither ever unpickles input bytes, so
  neither is flagged.
- The raw text a dead letter keeps is capped, whatever the input's size.
- Ids inside notifications never steer where files are written: hostile ids end up verbatim
  in the rows and nowhere in a path.
- A secret carried in an input (there are none in the VCC payload today) is never logged.
"""

from __future__ import annotations

import ast
import io
import logging
import os
import re
import tokenize
from pathlib import Path

import orjson
import pandas as pd
import pytest

from schemas import TABLES
from tests.test_properties import DAY0_US, channel_note, presence_note, ts_text
from transforms.events import MAX_EVENT_BYTES, RAW_CAP_CHARS, DeadLetter, parse_line

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "transforms", "schemas")

# --- no eval / exec / unsafe deserialization -----------------------------------------------------

#: Textual patterns (the brief's grep), matched on the source with comments removed.
FORBIDDEN_TEXT = {
    r"(?<![\w.])eval\s*\(": "eval(",
    r"(?<![\w.])exec\s*\(": "exec(",
    r"\bpickle\.(?:load|loads|Unpickler)\b": "pickle.load",
    r"\byaml\.(?:load|unsafe_load|full_load|load_all)\s*\(": "yaml.load(",
    r"\bmarshal\.loads?\s*\(": "marshal.load",
    r"\bos\.(?:system|popen)\s*\(": "os.system/os.popen",
    r"\bshell\s*=\s*True\b": "shell=True",
}
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "jsonpickle"}
UNSAFE_CALLS = {"eval", "exec", "__import__"}


def source_files() -> list[Path]:
    files = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py"))
    assert len(files) >= 10, files  # the check must look at the real code
    return files


def strip_comments(text: str) -> str:
    """``text`` with every comment blanked out (strings and docstrings kept: stricter)."""
    lines = text.splitlines(keepends=True)
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            (row, col), (_, end) = tok.start, tok.end
            lines[row - 1] = lines[row - 1][:col] + " " * (end - col) + lines[row - 1][end:]
    return "".join(lines)


def findings(text: str, name: str = "<src>") -> list[str]:
    """Every forbidden construct in one module's source: grep plus an AST walk (which also
    sees aliases such as ``from pickle import loads as l`` and ``yaml.load`` via imports)."""
    found = []
    code = strip_comments(text)
    for pattern, label in FORBIDDEN_TEXT.items():
        for m in re.finditer(pattern, code):
            found.append(f"{name}:{code.count(chr(10), 0, m.start()) + 1}: {label}")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            bad = [a.name for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            bad = [module] if module.split(".")[0] in UNSAFE_MODULES or module.endswith("pickler") else []
            bad += [a.name for a in node.names if a.name in UNSAFE_CALLS or a.name in ("Unpickler", "loads", "load")]
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
            bad = []
            if isinstance(func, ast.Name) and called in UNSAFE_CALLS:
                bad.append(called)
            if called in ("load", "loads", "load_all", "unsafe_load", "full_load") and re.search(
                r"pickle|pickler|dill|marshal|shelve|yaml", owner, re.I
            ):
                bad.append(f"{owner}.{called}")
            if any(k.arg == "shell" and getattr(k.value, "value", None) is True for k in node.keywords):
                bad.append("shell=True")
        else:
            continue
        found += [f"{name}:{node.lineno}: {b}" for b in bad]
    return found


def test_the_detector_finds_what_it_looks_for():
    snippet = (
        "import pickle\nfrom dill import loads as l\nimport yaml\nfrom apache_beam.internal import pickler\n"
        "x = eval(s)\nexec(s)\npickle.loads(b)\nyaml.load(t)\npickler.loads(b)\nsubprocess.run(c, shell=True)\n"
        "os.system(c)\n__import__(n)\nfrom pickle import Unpickler\n"
    )
    labels = " ".join(findings(snippet))
    needles = ("pickle", "dill", "pickler", "eval", "exec", "yaml.load", "shell=True", "os.system", "__import__")
    for needle in (*needles, "Unpickler"):
        assert needle in labels, needle
    safe = (
        "from apache_beam.coders import PickleCoder\nimport re\nre.compile(p)\nast.literal_eval(s)\n"
        "orjson.loads(b)\nyaml.safe_load(t)\nexecutor(1)\n"
    )
    assert findings(safe) == []


def test_no_eval_exec_pickle_or_yaml_load_in_the_pipeline_code():
    found = []
    for path in source_files():
        found += findings(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert found == []


# --- dead_letter.raw is capped ---------------------------------------------------------------------

FIVE_MB = 5 * 1024 * 1024


@pytest.mark.parametrize(
    ("raw", "max_bytes", "code"),
    [
        (b'{"type": "' + b"x" * FIVE_MB + b'"}', MAX_EVENT_BYTES, "oversized"),
        (b'{"type": "' + b"x" * FIVE_MB, 8 * FIVE_MB, "invalid_json"),
        (b"\xff" * FIVE_MB, 8 * FIVE_MB, "invalid_encoding"),
        ("é".encode() * (FIVE_MB // 2), 8 * FIVE_MB, "invalid_json"),
    ],
    ids=["oversized", "invalid_json", "invalid_encoding", "multibyte"],
)
def test_a_5mb_line_keeps_a_capped_raw_and_its_true_size(raw, max_bytes, code):
    out = parse_line(raw, "big.jsonl:1", max_bytes=max_bytes)
    assert isinstance(out, DeadLetter) and out.error_code == code
    assert len(out.raw) <= RAW_CAP_CHARS and out.raw_truncated
    assert out.raw_bytes == len(raw)
    assert raw.decode("utf-8", errors="replace").startswith(out.raw)


# --- ids never become paths ------------------------------------------------------------------------

SECRET = "SECRET-5f0c2e9a-do-not-log"


def hostile_ids(tmp_path: Path) -> list[str]:
    return [
        "../../etc/x",
        "../../../../../../../../tmp/vccflow-escape-x",
        "/abs/path",
        str(tmp_path / "escaped-absolute"),  # an absolute path inside tmp_path, outside out/
        "../escaped-relative",
        "event_date=1999-01-01/..",
        "event_date=1999-01-01/../../../x",
        "..",
        ".",
        "..\\..\\windows\\system32",
        "C:\\temp\\x",
        "gs://other-bucket/x",
        "file:///etc/passwd",
        "%2e%2e%2fetc%2fx",
        "~/x",
        "channel_sessions",
        "_run_report.json",
        ".staging-x",
        "x\x00y",
        "line\nbreak",
        "part-s00000.parquet",
    ]


def hostile_input(tmp_path: Path) -> tuple[list[bytes], list[str], list[str]]:
    ids = hostile_ids(tmp_path)
    lines = []
    day_t = DAY0_US + 9 * 3600 * 1_000_000
    agents = ids[:8]
    for i, cid in enumerate(ids):
        agent = agents[(i // 2) % len(agents)]
        party = {"role": "agent", "agentId": agent, "userId": ids[-1 - i]} if i % 2 else {"role": cid}
        t = day_t + i * 60_000_000
        for j, (kind, dt) in enumerate([("alerted", 0), ("connected", 5), ("disconnected", 65), ("ended", 65)]):
            ts = t + dt * 1_000_000
            lines.append(channel_note(kind, ts, ts_text(ts, 3, 0), cid, f"{cid}#{j}", party, cid, "v1").raw)
    for i, agent in enumerate(agents):
        for j, ptype in enumerate(("ready", "loggedOut")):
            ts = day_t - 3600_000_000 + j * 3 * 3600_000_000 + i
            lines.append(presence_note(ts, ts_text(ts, 6, 0), agent, agent, f"{agent}@{j}", ptype, agent, agent).raw)
    # Dead letters carrying hostile type/id, and secrets in a valid and in a rejected input.
    for cid in ids[:5]:
        lines.append(orjson.dumps({"type": cid, "id": cid, "source": "/channel", "data": {}}))
    secret_event = orjson.loads(lines[0])
    secret_event["id"] = "with-secret"
    secret_event["data"]["signature"] = f"Bearer {SECRET}"
    lines.append(orjson.dumps(secret_event))
    lines.append(f"Vonage-Signature: Bearer {SECRET}".encode())
    lines.append(b'{"type": "channel.held.v1", "pad": "' + b"x" * FIVE_MB + b'"}')  # 5 MB, oversized
    return lines, ids, agents


def tree(root: Path) -> set[str]:
    out = set()
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            out.add(os.path.relpath(os.path.join(folder, name), root))
    return out


PARTITION = re.compile(r"event_date=\d{4}-\d{2}-\d{2}")


def test_ids_in_inputs_never_steer_where_files_are_written(tmp_path, capsys, caplog):
    from pipelines.batch import run

    lines, ids, agents = hostile_input(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "hostile.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    outside = ["/abs/path", "/tmp/vccflow-escape-x", "/etc/x", str(tmp_path.parent / "escaped-relative")]
    existed = {p for p in outside if os.path.lexists(p)}
    before = tree(tmp_path)
    siblings = set(os.listdir(tmp_path.parent))

    caplog.set_level(logging.DEBUG, logger="pipelines")
    caplog.set_level(logging.DEBUG, logger="transforms")
    out = tmp_path / "out"
    assert run(["--input", str(tmp_path / "in" / "*.jsonl"), "--output", str(out), "--shards", "2"]) == 0

    # Every new file or folder lies under out/, nothing else changed, nothing escaped.
    after = tree(tmp_path)
    assert before <= after
    assert sorted(p for p in after - before if not p.startswith("out" + os.sep) and p != "out") == []
    assert set(os.listdir(tmp_path.parent)) == siblings
    assert {p for p in outside if os.path.lexists(p)} == existed
    # out/ holds only the tables' partition folders, the report and the validation results.
    for rel in tree(out):
        parts = Path(rel).parts
        if parts[0] in ("_run_report.json", "_validation"):
            continue
        assert parts[0] in TABLES, rel
        if len(parts) >= 2:
            assert PARTITION.fullmatch(parts[1]), rel
        if len(parts) >= 3:
            assert len(parts) == 3 and re.fullmatch(r"part-[\w-]+\.parquet", parts[2]), rel
    for table in ("channel_sessions", "channel_segments", "agent_presence", "agent_sessions"):
        assert sorted(os.listdir(out / table)) == ["event_date=2024-03-04"], table

    # The rows keep the ids verbatim.
    sessions = pd.read_parquet(out / "channel_sessions")
    assert set(sessions["channel_id"]) == set(ids)
    assert set(sessions["interaction_id"]) == set(ids)
    assert set(sessions["agent_id"].dropna()) == set(agents)
    assert set(pd.read_parquet(out / "channel_segments")["channel_id"]) == set(ids)
    assert set(pd.read_parquet(out / "agent_presence")["agent_id"]) == set(agents)
    assert set(pd.read_parquet(out / "agent_sessions")["agent_id"]) == set(agents)
    dead = pd.read_parquet(out / "dead_letter")
    assert set(ids[:5]) <= set(dead["event_id"].dropna())
    big = dead[dead["error_code"] == "oversized"]
    assert len(big) == 1 and big["raw_bytes"].iloc[0] == len(lines[-1]) and big["raw_truncated"].iloc[0]
    assert (dead["raw"].str.len() <= RAW_CAP_CHARS).all()

    # The secret is in the data (kept in dead_letter.raw by design), never in logs or on screen.
    assert dead["raw"].str.contains(SECRET, regex=False).any()
    printed = capsys.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in printed.out + printed.err + logged

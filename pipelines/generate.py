"""``vccflow generate``: synthetic VCC webhook traffic, with what a correct pipeline must output
known by construction.

:func:`generate` simulates one contact center (:mod:`pipelines.synthetic.scenarios`): agents
working shifts (login, breaks, lunch, logout; one agent's data starts mid-session, one logs out
twice at lunch, the two night agents are still logged in when the data ends, one more agent
has no presence data at all), every kind of contact the interactions table tells apart
(:mod:`pipelines.synthetic.contacts`: answered, abandoned at each stage, rejected offers,
blind and warm transfers, consults, conferences, transfer chains, outbound connected and
failed, internal calls) with holds, emails with parks and interruptions by calls, channels
cut off at the end of the data, a few out-of-place events; and delivers the notifications the way webhooks do
(:mod:`pipelines.synthetic.delivery`): exact duplicates, disorder, retries hours late,
garbage lines, unsupported types, blank lines. It returns the lines and ``truth``, the rows
the pipeline must produce, derived from the simulation's own plan
(:mod:`pipelines.synthetic.truth`, which also describes the format of ``truth.json``).
:func:`run` is ``vccflow generate``: it writes ``notifications-NNNNN.jsonl[.gz]`` and
``truth.json``. Same options, same bytes.
"""

from __future__ import annotations

import argparse
import gzip
import math
import re
from dataclasses import dataclass
from pathlib import Path

from pipelines.synthetic.config import MIN_AGENTS, MIN_INTERACTIONS, Config
from pipelines.synthetic.delivery import LATE_SHARE, SHUFFLE_WINDOW, deliver
from pipelines.synthetic.scenarios import PER_AGENT_DAY, Overflow, Simulation
from pipelines.synthetic.times import DEFAULT_START, MIN, parse_start
from pipelines.synthetic.truth import build_truth, dump_truth
from transforms.collector import paused_gc

__all__ = ["TRUTH_FILE", "Config", "Generated", "build_parser", "dump_truth", "generate", "run", "write_output"]

TRUTH_FILE = "truth.json"
FILE_PATTERN = re.compile(r"notifications-\d{5}\.jsonl(\.gz)?")


@dataclass
class Generated:
    """The generator's result: ``files`` maps each file name to its lines (no newline; a
    blank line is ``b""`` or whitespace) and ``truth`` is the expected output (format: see
    the module docstring)."""

    config: Config
    files: dict[str, list[bytes]]
    truth: dict

    def summary(self) -> str:
        """One line: lines, files, channels, agents."""
        c, d = self.truth["counts"], self.truth["data"]
        dead = sum(c["dead_letters"].values())
        return (
            f"vccflow generate: {c['lines']} lines ({c['valid']} valid, {c['duplicates']} duplicates, "
            f"{dead} dead letters, {c['blank']} blank) in {len(self.files)} file(s); {c['channels']} channels, "
            f"{d['interactions']} interactions, {len(d['agent_ids'])} agents "
            f"(+{len(d['agents_without_presence'])} without presence), {d['days']} day(s) to {d['end_of_data']}"
        )


def generate(config: Config) -> Generated:
    """Simulate, deliver and account; pure (no filesystem), deterministic for a config."""
    least = max(1, math.ceil(config.interactions / (config.agents * PER_AGENT_DAY)))
    with paused_gc():  # millions of long-lived objects, no cycles
        for days in range(least, 4 * least + 4):
            sim = Simulation(config, days)
            try:
                channels = sim.run()
                break
            except Overflow:
                continue
        else:  # a bug in the simulation, never the options: fail rather than loop forever
            raise RuntimeError(f"generate: {config} does not fit in {4 * least + 3} days")
        files, lines, dup_by_channel = deliver(sim, channels)
        return Generated(config, files, build_truth(sim, channels, lines, dup_by_channel))


def write_output(generated: Generated, output: str | Path) -> list[Path]:
    """Write the notification files and ``truth.json`` into ``output`` (created if needed);
    earlier ``notifications-NNNNN.jsonl[.gz]`` files there are removed first. Returns the
    paths written. gzip output is byte-stable (no name, mtime 0)."""
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.iterdir():
        if FILE_PATTERN.fullmatch(stale.name) and stale.is_file():
            stale.unlink()
    written = []
    for name, lines in generated.files.items():
        payload = b"".join(line + b"\n" for line in lines)
        path = out / name
        if generated.config.gzip:
            with (
                open(path, "wb") as f,
                gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0, compresslevel=6) as gz,
            ):
                gz.write(payload)
        else:
            path.write_bytes(payload)
        written.append(path)
    truth = out / TRUTH_FILE
    with open(truth, "wb") as f:
        dump_truth(generated.truth, f)
    return [*written, truth]


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text}")
    return value


def _at_least(low: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text}")
        return value

    return parse


def _start(text: str) -> str:
    try:
        parse_start(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vccflow generate",
        description="Write realistic synthetic VCC webhook notifications (notifications-NNNNN.jsonl[.gz]) and\n"
        "truth.json, the rows a correct pipeline must produce from them, known by construction.\n"
        "Same options, same bytes.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  vccflow generate --output /tmp/vcc
  vccflow generate --output samples/vcc-demo --agents 6 --interactions 60 --seed 7 --shuffle --files 2
  vccflow generate --output /tmp/big --agents 200 --interactions 100000 --files 16 --gzip --shuffle
  vccflow generate --output /tmp/clean --duplicates 0 --malformed 0 --start 2024-06-30T12:00:00Z
""",
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write into (created if needed)")
    parser.add_argument(
        "--agents",
        type=_at_least(MIN_AGENTS),
        default=8,
        metavar="N",
        help=f"agents with presence data (>= {MIN_AGENTS}; one more agent without any is added; default 8)",
    )
    parser.add_argument(
        "--interactions",
        type=_at_least(MIN_INTERACTIONS),
        default=200,
        metavar="N",
        help=f"interactions (calls, emails; >= {MIN_INTERACTIONS}, every contact kind at least once); more than "
        f"{PER_AGENT_DAY} per agent spread over more days (default 200)",
    )
    parser.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    parser.add_argument(
        "--duplicates",
        type=_fraction,
        default=0.03,
        metavar="R",
        help="share of valid notifications delivered a second time, byte for byte (default 0.03)",
    )
    parser.add_argument(
        "--malformed",
        type=_fraction,
        default=0.01,
        metavar="R",
        help="extra dead-letter lines as a share of the valid notifications, at least one of each kind when "
        "above 0 (invalid JSON or UTF-8, not an object, missing or invalid fields, bad timestamps, "
        "unsupported types); blank lines come with them (default 0.01)",
    )
    parser.add_argument(
        "--shuffle",
        action="store_true",
        help=f"deliver out of order: each notification up to {SHUFFLE_WINDOW // MIN} minutes late, "
        f"{LATE_SHARE * 100:.1f}%% of them (at least one) 1 to 23 hours late (default: event-time order)",
    )
    parser.add_argument(
        "--files",
        type=_at_least(1),
        default=1,
        metavar="N",
        help="split the lines, in delivery order, into N files (default 1)",
    )
    parser.add_argument("--gzip", action="store_true", help="write .jsonl.gz files instead of .jsonl")
    parser.add_argument(
        "--start",
        type=_start,
        default=DEFAULT_START,
        metavar="ISO",
        help=f"when the first shift starts; the night shift always crosses a UTC midnight (default {DEFAULT_START})",
    )
    return parser


def run(argv: list[str] | None = None) -> int:
    """``vccflow generate``: generate, write, print a one-line summary; returns 0."""
    args = build_parser().parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k != "output"}
    generated = generate(Config(**options))
    write_output(generated, args.output)
    print(f"{generated.summary()} -> {args.output}")
    return 0

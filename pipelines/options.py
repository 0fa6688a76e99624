"""Command-line options shared by ``vccflow batch`` and ``vccflow stream``."""

from __future__ import annotations

import argparse

from transforms.intervals import DEFAULT_INTERVAL_MINUTES, DEFAULT_SHORT_ABANDON_SECONDS, INTERVAL_MINUTES


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (anything else is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text}")
    return value


def interval_minutes(text: str) -> int:
    """An argparse type: one of :data:`~transforms.intervals.INTERVAL_MINUTES`."""
    allowed = ", ".join(map(str, INTERVAL_MINUTES))
    try:
        value = int(text)
    except ValueError:
        value = None
    if value not in INTERVAL_MINUTES:
        raise argparse.ArgumentTypeError(f"expected one of {allowed} (minutes), got {text!r}")
    return value


def add_interval_options(parser: argparse.ArgumentParser, underscore_aliases: bool = False) -> None:
    """``--interval-minutes`` and ``--short-abandon-seconds`` (with ``--interval_minutes``-style
    aliases for Flex Template parameters when ``underscore_aliases``)."""

    def names(option: str) -> list[str]:
        return [option, "--" + option[2:].replace("-", "_")] if underscore_aliases else [option]

    parser.add_argument(
        *names("--interval-minutes"),
        dest="interval_minutes",
        type=interval_minutes,
        default=DEFAULT_INTERVAL_MINUTES,
        metavar="N",
        help="grid of agent_intervals and service_intervals, in minutes aligned on UTC: "
        f"{', '.join(map(str, INTERVAL_MINUTES))} (default {DEFAULT_INTERVAL_MINUTES})",
    )
    parser.add_argument(
        *names("--short-abandon-seconds"),
        dest="short_abandon_seconds",
        type=positive_int,
        default=DEFAULT_SHORT_ABANDON_SECONDS,
        metavar="N",
        help="an inbound contact abandoned in under N seconds is a short abandon (service_intervals."
        f"short_abandoned), default {DEFAULT_SHORT_ABANDON_SECONDS}",
    )

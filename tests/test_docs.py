"""The README's column reference is the one generated from the schemas."""

from pathlib import Path

from schemas.docs import block
from schemas.outputs import TABLES

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_columns_match_schemas():
    assert block() in README.read_text(encoding="utf-8"), "run: python -m schemas.docs --write README.md"


def test_readme_opens_with_the_two_commands():
    text = README.read_text(encoding="utf-8")
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split("#")[0].strip() for line in first_block] == ["make demo", "make test"]


def _interval_report_code() -> str:
    """The python blocks of the README's "Interval reports" section, in order."""
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Interval reports\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(block.split("```", 1)[0] for block in section.split("```python\n")[1:])


def test_readme_interval_report_expressions_give_the_numbers_across_a_dst_change(tmp_path, monkeypatch):
    """The README's pandas expressions, run as written on a small output: AHT, occupancy,
    the service-level variants and the local-time rollup over Europe/London's March change."""
    import datetime as dt

    import pandas as pd

    from transforms.parquet import write_rows

    def utc(text: str) -> int:
        return int(pd.Timestamp(text, tz="UTC").value // 1000)

    q = 900 * 10**6
    zero_agent = dict.fromkeys(TABLES["agent_intervals"].names[4:], 0)
    agent = [
        {**zero_agent, "agent_id": "a1", "user_id": "u1", "interval_start": utc(t), "interval_end": utc(t) + q, **v}
        for t, v in [
            ("2024-03-31T00:45", dict(logged_in_ms=900_000, ready_ms=900_000, busy_ms=600_000, idle_ms=300_000,
                                      talk_ms=600_000, hold_ms=100_000, wrap_ms=200_000, active_channel_ms=900_000,
                                      max_concurrency=2, handled=2, handle_ms_of_handled=1_200_000)),
            ("2024-03-31T01:00", dict(logged_in_ms=900_000, ready_ms=900_000, busy_ms=300_000, idle_ms=600_000,
                                      talk_ms=200_000, wrap_ms=100_000, active_channel_ms=300_000, max_concurrency=1,
                                      handled=1, handle_ms_of_handled=300_000)),
        ]
    ]  # fmt: skip
    zero_service = dict.fromkeys(TABLES["service_intervals"].names[2:], 0)
    service = [
        {**zero_service, "interval_start": utc(t), "interval_end": utc(t) + q, **v}
        for t, v in [
            ("2024-03-30T23:45", dict(inbound=4, answered=4, answered_within_20s=4)),  # local 23:45 GMT, Mar 30
            ("2024-03-31T00:15", dict(inbound=10, answered=8, abandoned=2, short_abandoned=1, answered_within_20s=6,
                                      abandoned_within_20s=2, sum_time_to_answer_ms=160_000,
                                      max_time_to_answer_ms=60_000, sum_abandon_ms=9_000)),
            ("2024-03-31T01:00", dict(inbound=6, answered=5, abandoned=1, answered_within_20s=3,
                                      sum_time_to_answer_ms=150_000, max_time_to_answer_ms=90_000,
                                      sum_abandon_ms=40_000)),  # local 02:00 BST
            ("2024-03-31T22:45", dict(inbound=2, answered=2, answered_within_20s=2, sum_time_to_answer_ms=10_000,
                                      max_time_to_answer_ms=6_000)),  # local 23:45 BST, still Mar 31
            ("2024-03-31T23:00", dict(inbound=1, answered=1, answered_within_20s=1)),  # local 00:00 BST, Apr 1
        ]
    ]  # fmt: skip
    write_rows(str(tmp_path / "out"), "agent_intervals", "t", agent)
    write_rows(str(tmp_path / "out"), "service_intervals", "t", service)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(_interval_report_code(), "README.md", "exec"), ns)

    assert (ns["aht_end_s"]["a1"], ns["aht_split_s"]["a1"]) == (500.0, 400.0)
    assert ns["occupancy_connect"]["a1"] == 0.5
    assert abs(ns["occupancy_concurrency"]["a1"] - 1 / 3) < 1e-12
    assert abs(ns["average_concurrency"]["a1"] - 4 / 3) < 1e-12
    daily, daily_sl = ns["daily"], ns["daily_sl"]
    march_31 = dt.date(2024, 3, 31)
    assert list(daily.index) == [dt.date(2024, 3, 30), march_31, dt.date(2024, 4, 1)]
    assert list(daily["inbound"]) == [4, 18, 1] and daily.loc[march_31, "max_time_to_answer_ms"] == 90_000
    sl = daily_sl.loc[march_31]
    assert (sl["sl"], sl["sl_without_short_abandons"], sl["sl_abandons_within_met"]) == (11 / 18, 11 / 17, 13 / 18)
    assert (sl["asa_s"], sl["abandon_rate"]) == (320 / 15, 3 / 18)
    hours = [str(h) for h in ns["hourly"].index]
    assert hours == [
        "2024-03-30 23:00:00+00:00",
        "2024-03-31 00:00:00+00:00",  # then no 01:00 local: the clocks jump to 02:00 BST
        "2024-03-31 02:00:00+01:00",
        "2024-03-31 23:00:00+01:00",
        "2024-04-01 00:00:00+01:00",
    ]
    assert list(ns["hourly_sl"]["sl"].round(4)) == [1.0, 0.6, round(3 / 6, 4), 1.0, 1.0]

"""The streaming stages' state coders: what a bag of events holds is the event itself."""

from __future__ import annotations

from apache_beam.coders import PickleCoder

from tests.test_streaming import T0
from transforms.events import Event, parse_line
from transforms.streaming import EventCoder

CHANNEL = (
    b'{"specversion":"1.0","type":"channel.held.v1","id":"ev-1","source":"/channel","subject":"ch1",'
    b'"time":"2024-03-04T08:00:01.000Z","data":{"timestamp":"2024-03-04T08:00:01.250Z","channel":'
    b'{"conversationId":"conv1","interactionId":"int1","channelId":"ch1","party":{"role":"agent",'
    b'"agentId":"7205","userId":"u1"}},"reason":"hold"}}'
)


def test_an_event_round_trips_smaller_than_its_pickle():
    ev = parse_line(CHANNEL, "stream")
    presence = Event("/agent", "ev-2", "agent.presencechanged", T0, "7205", agent_id="7205", presence_type="Ready")
    coder = EventCoder()
    for event in (ev, presence):
        data = coder.encode(event)
        back = coder.decode(data)
        assert back == event and type(back) is Event
        assert len(data) < len(PickleCoder().encode(event))
    assert ev.ts == T0 + 1_250_000 and ev.agent_id == "7205" and ev.type == "channel.held"
    assert coder.is_deterministic()

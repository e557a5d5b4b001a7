"""The console protocol as a pure state machine: decisions without sockets, database or event loop."""

import copy
import json

from console import protocol
from console.hub import GroupHub
from console.metrics import METRICS


def session(**kwargs) -> protocol.ConsoleSession:
    clock = kwargs.pop("clock", lambda: 0.0)
    return protocol.ConsoleSession(
        role="dispatcher",
        replay_limit=kwargs.pop("replay_limit", 10),
        metrics=dict.fromkeys(METRICS, 0),
        clock=clock,
        **kwargs,
    )


def envelope(seq: int, stream: str = "console", **payload) -> dict:
    return {
        "type": "incident.updated",
        "id": str(seq),
        "stream": stream,
        "seq": seq,
        "time": None,
        "payload": payload,
    }


def sent(actions) -> list[dict]:
    return [json.loads(a.text) for a in actions if isinstance(a, protocol.Send)]


def test_subscribe_requests_are_validated_per_stream():
    s = session()
    actions = s.client_message({"type": "subscribe", "streams": {"console": 3, "nope": None, "avl": -1}})
    assert actions[0] == protocol.Subscribe("console", 3)
    assert [f["code"] for f in sent(actions)] == ["stream_forbidden", "stream_forbidden"]
    assert sent(s.client_message("not an object"))[0]["code"] == "bad_message"
    assert (
        sent(s.client_message({"type": "resume", "stream": "console", "seq": 1}))[0]["code"] == "bad_resume"
    )


def test_live_events_in_order_duplicates_dropped_and_out_of_order_reordered():
    s = session()
    s.hello("console", 5)
    assert [f["seq"] for f in sent(s.live(envelope(6), None))] == [6]
    assert s.live(envelope(6), None) == [] and s.metrics["duplicates_dropped"] == 1
    assert s.live(envelope(8), None) == [protocol.ArmGapTimer("console", s.reorder_wait_s)]
    actions = s.live(envelope(7), None)
    assert [f["seq"] for f in sent(actions)] == [7, 8]
    assert protocol.CancelGapTimer("console") in actions


def test_a_gap_still_open_after_the_wait_is_filled_from_the_table_silently():
    s = session()
    s.hello("console", 1)
    s.live(envelope(4), None)
    replay = s.gap_due("console")
    assert replay == [protocol.Replay("console", 1, "gap")]
    s.hold()
    s.live(envelope(5), None)  # arrives while the table is read: waits
    actions = s.replay_rows(replay[0], [envelope(2), envelope(3), envelope(4)], current=4)
    actions += s.release()
    assert [f["seq"] for f in sent(actions)] == [2, 3, 4, 5]


def test_too_far_behind_resyncs_at_the_current_seq():
    s = session(replay_limit=2)
    replay = s.start_at("console", 0)
    frames = sent(s.replay_rows(replay, [envelope(1), envelope(2), envelope(3)], current=40))
    assert frames[0] == {"type": "resync", "stream": "console", "seq": 40}
    assert s.last_sent["console"] == 40


def test_avl_batches_within_the_interval_coalesce_to_the_newest_position_per_unit():
    now = [100.0]
    s = session(clock=lambda: now[0])
    s.hello("avl", 0)
    first = s.live(envelope(1, "avl", positions=[[7, 1.0, 1.0, "a"]]), None)
    assert [f["seq"] for f in sent(first)] == [1]  # the first flush is immediate
    assert s.live(envelope(2, "avl", positions=[[7, 2.0, 2.0, "b"]]), None) == [protocol.ArmAvlFlush(1.0)]
    assert s.live(envelope(3, "avl", positions=[[7, 3.0, 3.0, "c"]]), None) == []
    now[0] += 1.0
    (frame,) = sent(s.avl_flush_due())
    assert (frame["first_seq"], frame["seq"], frame["payload"]["positions"]) == (2, 3, [[7, 3.0, 3.0, "c"]])


def test_a_replay_that_starts_after_pruned_events_resyncs():
    s = session()
    replay = s.start_at("console", 3)
    frames = sent(s.replay_rows(replay, [envelope(9), envelope(10)], current=10))  # 4..8 were pruned
    assert frames[0] == {"type": "resync", "stream": "console", "seq": 10}


def test_consoles_flushing_the_same_live_positions_share_one_encoding():
    """The hub hands its consoles the same decoded events: consoles that coalesced the same ones share one
    JSON encoding of the flush; a console whose positions are other objects with equal values (as rows read
    from the table) gets its own encoding of the same message."""
    hub = GroupHub(layer=None)
    live = [
        envelope(seq, "avl", positions=[[seq, 1.0 * seq, 2.0, "t"], [50, 3.0, float(seq), "t"]])
        for seq in (1, 2)
    ]
    texts = []
    for events in (live, live, copy.deepcopy(live)):
        console = session(encode_coalesced=hub.encode_coalesced)
        console.hello("avl", 0)
        (first,) = console.live(events[0], None)  # the first flush is immediate
        assert console.live(events[1], None) == [protocol.ArmAvlFlush(1.0)]
        (second,) = console.avl_flush_due()
        texts.append((first.text, second.text))
    assert texts[0][0] is texts[1][0] and texts[0][1] is texts[1][1]  # encoded once for both
    assert texts[2] == texts[0] and texts[2][1] is not texts[0][1]
    frame = json.loads(texts[0][1])
    assert (frame["first_seq"], frame["seq"]) == (2, 2)
    assert frame["payload"]["positions"] == [[2, 2.0, 2.0, "t"], [50, 3.0, 2.0, "t"]]

"""The console websocket: who may connect, replay then live without loss or duplicates, resume, resync,
AVL coalescing. Every scenario runs on the in-memory layer and, when a Redis URL is set, on Redis."""

import asyncio
import contextlib
import time

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.db.models import F
from django.test import Client
from django.utils import timezone

from accounts.models import Role
from cad.events import broadcast, record_event, record_events, stream_group
from cad.models import Event, EventStream
from console.consumers import ConsoleConsumer
from console.hub import SESSIONS_GROUP, GroupHub, group_hub, stop
from console.metrics import METRICS
from tests.factories import CenterFactory, UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("layer_backend")]


def run(coro_fn):
    """Run an async scenario on one loop; ORM calls inside run on this (the test's) thread. The tasks it
    leaves (hub pumps and heartbeats) are stopped before the loop closes: asyncio.run cancels them once and
    waits forever, so one that swallowed its cancel would hang the suite instead of failing a test."""

    async def scenario_then_stop_what_it_left():
        try:
            return await coro_fn()
        finally:
            left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in left:
                stop(task)
            if left:
                _, running = await asyncio.wait(left, timeout=10)
                assert not running, f"tasks that would not stop: {running}"

    return async_to_sync(scenario_then_stop_what_it_left)()


def _app_as(user):
    """The consumer with scope["user"] set, as AuthMiddlewareStack would after resolving the session."""
    inner = ConsoleConsumer.as_asgi()

    async def app(scope, receive, send):
        return await inner({**scope, "user": user}, receive, send)

    return app


async def _flush_layer():
    from channels.layers import get_channel_layer

    await get_channel_layer().flush()


@database_sync_to_async
def emit(center_id: int, n: int = 1, *, stream: str = "console", type: str = "incident.updated") -> list[int]:
    """Commit n events through the real publisher (each its own transaction)."""
    seqs = []
    for i in range(n):
        with transaction.atomic():
            seqs.append(record_event(type=type, center_id=center_id, stream=stream, payload={"i": i}).seq)
    return seqs


@database_sync_to_async
def emit_envelopes(center_id: int, n: int) -> list[dict]:
    envelopes = []
    for i in range(n):
        with transaction.atomic():
            envelopes.append(
                record_event(type="incident.updated", center_id=center_id, payload={"i": i}).envelope()
            )
    return envelopes


@database_sync_to_async
def emit_positions(center_id: int, positions: list[list]) -> int:
    with transaction.atomic():
        return record_event(
            type="units.positions", center_id=center_id, stream="avl", payload={"positions": positions}
        ).seq


@database_sync_to_async
def emit_lost(center_id: int) -> dict:
    """An event committed whose broadcast never arrives (an overloaded or restarted layer dropped it)."""
    with transaction.atomic():
        EventStream.objects.filter(center_id=center_id, name="console").update(last_seq=F("last_seq") + 1)
        seq = EventStream.objects.get(center_id=center_id, name="console").last_seq
        event = Event.objects.create(
            center_id=center_id,
            stream="console",
            seq=seq,
            type="incident.updated",
            payload={"lost": True},
            created_at=timezone.now(),
        )
    return event.envelope()


async def _connect(user, *, subscribe: dict | None = None):
    communicator = WebsocketCommunicator(_app_as(user), "/ws/console/")
    connected, code = await communicator.connect()
    assert connected, code
    if subscribe is not None:
        await communicator.send_json_to({"type": "subscribe", "streams": subscribe})
    return communicator


async def _receive_all(communicator, *, timeout: float = 0.4) -> list[dict]:
    """Everything that arrives until the socket has been quiet for `timeout` seconds."""
    messages = []
    while not await communicator.receive_nothing(timeout=timeout, interval=0.02):
        messages.append(await communicator.receive_json_from())
    return messages


async def _receive_for(communicator, seconds: float) -> list[dict]:
    """Everything that arrives within `seconds` (heartbeats never let the socket go quiet)."""
    messages = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if not await communicator.receive_nothing(timeout=min(left, 0.05), interval=0.01):
            messages.append(await communicator.receive_json_from())
    return messages


@pytest.fixture
def center():
    return CenterFactory()


@pytest.fixture
def dispatcher(center):
    return UserFactory(username="despacho", role=Role.DISPATCHER, center=center)


# --- Who may connect ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kind", ["anonymous", "device", "peer", "no_centre", "inactive"], ids=lambda k: f"refused-{k}"
)
def test_refused_before_accept_with_4403(kind, center):
    from django.contrib.auth.models import AnonymousUser

    user = {
        "anonymous": lambda: AnonymousUser(),
        "device": lambda: UserFactory(username="avl", role=Role.DEVICE, center=center),
        "peer": lambda: UserFactory(username="cdmx", role=Role.PEER, center=center),
        "no_centre": lambda: UserFactory(username="nadie", role=Role.DISPATCHER, center=None),
        "inactive": lambda: UserFactory(
            username="baja", role=Role.DISPATCHER, center=center, is_active=False
        ),
    }[kind]()
    refused_before = METRICS["connections_refused"]

    async def scenario():
        communicator = WebsocketCommunicator(_app_as(user), "/ws/console/")
        connected, code = await communicator.connect()
        await communicator.disconnect()
        return connected, code

    assert run(scenario) == (False, 4403)
    assert METRICS["connections_refused"] == refused_before + 1


def test_dispatcher_with_a_session_cookie_is_accepted_through_the_asgi_stack(dispatcher):
    from cad.asgi import application

    client = Client()
    client.force_login(dispatcher)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def scenario():
        communicator = WebsocketCommunicator(
            application,
            "/ws/console/",
            headers=[(b"cookie", cookie), (b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")],
        )
        connected, _ = await communicator.connect()
        await communicator.send_json_to({"type": "subscribe", "streams": {"console": None}})
        hello = await communicator.receive_json_from()
        await communicator.disconnect()
        return connected, hello

    connected, hello = run(scenario)
    assert connected
    assert hello == {"type": "hello", "stream": "console", "seq": 0}


def test_the_websocket_stack_resolves_the_user_and_leaves_the_servers_send_unwrapped(dispatcher):
    """Every frame a console sends goes straight to the server: nothing inspects the session per frame."""
    from cad.websocket import websocket_auth

    client = Client()
    client.force_login(dispatcher)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    seen = {}

    async def console(scope, receive, send):
        seen.update(send=send, user_id=scope["user"].pk, session_key=scope["session"].session_key)

    async def server_send(message):
        pass

    scope = {"type": "websocket", "path": "/ws/console/", "headers": [(b"cookie", cookie)]}
    run(lambda: websocket_auth(console)(scope, None, server_send))
    assert seen == {
        "send": server_send,
        "user_id": dispatcher.pk,
        "session_key": client.cookies["sessionid"].value,
    }


def test_anonymous_through_the_asgi_stack_is_refused():
    from cad.asgi import application

    async def scenario():
        communicator = WebsocketCommunicator(
            application, "/ws/console/", headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
        )
        return await communicator.connect()

    assert run(scenario) == (False, 4403)


# --- Replay, live, resume, resync ---------------------------------------------------------------
def test_null_seq_answers_hello_with_the_current_seq_then_forwards_live(dispatcher, center):
    async def scenario():
        await _flush_layer()
        await emit(center.id, 3)
        ws = await _connect(dispatcher, subscribe={"console": None})
        hello = await ws.receive_json_from()
        await emit(center.id, 1, type="incident.created")
        live = await ws.receive_json_from()
        await ws.disconnect()
        return hello, live

    hello, live = run(scenario)
    assert hello == {"type": "hello", "stream": "console", "seq": 3}
    assert (live["type"], live["seq"], live["stream"]) == ("incident.created", 4, "console")


def test_events_recorded_together_travel_as_one_message_and_arrive_one_by_one_in_order(dispatcher, center):
    """cad.events.record_events (e.g. an LPR batch's hits) writes them together; the broadcaster coalesces
    their group messages and the hub hands each envelope to the console as a live event, in seq order."""

    @database_sync_to_async
    def emit_together():
        with transaction.atomic():
            return [
                e.seq
                for e in record_events(
                    type="lpr.hit", center_id=center.id, payloads=[{"plate": f"P{i}"} for i in range(5)]
                )
            ]

    async def scenario():
        await _flush_layer()
        await emit(center.id, 1)
        ws = await _connect(dispatcher, subscribe={"console": None})
        hello = await ws.receive_json_from()
        seqs = await emit_together()
        live = await _receive_all(ws)
        await ws.disconnect()
        return hello, seqs, live

    hello, seqs, live = run(scenario)
    assert hello["seq"] == 1 and seqs == [2, 3, 4, 5, 6]
    assert [(m["type"], m["seq"], m["payload"]["plate"]) for m in live] == [
        ("lpr.hit", 2 + i, f"P{i}") for i in range(5)
    ]


def test_subscribe_with_seq_replays_missed_events_in_order_then_goes_live(dispatcher, center):
    async def scenario():
        await _flush_layer()
        await emit(center.id, 5)
        ws = await _connect(dispatcher, subscribe={"console": 2})
        replayed = [await ws.receive_json_from() for _ in range(4)]  # 3 events + info notice
        await emit(center.id, 2)
        live = await _receive_all(ws)
        await ws.disconnect()
        return replayed, live

    replayed, live = run(scenario)
    assert [m.get("seq") for m in replayed[:3]] == [3, 4, 5]
    assert [m["payload"]["i"] for m in replayed[:3]] == [2, 3, 4]
    assert replayed[3]["type"] == "notice" and replayed[3]["level"] == "info"
    assert [m["seq"] for m in live] == [6, 7]


def test_a_cancel_swallowed_while_handling_a_frame_still_ends_the_console(dispatcher, center, monkeypatch):
    """Python 3.11's asyncio.wait_for swallows a cancel that lands as its future completes, and redis-py sends
    every command through it. A consumer cancelled (its client gone) while it joined a group carried on,
    waited for a frame forever and stayed in the hub: the last CI run hung on such a consumer until its
    timeout. Here the join swallows the cancel the same way, on purpose."""
    joining = []
    real_join = GroupHub.join

    async def join_swallowing_a_cancel(self, group, consumer, **kwargs):
        if group != SESSIONS_GROUP:
            joining.append(group)
            with contextlib.suppress(asyncio.CancelledError):  # as 3.11's wait_for when its write completes
                await asyncio.sleep(5)
        return await real_join(self, group, consumer, **kwargs)

    monkeypatch.setattr(GroupHub, "join", join_swallowing_a_cancel)

    async def scenario():
        await _flush_layer()
        ws = await _connect(dispatcher, subscribe={"console": 0})
        while not joining:
            await asyncio.sleep(0.01)
        ws.future.cancel()
        ended, _ = await asyncio.wait([ws.future], timeout=3)
        if not ended:  # let the stuck consumer go, so that the test fails instead of hanging
            await ws.send_input({"type": "websocket.disconnect", "code": 1000})
            await asyncio.wait([ws.future], timeout=3)
        members = {
            group: len(consumers) for group, consumers in group_hub(get_channel_layer()).members.items()
        }
        return bool(ended), members

    ended, members = run(scenario)
    assert ended, "the cancelled consumer kept running"
    assert members == {}, "the cancelled consumer is still in the hub"


def test_the_hub_stops_a_pump_that_swallowed_its_cancel(center, monkeypatch):
    """A pump whose cancel was swallowed (see above) would poll Redis for a group nobody listens to, forever:
    leaving the group cancels it until it ends."""

    async def scenario():
        layer = get_channel_layer()
        hub = group_hub(layer)
        real_receive = layer.receive
        swallowed = []

        async def receive_swallowing_a_cancel(channel):
            if not swallowed:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    swallowed.append(channel)
            return await real_receive(channel)

        monkeypatch.setattr(layer, "receive", receive_swallowing_a_cancel)
        group = stream_group(center_id=center.id, stream="console")
        member = object()
        await hub.join(group, member)
        pump, ticker = hub.pumps[group], hub.ticker
        await asyncio.sleep(0.05)
        await hub.leave(group, member)
        await asyncio.wait([pump, ticker], timeout=3)
        return bool(swallowed), pump.done(), ticker.done()

    assert run(scenario) == (True, True, True)


def test_live_event_already_replayed_is_not_sent_twice(dispatcher, center):
    async def scenario():
        await _flush_layer()
        late = await emit_lost(center.id)  # committed; its broadcast is still in flight
        ws = await _connect(dispatcher, subscribe={"console": 0})
        replayed = await ws.receive_json_from()
        await ws.receive_json_from()  # notice
        await database_sync_to_async(broadcast)(center_id=center.id, stream="console", envelope=late)
        await emit(center.id, 1)
        after = await _receive_all(ws)
        await ws.disconnect()
        return replayed, after

    dropped_before = METRICS["duplicates_dropped"]
    replayed, after = run(scenario)
    assert replayed["seq"] == 1
    assert [m["seq"] for m in after] == [2]
    assert METRICS["duplicates_dropped"] == dropped_before + 1


def test_gap_is_filled_by_resume_in_order(dispatcher, center, monkeypatch):
    # The server would fill the gap by itself after `reorder_wait_s`; a client may ask first.
    monkeypatch.setattr(ConsoleConsumer, "reorder_wait_s", 30.0)

    async def scenario():
        await _flush_layer()
        ws = await _connect(dispatcher, subscribe={"console": None})
        await ws.receive_json_from()  # hello seq 0
        await emit(center.id, 1)  # seq 1, delivered
        first = await ws.receive_json_from()
        await emit_lost(center.id)  # seq 2, never broadcast
        await emit(center.id, 1)  # seq 3, held by the server behind the missing seq 2
        held = await _receive_all(ws)
        await ws.send_json_to({"type": "resume", "stream": "console", "seq": first["seq"]})
        resumed = await _receive_all(ws)
        await emit(center.id, 1)
        live = await _receive_all(ws)
        await ws.disconnect()
        return first, held, resumed, live

    resumes_before = METRICS["resumes"]
    first, held, resumed, live = run(scenario)
    assert first["seq"] == 1 and held == []
    assert [m["seq"] for m in resumed if "seq" in m and m["type"] != "notice"] == [2, 3]
    assert resumed[0]["payload"] == {"lost": True}
    notice = resumed[-1]
    assert (notice["type"], notice["level"], notice["code"]) == ("notice", "warning", "replayed")
    assert [m["seq"] for m in live] == [4]
    assert METRICS["resumes"] == resumes_before + 1


def test_lost_broadcast_is_filled_from_the_table_without_the_client_asking(dispatcher, center):
    async def scenario():
        await _flush_layer()
        ws = await _connect(dispatcher, subscribe={"console": None})
        await ws.receive_json_from()  # hello seq 0
        await emit(center.id, 1)  # seq 1
        await emit_lost(center.id)  # seq 2, never broadcast
        await emit(center.id, 1)  # seq 3
        received = await _receive_all(ws, timeout=1.0)
        await ws.disconnect()
        return received

    filled_before = METRICS["gaps_filled"]
    received = run(scenario)
    assert [m["seq"] for m in received] == [1, 2, 3]  # in order, once, no notice
    assert received[1]["payload"] == {"lost": True}
    assert METRICS["gaps_filled"] == filled_before + 1


def test_broadcasts_arriving_out_of_order_are_sent_in_order_without_a_replay(dispatcher, center):
    from channels.layers import get_channel_layer

    from cad.events import stream_group

    async def scenario():
        await _flush_layer()
        ws = await _connect(dispatcher, subscribe={"console": None})
        await ws.receive_json_from()  # hello seq 0
        second, third = await emit_lost(center.id), await emit_lost(center.id)  # seq 1, 2 committed
        group = stream_group(center_id=center.id, stream="console")
        for envelope in (third, second):  # two server processes: the later commit's broadcast wins the race
            await get_channel_layer().group_send(group, {"type": "cad.event", "envelope": envelope})
        received = await _receive_all(ws)
        await ws.disconnect()
        return received

    replays_before, filled_before = METRICS["replays"], METRICS["gaps_filled"]
    received = run(scenario)
    assert [m["seq"] for m in received] == [1, 2]
    assert (METRICS["replays"], METRICS["gaps_filled"]) == (replays_before, filled_before)


def test_too_far_behind_gets_resync_and_a_warning_then_live(dispatcher, center, settings):
    settings.CAD = {**settings.CAD, "REPLAY_LIMIT": 3}

    async def scenario():
        await _flush_layer()
        await emit(center.id, 5)
        ws = await _connect(dispatcher, subscribe={"console": 1})
        first = await _receive_all(ws)
        await emit(center.id, 1)
        live = await _receive_all(ws)
        await ws.disconnect()
        return first, live

    resyncs_before = METRICS["resyncs"]
    first, live = run(scenario)
    assert first[0] == {"type": "resync", "stream": "console", "seq": 5}
    assert (first[1]["type"], first[1]["level"], first[1]["code"]) == ("notice", "warning", "resync")
    assert len(first) == 2  # no partial replay
    assert [m["seq"] for m in live] == [6]
    assert METRICS["resyncs"] == resyncs_before + 1


def test_within_the_replay_limit_replays_instead_of_resync(dispatcher, center, settings):
    settings.CAD = {**settings.CAD, "REPLAY_LIMIT": 3}

    async def scenario():
        await _flush_layer()
        await emit(center.id, 5)
        ws = await _connect(dispatcher, subscribe={"console": 2})
        got = await _receive_all(ws)
        await ws.disconnect()
        return got

    got = run(scenario)
    assert [m["seq"] for m in got if m["type"] != "notice"] == [3, 4, 5]


def test_unknown_stream_and_bad_messages_are_answered_with_errors(dispatcher):
    async def scenario():
        ws = await _connect(dispatcher, subscribe={"secret": None})
        forbidden = await ws.receive_json_from()
        await ws.send_json_to({"type": "resume", "stream": "console", "seq": 1})  # not subscribed
        bad_resume = await ws.receive_json_from()
        await ws.send_json_to({"type": "nonsense"})
        bad = await ws.receive_json_from()
        await ws.disconnect()
        return forbidden, bad_resume, bad

    forbidden, bad_resume, bad = run(scenario)
    assert (forbidden["type"], forbidden["code"]) == ("error", "stream_forbidden")
    assert bad_resume["code"] == "bad_resume"
    assert bad["code"] == "bad_message"


def test_events_of_other_centres_are_not_received(dispatcher, center):
    other = CenterFactory(code="CMX", name="CDMX")

    async def scenario():
        await _flush_layer()
        ws = await _connect(dispatcher, subscribe={"console": None})
        await ws.receive_json_from()
        await emit(other.id, 2)
        got = await _receive_all(ws)
        await ws.disconnect()
        return got

    assert run(scenario) == []


# --- AVL coalescing -----------------------------------------------------------------------------
def test_avl_batches_within_a_second_arrive_as_one_message_with_the_newest_position_per_unit(
    dispatcher, center
):
    t = "2026-01-01T00:00:0{}+00:00"

    async def scenario():
        await _flush_layer()
        ws = await _connect(dispatcher, subscribe={"avl": None})
        hello = await ws.receive_json_from()
        first_seq = await emit_positions(center.id, [[1, 19.0, -99.0, t.format(0)]])
        first = await ws.receive_json_from()  # idle socket: flushed at once
        started = time.monotonic()
        for i in range(1, 5):
            await emit_positions(
                center.id, [[1, 19.0 + i, -99.0, t.format(i)], [i + 10, 20.0, -98.0, t.format(i)]]
            )
        coalesced = await ws.receive_json_from(timeout=2)
        waited = time.monotonic() - started
        rest = await _receive_all(ws, timeout=1.2)
        await ws.disconnect()
        return hello, first_seq, first, coalesced, waited, rest

    hello, first_seq, first, coalesced, waited, rest = run(scenario)
    assert hello == {"type": "hello", "stream": "avl", "seq": 0}
    assert (first["type"], first["seq"], first["first_seq"]) == ("units.positions", first_seq, first_seq)
    assert first["payload"]["positions"] == [[1, 19.0, -99.0, t.format(0)]]
    assert (coalesced["first_seq"], coalesced["seq"]) == (first_seq + 1, first_seq + 4)
    positions = {p[0]: p for p in coalesced["payload"]["positions"]}
    assert positions[1] == [1, 23.0, -99.0, t.format(4)]  # newest of unit 1 only
    assert sorted(positions) == [1, 11, 12, 13, 14]
    assert waited > 0.5  # held back until a second after the previous flush
    assert rest == []  # and only one message


def test_avl_reconnect_replays_coalesced(dispatcher, center):
    async def scenario():
        await _flush_layer()
        for i in range(3):
            await emit_positions(center.id, [[7, 19.0 + i, -99.0, f"2026-01-01T00:00:0{i}+00:00"]])
        ws = await _connect(dispatcher, subscribe={"avl": 0})
        got = await _receive_all(ws)
        await ws.disconnect()
        return got

    got = run(scenario)
    envelope = got[0]
    assert (envelope["type"], envelope["first_seq"], envelope["seq"]) == ("units.positions", 1, 3)
    assert envelope["payload"]["positions"] == [[7, 21.0, -99.0, "2026-01-01T00:00:02+00:00"]]


def test_consoles_of_one_process_share_one_group_membership(dispatcher, center, layer_backend):
    """N consoles in a process cost one channel-layer delivery per event (the hub fans out locally)."""
    from channels.layers import get_channel_layer

    from cad.events import stream_group

    async def scenario():
        await _flush_layer()
        sockets = [await _connect(dispatcher, subscribe={"console": None}) for _ in range(3)]
        for ws in sockets:
            await ws.receive_json_from()  # hello
        layer = get_channel_layer()
        group = stream_group(center_id=center.id, stream="console")
        hub = group_hub(layer)
        members = len(hub.members[group])
        if layer_backend == "memory":
            memberships = len(layer.groups.get(group, {}))
        else:
            memberships = await layer.connection(layer.consistent_hash(group)).zcard(layer._group_key(group))
        await emit(center.id, 2)
        got = [[m["seq"] for m in await _receive_all(ws)] for ws in sockets]
        for ws in sockets:
            await ws.disconnect()
        return members, memberships, got, group in hub.members

    members, memberships, got, still_member = run(scenario)
    assert (members, memberships) == (3, 1)
    assert got == [[1, 2]] * 3
    assert not still_member  # the last console to leave drops the membership


# --- Metrics endpoint ---------------------------------------------------------------------------
def test_realtime_metrics_are_for_supervisors(center, api_client_for):
    supervisor = UserFactory(username="sup", role=Role.SUPERVISOR, center=center)
    dispatcher = UserFactory(username="dis", role=Role.DISPATCHER, center=center)
    response = api_client_for(supervisor).get("/api/v1/realtime/metrics")
    assert response.status_code == 200
    assert {"replays", "resyncs", "resumes", "connections_open"} <= set(response.json())
    assert api_client_for(dispatcher).get("/api/v1/realtime/metrics").status_code == 403
    assert Client().get("/api/v1/realtime/metrics").status_code in (401, 403)


# --- Self-repair: bad frames, heartbeat, session end ---------------------------------------------
def test_bad_frames_get_an_error_frame_and_nothing_leaks(dispatcher):
    """Binary, non-JSON and 1,000-deep frames are answered with an error frame (the socket stays usable);
    a frame that makes the consumer raise closes the socket cleanly; `connections_open` stays true."""
    deep = "[" * 1000 + "]" * 1000
    open_before = METRICS["connections_open"]

    async def scenario():
        codes = []
        for _ in range(50):
            ws = await _connect(dispatcher)
            await ws.send_to(bytes_data=b"\x00\x01")
            await ws.send_to(text_data="{not json")
            await ws.send_to(text_data=deep)
            codes += [(await ws.receive_json_from())["code"] for _ in range(3)]
            await ws.send_json_to({"type": "ping", "t": 1})
            assert (await ws.receive_json_from())["type"] == "pong"
            await ws.disconnect()
        return codes

    codes = run(scenario)
    assert set(codes) == {"bad_frame", "bad_json"} and len(codes) == 150
    assert METRICS["connections_open"] == open_before


def test_a_frame_that_crashes_the_consumer_closes_it_cleanly_without_a_leak(dispatcher, monkeypatch):
    async def boom(self, content, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(ConsoleConsumer, "receive_json", boom)
    open_before = METRICS["connections_open"]

    async def scenario():
        ws = await _connect(dispatcher)
        await ws.send_json_to({"type": "ping"})
        closed = await ws.receive_output(timeout=2)
        await ws.wait()
        return closed

    assert run(scenario) == {"type": "websocket.close", "code": 1011}
    assert METRICS["connections_open"] == open_before


def test_heartbeat_repairs_a_lost_last_broadcast_without_any_later_event(dispatcher, center, settings):
    settings.CAD = {**settings.CAD, "HEARTBEAT_S": 0.2}

    async def scenario():
        await _flush_layer()
        ws = await _connect(dispatcher, subscribe={"console": None})
        await ws.receive_json_from()  # hello 0
        lost = await emit_lost(center.id)  # committed, never broadcast, and nothing follows it
        got = await _receive_for(ws, 1.5)
        await ws.disconnect()
        return lost, got

    lost, got = run(scenario)
    assert [m["seq"] for m in got if m.get("id")] == [lost["seq"]]
    assert {"type": "heartbeat", "stream": "console", "seq": lost["seq"]} in got


def test_heartbeat_tells_a_console_ahead_of_a_restored_database_to_resync(dispatcher, center, settings):
    settings.CAD = {**settings.CAD, "HEARTBEAT_S": 0.2}

    @database_sync_to_async
    def restore_backup():
        Event.objects.filter(center=center, seq__gt=1).delete()
        EventStream.objects.filter(center=center, name="console").update(last_seq=1)

    async def scenario():
        await _flush_layer()
        ws = await _connect(dispatcher, subscribe={"console": None})
        await ws.receive_json_from()
        await emit(center.id, 3)
        assert [m["seq"] for m in await _receive_for(ws, 0.5) if m.get("id")] == [1, 2, 3]
        await restore_backup()
        got = [m for m in await _receive_for(ws, 1.5) if m["type"] != "heartbeat"]
        await emit(center.id, 1)  # seq 2 again, after the restore
        after = await _receive_for(ws, 0.5)
        await ws.disconnect()
        return got, after

    got, after = run(scenario)
    assert got[0] == {"type": "resync", "stream": "console", "seq": 1}
    assert [m["seq"] for m in after if m.get("id")] == [2]


def _session_socket(user):
    """A websocket through the real ASGI stack with `user`'s session cookie, and the Django test client."""
    from cad.asgi import application

    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    headers = [(b"cookie", cookie), (b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    return client, WebsocketCommunicator(application, "/ws/console/", headers=headers)


@pytest.mark.parametrize("change", ["logout", "deactivate", "role"])
def test_logout_deactivation_and_role_change_close_the_socket(dispatcher, change):
    client, ws = _session_socket(dispatcher)

    @database_sync_to_async
    def end():
        if change == "logout":
            client.post("/logout/")
        elif change == "deactivate":
            dispatcher.is_active = False
            dispatcher.save()
        else:
            dispatcher.role = Role.SUPERVISOR
            dispatcher.save(update_fields=["role"])

    async def scenario():
        await _flush_layer()
        connected, _ = await ws.connect()
        assert connected
        await ws.send_json_to({"type": "subscribe", "streams": {"console": None}})
        await ws.receive_json_from()
        await end()
        return await ws.receive_output(timeout=3)

    assert run(scenario) == {"type": "websocket.close", "code": 4401}


def test_the_session_is_rechecked_periodically(dispatcher, settings):
    """A session that disappears without any signal (expired, flushed) closes the socket at the next check."""
    from django.contrib.sessions.models import Session

    settings.CAD = {**settings.CAD, "SESSION_CHECK_S": 0.2}
    client, ws = _session_socket(dispatcher)

    async def scenario():
        connected, _ = await ws.connect()
        assert connected
        await database_sync_to_async(Session.objects.all().delete)()
        return await ws.receive_output(timeout=3)

    assert run(scenario) == {"type": "websocket.close", "code": 4401}


@pytest.mark.parametrize(
    ("origin", "host", "accepted"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("http://127.0.0.1:9999", "127.0.0.1:8000", False),  # another service on the same host
        ("https://127.0.0.1:8000", "127.0.0.1:8000", False),  # another scheme
        ("http://evil.example", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),
    ],
)
def test_the_websocket_origin_must_match_scheme_host_and_port(dispatcher, origin, host, accepted):
    from cad.asgi import application

    client = Client()
    client.force_login(dispatcher)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()

    async def scenario():
        headers = [(b"cookie", cookie), (b"origin", origin.encode()), (b"host", host.encode())]
        communicator = WebsocketCommunicator(application, "/ws/console/", headers=headers)
        connected, _ = await communicator.connect()
        if connected:
            await communicator.disconnect()
        return connected

    assert run(scenario) is accepted

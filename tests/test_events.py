"""cad.events: events are written in the caller's transaction and broadcast only after it commits."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from cad.events import events_after, last_seq, record_event, stream_group
from cad.models import Event, EventStream
from tests.factories import CenterFactory


class Boom(Exception):
    pass


async def _listen(center_id: int, stream: str = "console"):
    layer = get_channel_layer()
    await layer.flush()
    channel = await layer.new_channel()
    await layer.group_add(stream_group(center_id=center_id, stream=stream), channel)
    return layer, channel


async def _drain(layer, channel, *, timeout: float = 0.5) -> list[dict]:
    received = []
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), timeout)
        except TimeoutError:
            return received
        received.append(message)


def _envelopes(messages: list[dict]) -> list[dict]:
    """The envelopes of `cad.event` messages and of `cad.events` (several coalesced by the broadcaster)."""
    envelopes = []
    for message in messages:
        assert message["type"] in ("cad.event", "cad.events")
        envelopes += message["envelopes"] if message["type"] == "cad.events" else [message["envelope"]]
    return envelopes


@pytest.mark.django_db(transaction=True)
def test_rolled_back_event_is_neither_stored_nor_published(layer_backend):
    center = CenterFactory()

    def write_then_fail():
        with transaction.atomic():
            record_event(type="incident.created", center_id=center.id, payload={"folio": "X"})
            raise Boom

    async def scenario():
        layer, channel = await _listen(center.id)
        with pytest.raises(Boom):
            await database_sync_to_async(write_then_fail)()
        return await _drain(layer, channel)

    assert async_to_sync(scenario)() == []
    assert Event.objects.count() == 0
    assert last_seq(center_id=center.id, stream="console") == 0


@pytest.mark.django_db(transaction=True)
def test_committed_event_is_published_once_with_its_seq(layer_backend):
    center = CenterFactory()

    def write():
        with transaction.atomic():
            first = record_event(type="incident.created", center_id=center.id, payload={"folio": "A"})
            second = record_event(type="incident.updated", center_id=center.id, payload={"folio": "A"})
        return first.seq, second.seq

    async def scenario():
        layer, channel = await _listen(center.id)
        seqs = await database_sync_to_async(write)()
        return seqs, await _drain(layer, channel)

    (first_seq, second_seq), received = async_to_sync(scenario)()
    assert (first_seq, second_seq) == (1, 2)
    envelopes = _envelopes(received)
    assert [(e["type"], e["seq"], e["stream"]) for e in envelopes] == [
        ("incident.created", 1, "console"),
        ("incident.updated", 2, "console"),
    ]
    assert envelopes[0]["payload"] == {"folio": "A"}
    assert envelopes[0]["id"] == str(Event.objects.get(seq=1).uid)


@pytest.mark.django_db(transaction=True)
def test_streams_are_published_to_their_own_groups(layer_backend):
    center = CenterFactory()

    def write():
        with transaction.atomic():
            record_event(type="incident.created", center_id=center.id, payload={})
            record_event(type="units.positions", center_id=center.id, stream="avl", payload={"positions": []})

    async def scenario():
        layer, console = await _listen(center.id, "console")
        avl = await layer.new_channel()
        await layer.group_add(stream_group(center_id=center.id, stream="avl"), avl)
        await database_sync_to_async(write)()
        return await _drain(layer, console), await _drain(layer, avl)

    console_messages, avl_messages = async_to_sync(scenario)()
    assert [e["type"] for e in _envelopes(console_messages)] == ["incident.created"]
    assert [(e["type"], e["seq"]) for e in _envelopes(avl_messages)] == [("units.positions", 1)]


def test_record_event_defers_the_broadcast_to_commit(db, django_capture_on_commit_callbacks):
    center = CenterFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        record_event(type="x", center_id=center.id, payload={})
    assert len(callbacks) == 1


@pytest.mark.django_db(transaction=True)
def test_record_event_requires_the_changes_transaction():
    center = CenterFactory()
    with pytest.raises(RuntimeError):
        record_event(type="x", center_id=center.id, payload={})
    assert Event.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_seq_is_contiguous_per_stream_under_many_events():
    center, other = CenterFactory(), CenterFactory(code="CMX", name="CDMX")
    for i in range(60):
        with transaction.atomic():
            record_event(type="n", center_id=center.id, payload={"i": i})
            if i % 3 == 0:
                record_event(type="p", center_id=center.id, stream="avl", payload={"i": i})
                record_event(type="o", center_id=other.id, payload={"i": i})
    console = list(
        Event.objects.filter(center=center, stream="console").order_by("seq").values_list("seq", flat=True)
    )
    avl = list(
        Event.objects.filter(center=center, stream="avl").order_by("seq").values_list("seq", flat=True)
    )
    assert console == list(range(1, 61))
    assert avl == list(range(1, 21))
    assert last_seq(center_id=other.id, stream="console") == 20
    assert EventStream.objects.get(center=center, name="console").last_seq == 60
    replay = events_after(center_id=center.id, stream="console", after_seq=55, limit=100)
    assert [e["seq"] for e in replay] == [56, 57, 58, 59, 60]
    assert [e["payload"]["i"] for e in replay] == [55, 56, 57, 58, 59]


@pytest.mark.django_db(transaction=True)
def test_seq_is_contiguous_under_concurrent_writers():
    """Threads racing on the same stream still get a gap-free, duplicate-free sequence."""
    from concurrent.futures import ThreadPoolExecutor

    from django.conf import settings
    from django.db import connection

    if not settings.IS_POSTGRES:
        pytest.skip("SQLite serialises writers; the race is meaningful on PostgreSQL")
    center = CenterFactory()

    def writer(n: int) -> None:
        try:
            for i in range(10):
                with transaction.atomic():
                    record_event(type="n", center_id=center.id, payload={"w": n, "i": i})
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(writer, range(6)))
    seqs = sorted(Event.objects.filter(center=center, stream="console").values_list("seq", flat=True))
    assert seqs == list(range(1, 61))


@pytest.mark.django_db
def test_listeners_run_inside_the_transaction_and_can_veto_it(center):
    from cad import events

    seen = []

    def listener(event):
        seen.append((event.type, transaction.get_connection().in_atomic_block))
        if event.type == "test.vetoed":
            raise RuntimeError("listener refused")

    events.add_listener(listener)
    try:
        with transaction.atomic():
            events.record_event(type="test.ok", center_id=center.id, payload={})
        with pytest.raises(RuntimeError), transaction.atomic():
            events.record_event(type="test.vetoed", center_id=center.id, payload={})
    finally:
        events._listeners.remove(listener)
    assert seen == [("test.ok", True), ("test.vetoed", True)]
    assert list(Event.objects.values_list("type", flat=True)) == ["test.ok"]


def test_events_past_retention_are_pruned_avl_sooner(db, settings):
    """The console stream keeps CAD_EVENT_RETENTION_DAYS; the AVL stream only an hour (the AVL track is the
    record of positions, the stream rows are not a second copy)."""
    from datetime import timedelta

    from django.utils import timezone

    from cad.events import prune_events
    from cad.models import Event
    from tests.factories import CenterFactory

    center = CenterFactory()
    now = timezone.now()
    for seq, (stream, age) in enumerate(
        [
            ("console", timedelta(days=40)),
            ("console", timedelta(days=1)),
            ("avl", timedelta(hours=2)),
            ("avl", timedelta(minutes=5)),
        ],
        start=1,
    ):
        Event.objects.create(
            center=center, stream=stream, seq=seq, type="t", payload={}, created_at=now - age
        )
    assert prune_events(now=now) == {"console": 1, "avl": 1}
    assert sorted(Event.objects.values_list("seq", flat=True)) == [2, 4]


@pytest.mark.django_db
def test_deferred_events_are_written_together_at_the_end_in_order(center, django_capture_on_commit_callbacks):
    """Inside deferred_events() nothing is written (the counter row is not locked) until the block ends;
    then the listeners see each event, before any seq is claimed (the counter row is not locked while they
    run), and one counter bump gives the queued events contiguous seqs in recording order."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from cad import events

    seen = []
    events.add_listener(lambda event: seen.append((event.type, event.seq, event.pk is not None)))
    try:
        with django_capture_on_commit_callbacks() as callbacks, transaction.atomic():
            record_event(type="before", center_id=center.id, payload={})
            with CaptureQueriesContext(connection) as during, events.deferred_events():
                for name in ("a", "b", "c"):
                    record_event(type=name, center_id=center.id, payload={})
                record_event(type="p", center_id=center.id, stream="avl", payload={})
                assert Event.objects.filter(type__in=["a", "b", "c", "p"]).count() == 0
                queries_inside = len(during.captured_queries)
            queries_total = len(during.captured_queries)
    finally:
        events._listeners.pop()
    assert queries_inside == 1  # the count() above; record_event itself wrote nothing
    # Per stream (console, avl): PostgreSQL claims the seqs and inserts in one statement; SQLite bumps, inserts.
    assert queries_total - queries_inside == (2 if connection.vendor == "postgresql" else 4)
    console = list(Event.objects.filter(stream="console").order_by("seq").values_list("type", "seq"))
    assert console == [("before", 1), ("a", 2), ("b", 3), ("c", 4)]
    assert Event.objects.get(stream="avl").seq == 1
    assert seen == [(name, None, False) for name in ("before", "a", "b", "c", "p")]
    assert len(callbacks) == 5  # each event broadcast after commit
    assert last_seq(center_id=center.id, stream="console") == 4


@pytest.mark.django_db
def test_a_failed_inner_deferred_block_drops_its_events_and_keeps_the_others(center):
    from cad import events

    with transaction.atomic(), events.deferred_events():
        with transaction.atomic(), events.deferred_events():
            record_event(type="kept", center_id=center.id, payload={})
        with pytest.raises(Boom), transaction.atomic(), events.deferred_events():
            record_event(type="dropped", center_id=center.id, payload={})
            raise Boom
        record_event(type="last", center_id=center.id, payload={})
    assert list(Event.objects.order_by("seq").values_list("type", "seq")) == [("kept", 1), ("last", 2)]


def test_deferred_events_outside_a_transaction_is_refused():
    from cad import events

    with pytest.raises(RuntimeError), events.deferred_events():
        pass


@pytest.mark.django_db
def test_counter_row_is_created_on_first_event(center):
    EventStream.objects.filter(center=center).delete()
    with transaction.atomic():
        first = record_event(type="x", center_id=center.id, payload={})
    assert first.seq == 1 and EventStream.objects.get(center=center, name="console").last_seq == 1


def test_broadcaster_coalesces_a_groups_queued_events_in_order():
    """A burst of events of one group leaves as one `cad.events` message, in queue order; other groups and
    other message types are untouched, and a group's events never jump over its other messages."""
    from cad.events import coalesce

    def ev(seq):
        return {"type": "cad.event", "envelope": {"seq": seq}}

    end = {"type": "session.end", "user_id": 1}
    out = coalesce([("g1", ev(1)), ("g2", ev(1)), ("g1", ev(2)), ("s", end), ("g1", ev(3)), ("g2", ev(2))])
    assert out == [
        ("g1", {"type": "cad.events", "envelopes": [{"seq": 1}, {"seq": 2}, {"seq": 3}]}, 3),
        ("g2", {"type": "cad.events", "envelopes": [{"seq": 1}, {"seq": 2}]}, 2),
        ("s", end, 1),
    ]
    assert coalesce([("g1", ev(7))]) == [("g1", ev(7), 1)]  # a lone event is sent as before
    mixed = coalesce([("g", ev(1)), ("g", end), ("g", ev(2))])
    assert [m["type"] for _, m, _ in mixed] == ["cad.event", "session.end", "cad.event"]


def _in_own_loop(coroutine):
    """Run `coroutine` on a loop of its own in a fresh thread: in the full suite the browser tests'
    Playwright loop is still running in the test thread (asyncio.run and async_to_sync refuse there)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_hub_delivers_coalesced_events_one_by_one_in_order():
    from console.hub import GroupHub

    class Console:
        def __init__(self):
            self.got = []

        async def deliver(self, envelope, text):
            self.got.append((envelope["seq"], text))

    hub = GroupHub(layer=None)
    console = Console()
    hub.members["g"] = {console}
    message = {"type": "cad.events", "envelopes": [{"seq": 4}, {"seq": 5}]}
    _in_own_loop(hub._deliver("g", message))
    _in_own_loop(hub._deliver("g", {"type": "cad.event", "envelope": {"seq": 6}}))
    assert console.got == [(4, '{"seq": 4}'), (5, '{"seq": 5}'), (6, '{"seq": 6}')]


@pytest.mark.django_db
def test_listeners_run_before_the_counter_is_locked_and_their_events_follow(center):
    """A listener runs before its event claims a seq: the centre's stream counter is not yet bumped (so not
    locked) while it works, and what it records is written after the events of the batch that triggered
    it, then gets its own listeners' turn."""
    from cad import events

    seen = []

    def listener(event):
        seen.append((event.type, last_seq(center_id=center.id, stream="console")))
        if event.type in ("a", "b"):
            record_event(type=f"{event.type}-reaction", center_id=center.id, payload={})

    events.add_listener(listener)
    try:
        with transaction.atomic(), events.deferred_events():
            record_event(type="a", center_id=center.id, payload={})
            record_event(type="b", center_id=center.id, payload={})
    finally:
        events._listeners.remove(listener)
    assert seen == [("a", 0), ("b", 0), ("a-reaction", 0), ("b-reaction", 0)]
    assert list(Event.objects.order_by("seq").values_list("type", "seq")) == [
        ("a", 1),
        ("b", 2),
        ("a-reaction", 3),
        ("b-reaction", 4),
    ]

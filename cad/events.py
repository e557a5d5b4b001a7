"""The one publisher of domain events.

Feature apps react to domain events without the domain apps importing them: `add_listener` registers a
function that `record_event` calls in the same transaction (e.g. interstate's transactional outbox).

`record_event` writes the event row in the caller's transaction (seq from a per-centre, per-stream
counter row, locked by its UPDATE until commit) and broadcasts it to websocket groups only after that
transaction commits: rolled-back work is never seen. The broadcast is handed to a bounded background sender
(`Broadcaster`), so a slow or frozen Redis never holds a request. Consoles detect gaps by `seq` (and by the
heartbeat) and replay from the table.
"""

import asyncio
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from cad.models import Event, EventStream

logger = logging.getLogger(__name__)

EventListener = Callable[[Event], None]
_listeners: list[EventListener] = []


def add_listener(listener: EventListener) -> None:
    """Call `listener(event)` inside `record_event`, in the transaction of the change, before the event
    is given its seq and written (apps register from AppConfig.ready): the centre's stream counter row is
    locked only after every listener has run, so what they do never holds every other writer of the centre.
    Events a listener records are written after the events of the batch that triggered them. An exception
    in a listener rolls the whole change back: what a listener writes (e.g. an outbox row) commits with the
    change or not at all. Listeners run for every event, so they must return fast when the event does not
    concern them."""
    if listener not in _listeners:
        _listeners.append(listener)


# Logout, deactivation and role changes reach every process's consoles through this group.
SESSIONS_GROUP = "cad.sessions"


def stream_group(*, center_id: int, stream: str) -> str:
    return f"cad.{center_id}.{stream}"


def end_sessions(*, user_id: int, session_key: str | None = None) -> None:
    """After commit, close the user's console sockets (only those of `session_key` when given)."""
    message = {"type": "session.end", "user_id": user_id, "session_key": session_key}
    transaction.on_commit(lambda: send_to_group(SESSIONS_GROUP, message), robust=True)


def _bump(*, center_id: int, stream: str, count: int) -> int:
    """Add `count` to the stream's counter in ONE statement and return its new last seq. The UPDATE takes
    the row lock until commit (on SQLite: the write lock), so seq order is commit order."""
    table = EventStream._meta.db_table
    sql = f"UPDATE {table} SET last_seq = last_seq + %s WHERE center_id = %s AND name = %s RETURNING last_seq"  # noqa: S608 - table name from the model
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(sql, [count, center_id, stream])
        row = cursor.fetchone()
        if row is None:  # first event of this centre's stream: create the counter, then bump it
            EventStream.objects.get_or_create(center_id=center_id, name=stream)
            cursor.execute(sql, [count, center_id, stream])
            row = cursor.fetchone()
    return row[0]


_deferred = threading.local()  # per thread: a stack of the events queued by open deferred_events() blocks


def _batches() -> list[list[Event]]:
    stack = getattr(_deferred, "stack", None)
    if stack is None:
        stack = _deferred.stack = []
    return stack


@contextmanager
def deferred_events():
    """Within the block, `record_event` only queues its events; they are written when the block ends: one
    counter UPDATE per stream for all of them and one INSERT, then their listeners run in order. Use it
    around a change that records several events (or a batch of changes in one transaction): the hot
    per-centre counter row is then locked only from the end of the block to the commit instead of from the
    first event on, and the round trips made while holding it drop from ~4 per event to ~2 in all.

    Must run inside the transaction of the change. Nested blocks hand their events to the enclosing one
    when they end normally; a block left by an exception drops its events (wrap each unit of work that may
    fail in `transaction.atomic()` + `deferred_events()`, so its rows and its events go together). Seq order
    is still commit order, and events keep the order in which they were recorded."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("deferred_events must run inside the transaction of the change it records")
    stack = _batches()
    batch: list[Event] = []
    stack.append(batch)
    try:
        yield
    except BaseException:
        stack.pop()
        raise
    stack.pop()
    if stack:
        stack[-1].extend(batch)
    else:
        _write(batch)


def _write(events: list[Event]) -> None:
    """Run the listeners (on these events and on those they record, in turn), then give every event its seq
    (one counter bump per stream), insert them at once and queue their broadcasts for after commit, in
    recording order. The counter row stays locked from its bump to the commit, so nothing but the bump, the
    INSERT and the commit happens while this centre's other writers wait for it."""
    if not events:
        return
    events = _with_listener_events(events)
    per_stream: dict[tuple[int, str], list[Event]] = {}
    for event in events:
        per_stream.setdefault((event.center_id, event.stream), []).append(event)
    for (center_id, stream), group in sorted(
        per_stream.items()
    ):  # a fixed order: no deadlock between batches
        if transaction.get_connection().vendor == "postgresql":
            _claim_and_insert(center_id=center_id, stream=stream, events=group)
            continue
        last = _bump(center_id=center_id, stream=stream, count=len(group))
        for offset, event in enumerate(group):
            event.seq = last - len(group) + 1 + offset
        Event.objects.bulk_create(group)
    for event in events:
        _broadcast_after_commit(event)


_CLAIM_AND_INSERT = f"""
WITH counter AS (
    UPDATE {EventStream._meta.db_table} SET last_seq = last_seq + %(count)s
    WHERE center_id = %(center_id)s AND name = %(stream)s RETURNING last_seq
)
INSERT INTO {Event._meta.db_table} (uid, center_id, stream, seq, type, payload, created_at)
SELECT e.uid, %(center_id)s, %(stream)s, counter.last_seq - %(count)s + e.n, e.type, e.payload::jsonb, e.at
FROM counter, unnest(%(uids)s::uuid[], %(types)s::text[], %(payloads)s::text[], %(times)s::timestamptz[])
    WITH ORDINALITY AS e(uid, type, payload, at, n)
RETURNING uid, id, seq
"""  # noqa: S608 - table names from the models


def _claim_and_insert(*, center_id: int, stream: str, events: list[Event]) -> None:
    """PostgreSQL: bump the stream's counter and insert its events in ONE statement (seqs in recording
    order), so the counter row is locked for one round trip and the commit, not two. As _bump: the UPDATE
    holds the row lock until commit, so seq order is commit order."""
    params = {
        "count": len(events),
        "center_id": center_id,
        "stream": stream,
        "uids": [event.uid for event in events],
        "types": [event.type for event in events],
        "payloads": [json.dumps(event.payload) for event in events],
        "times": [event.created_at for event in events],
    }
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(_CLAIM_AND_INSERT, params)
        rows = cursor.fetchall()
        if not rows:  # first event of this centre's stream: create the counter, then claim again
            EventStream.objects.get_or_create(center_id=center_id, name=stream)
            cursor.execute(_CLAIM_AND_INSERT, params)
            rows = cursor.fetchall()
    written = {uid: (pk, seq) for uid, pk, seq in rows}
    for event in events:
        event.pk, event.seq = written[event.uid]
        event._state.adding, event._state.db = False, cursor.db.alias


def _with_listener_events(events: list[Event]) -> list[Event]:
    """`events` followed by every event the listeners record on them (and on those, in turn), in order."""
    stack = _batches()
    written = list(events)
    for event in written:  # grows while it is walked: a listener's events get their own listeners' turn
        recorded: list[Event] = []
        stack.append(recorded)
        try:
            for listener in _listeners:
                listener(event)
        finally:
            stack.pop()
        written.extend(recorded)
    return written


def _broadcast_after_commit(event: Event) -> None:
    envelope = event.envelope()
    center_id, stream = event.center_id, event.stream
    # robust: one failed broadcast must neither fail the committed request nor skip the other events'.
    transaction.on_commit(
        lambda: broadcast(center_id=center_id, stream=stream, envelope=envelope), robust=True
    )


def record_event(
    *, type: str, center_id: int, payload: dict, stream: str = EventStream.Name.CONSOLE
) -> Event:
    """Append an event to the centre's stream. Must run inside the transaction of the change. Inside
    `deferred_events()` the event is only queued (no seq yet) and written when that block ends."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record_event must run inside the transaction of the change it records")
    event = Event(center_id=center_id, stream=stream, type=type, payload=payload, created_at=timezone.now())
    stack = _batches()
    if stack:
        stack[-1].append(event)
    else:
        _write([event])
    return event


def record_events(
    *, type: str, center_id: int, payloads: list[dict], stream: str = EventStream.Name.CONSOLE
) -> list[Event]:
    """`record_event` for many events of one type at once (e.g. the hits of an LPR batch), written together
    through `deferred_events()`: one counter UPDATE claims the seq range and one INSERT writes the rows;
    the broadcaster coalesces their group messages. Returns the events with their seqs."""
    with deferred_events():
        events = [
            record_event(type=type, center_id=center_id, payload=payload, stream=stream)
            for payload in payloads
        ]
    return events


def broadcast(*, center_id: int, stream: str, envelope: dict) -> None:
    """Send a committed event to its stream's websocket group, off the caller's thread (see Broadcaster).
    Loss here is repaired by replay: consoles see the gap by seq or in the next heartbeat."""
    send_to_group(
        stream_group(center_id=center_id, stream=stream), {"type": "cad.event", "envelope": envelope}
    )


def send_to_group(group: str, message: dict) -> None:
    """Hand a message for a channel-layer group to the process broadcaster; never blocks."""
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        # In-process queues (embedded default, tests): nothing can stall, and the layer is not thread-safe,
        # so send on the caller's path (async_to_sync runs it on the server's loop when there is one).
        async_to_sync(layer.group_send)(group, message)
        return
    broadcaster.submit(group, message)


class Broadcaster:
    """Sends channel-layer group messages from ONE background thread with its own event loop, so a write
    never waits for Redis. Bounded: at most `CAD["BROADCAST_QUEUE"]` messages wait (more are dropped) and
    each send waits at most `CAD["BROADCAST_TIMEOUT_S"]`. A stalled Redis therefore costs dropped broadcasts,
    never a slow request; consoles repair drops from the event table. Counters are in `metrics`."""

    def __init__(self):
        self.metrics = {
            "broadcast_queued": 0,
            "broadcast_sent": 0,
            "broadcast_dropped": 0,
            "broadcast_failed": 0,
            "broadcast_queue_depth": 0,
        }
        self._lock = threading.Lock()
        self._queue: queue.Queue | None = None
        self._pid = None

    def submit(self, group: str, message: dict) -> None:
        work = self._ensure_thread()
        try:
            work.put_nowait((group, message))
        except queue.Full:
            self.metrics["broadcast_dropped"] += 1
            logger.warning("broadcast dropped: queue full", extra={"group": group})
            return
        self.metrics["broadcast_queued"] += 1
        self.metrics["broadcast_queue_depth"] = work.qsize()

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far has been sent or given up (tests, shutdown)."""
        work = self._queue
        if work is None or self._pid != os.getpid():
            return True
        deadline = time.monotonic() + timeout
        while work.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _ensure_thread(self) -> queue.Queue:
        with self._lock:
            if self._queue is None or self._pid != os.getpid():  # first use, or a forked child (Celery)
                self._queue = queue.Queue(maxsize=settings.CAD["BROADCAST_QUEUE"])
                self._pid = os.getpid()
                threading.Thread(
                    target=self._run, args=(self._queue,), name="cad-broadcast", daemon=True
                ).start()
            return self._queue

    def _run(self, work: queue.Queue) -> None:
        loop = asyncio.new_event_loop()
        while True:
            batch = [work.get()]
            while len(batch) < COALESCE_MAX:  # whatever else is already waiting goes out with it
                try:
                    batch.append(work.get_nowait())
                except queue.Empty:
                    break
            try:
                for group, message, count in coalesce(batch):
                    self._send(loop, group, message, count)
            finally:
                self.metrics["broadcast_queue_depth"] = work.qsize()
                for _ in batch:
                    work.task_done()

    def _send(self, loop, group: str, message: dict, count: int) -> None:
        try:
            layer = get_channel_layer()
            loop.run_until_complete(
                asyncio.wait_for(layer.group_send(group, message), settings.CAD["BROADCAST_TIMEOUT_S"])
            )
            self.metrics["broadcast_sent"] += count
        except (OSError, RedisError, ChannelFull, TimeoutError) as exc:
            self.metrics["broadcast_failed"] += count
            logger.warning("broadcast failed", extra={"group": group, "error": repr(exc)})


COALESCE_MAX = 200  # messages taken from the queue per round


def coalesce(items: list[tuple[str, dict]]) -> list[tuple[str, dict, int]]:
    """Merge queued `cad.event` messages of one group into ONE `cad.events` message (envelopes in queue
    order), so a burst (e.g. the three events of each panic press) costs one channel-layer send per group
    instead of one per event: the sender's CPU and Redis round trips, and each receiving process's. Other
    messages are kept as they are, in order; a group's events never jump over another message of that group.
    Returns (group, message, number of events it carries)."""
    out: list[list] = []
    open_batches: dict[str, list] = {}
    for group, message in items:
        entry = open_batches.get(group)
        if message.get("type") != "cad.event":
            out.append([group, message, 1])
            open_batches.pop(group, None)
        elif entry is None:
            entry = open_batches[group] = [group, message, 1]
            out.append(entry)
        else:
            if entry[1]["type"] == "cad.event":
                entry[1] = {"type": "cad.events", "envelopes": [entry[1]["envelope"]]}
            entry[1]["envelopes"].append(message["envelope"])
            entry[2] += 1
    return [(group, message, count) for group, message, count in out]


broadcaster = Broadcaster()


def events_after(*, center_id: int, stream: str, after_seq: int, limit: int) -> list[dict]:
    """Envelopes with seq > after_seq, in order; at most `limit` (the caller resyncs beyond that)."""
    rows = Event.objects.filter(center_id=center_id, stream=stream, seq__gt=after_seq).order_by("seq")[:limit]
    return [event.envelope() for event in rows]


def last_seq(*, center_id: int, stream: str) -> int:
    return (
        EventStream.objects.filter(center_id=center_id, name=stream)
        .values_list("last_seq", flat=True)
        .first()
        or 0
    )


def prune_events(*, now=None) -> dict[str, int]:
    """Delete events past retention: console-stream events after CAD["EVENT_RETENTION_DAYS"], AVL-stream
    events after CAD["AVL_EVENT_RETENTION_H"] (the AVL track is the record of positions; its stream rows
    only serve reconnecting consoles, so they are not kept as a second copy). A console older than what is
    left is told to resync (console.protocol). The stream counters are kept: seq never restarts."""
    now = now or timezone.now()
    cutoffs = {
        EventStream.Name.CONSOLE: now - timedelta(days=settings.CAD["EVENT_RETENTION_DAYS"]),
        EventStream.Name.AVL: now - timedelta(hours=settings.CAD["AVL_EVENT_RETENTION_H"]),
    }
    deleted = {}
    for stream, cutoff in cutoffs.items():
        deleted[stream] = Event.objects.filter(stream=stream, created_at__lt=cutoff).delete()[0]
    if any(deleted.values()):
        logger.info("events pruned", extra={"deleted": deleted})
    return deleted

"""The one publisher of domain events.

Feature apps react to domain events without the domain apps importing them: `add_listener` registers a
function that `record_event` calls in the same transaction (e.g. interstate's transactional outbox).

`record_event` writes the event row in the caller's transaction (seq from a per-centre, per-stream
counter row, locked by its UPDATE until commit) and broadcasts it to websocket groups only after that transaction commits:
rolled-back work is never seen. Consoles detect gaps by `seq` and replay from the table.
"""

import logging
from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from redis.exceptions import RedisError

from cad.models import Event, EventStream

logger = logging.getLogger(__name__)

EventListener = Callable[[Event], None]
_listeners: list[EventListener] = []


def add_listener(listener: EventListener) -> None:
    """Call `listener(event)` inside `record_event`, in the transaction of the change, right after the
    event row is written (apps register from AppConfig.ready). An exception in a listener rolls the whole
    change back: what a listener writes (e.g. an outbox row) commits with the change or not at all.
    Listeners run for every event, so they must return fast when the event does not concern them."""
    if listener not in _listeners:
        _listeners.append(listener)


def stream_group(*, center_id: int, stream: str) -> str:
    return f"cad.{center_id}.{stream}"


def record_event(
    *, type: str, center_id: int, payload: dict, stream: str = EventStream.Name.CONSOLE
) -> Event:
    """Append an event to the centre's stream. Must run inside the transaction of the change."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("record_event must run inside the transaction of the change it records")
    counter, _ = EventStream.objects.get_or_create(center_id=center_id, name=stream)
    # The UPDATE takes the row lock until commit (on SQLite: the write lock), so seq order is commit order.
    EventStream.objects.filter(pk=counter.pk).update(last_seq=F("last_seq") + 1)
    seq = EventStream.objects.values_list("last_seq", flat=True).get(pk=counter.pk)
    event = Event.objects.create(
        center_id=center_id, stream=stream, seq=seq, type=type, payload=payload, created_at=timezone.now()
    )
    envelope = event.envelope()
    # robust: one failed broadcast must neither fail the committed request nor skip the other events'.
    transaction.on_commit(
        lambda: broadcast(center_id=center_id, stream=stream, envelope=envelope), robust=True
    )
    # After this event's broadcast is queued, so events a listener records are broadcast after it (seq order).
    for listener in _listeners:
        listener(event)
    return event


def broadcast(*, center_id: int, stream: str, envelope: dict) -> None:
    """Send a committed event to its stream's websocket group. Loss here is repaired by replay."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            stream_group(center_id=center_id, stream=stream), {"type": "cad.event", "envelope": envelope}
        )
    except (OSError, RedisError, ChannelFull) as exc:  # consoles fill the gap by seq when it returns
        logger.warning("broadcast failed", extra={"event_type": envelope["type"], "error": str(exc)})


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

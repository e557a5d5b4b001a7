"""The transactional outbox: ordered streams of messages to one peer each — an escalation's messages, and the
peer's vehicle alerts and sightings — written in the caller's transaction and delivered after it commits
(interstate.delivery drains one stream at a time, in id order, under the stream's lease).

Nothing here talks to the network; callers hold whatever locks their change needs.
"""

import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from interstate.models import OutboxMessage, OutboxStream, Peer


def stream_for(peer: Peer, key: str) -> OutboxStream:
    """The peer's stream `key`, created the first time it is needed."""
    stream, _created = OutboxStream.objects.get_or_create(peer=peer, key=key)
    return stream


def next_sequence(stream: OutboxStream) -> int:
    """The stream's next message sequence (1, 2, …), in the caller's transaction: the row stays locked until it
    commits, so sequences follow commit order."""
    OutboxStream.objects.filter(pk=stream.pk).update(out_seq=F("out_seq") + 1)
    return OutboxStream.objects.values_list("out_seq", flat=True).get(pk=stream.pk)


def append(
    stream: OutboxStream,
    kind: str,
    body: Callable[[uuid.UUID], dict],
    *,
    escalation=None,
    seq: int | None = None,
) -> OutboxMessage:
    """Write one message in the current transaction (`body` is built from the message's idempotency key);
    its delivery is enqueued for after the commit, and the sweeper covers a lost enqueue."""
    message = OutboxMessage(
        stream=stream,
        peer_id=stream.peer_id,
        escalation=escalation,
        kind=kind,
        seq=seq,
        next_attempt_at=timezone.now() + timedelta(seconds=settings.CAD_INTERSTATE_SWEEP_AFTER_S),
    )
    message.body = body(message.idempotency_key)
    message.save()
    enqueue_delivery(stream.id)
    return message


def enqueue_delivery(stream_id: int) -> None:
    from cad.tasks import enqueue
    from interstate.tasks import deliver_stream

    enqueue(deliver_stream, stream_id=stream_id)


def enqueue_waiting(peer_id: int) -> int:
    """Enqueue a drain of every stream of the peer with a pending message (the peer came back or was
    enabled): everything waiting goes at once, each stream in its own order."""
    waiting = list(
        OutboxMessage.objects.filter(peer_id=peer_id, state=OutboxMessage.State.PENDING)
        .values_list("stream_id", flat=True)
        .distinct()
    )
    for stream_id in waiting:
        enqueue_delivery(stream_id)
    return len(waiting)

"""Celery wrappers over interstate delivery and retention (tasks take ids and are idempotent: acks_late is safe).

Production path: `deliver_stream` runs on a worker with acks_late + reject_on_worker_lost (a killed worker's
task is redelivered, not lost) and retries while the peer is unavailable — exponential backoff with jitter,
capped at CAD_INTERSTATE_RETRY_BACKOFF_MAX_S (well below the broker visibility timeout), never giving up; while
the peer's circuit is open a retry ends quietly and the sweeper's probe takes over (interstate.delivery).
Embedded default: the same body on cad.tasks' local thread runner; there the sweeper does the retrying.
"""

from celery import shared_task
from django.conf import settings

from interstate.delivery import PeerUnavailable


@shared_task(
    bind=True,
    name="interstate.tasks.deliver_stream",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(PeerUnavailable,),
    retry_backoff=1,
    retry_backoff_max=settings.CAD_INTERSTATE_RETRY_BACKOFF_MAX_S,
    retry_jitter=True,
    max_retries=None,
)
def deliver_stream(self, stream_id: int) -> int:
    """Drain one outbox stream in order (the lease's owner is the task id: a stuck stream names its task)."""
    from interstate.delivery import drain_stream

    in_worker = not self.request.called_directly
    try:
        return drain_stream(
            stream_id=stream_id,
            owner=self.request.id if in_worker else None,
        )
    except PeerUnavailable:
        if in_worker:
            raise  # autoretry
        return 0  # embedded: the outbox sweeper tries again when the message is due


@shared_task(acks_late=True, name="interstate.tasks.sweep_outbox")
def sweep_outbox() -> int:
    """Re-enqueue streams whose pending messages are due and unleased (a crash between commit and enqueue, a
    lost retry, the embedded retry, a down peer's probe); end vehicle alerts whose validity passed. Every
    CAD_INTERSTATE_SWEEP_EVERY_S: beat, or cad.periodic embedded."""
    from interstate.delivery import due_streams
    from interstate.outbox import enqueue_delivery
    from interstate.vehicles import expire_vehicle_alerts

    expire_vehicle_alerts()
    due = due_streams()
    for stream_id in due:
        enqueue_delivery(stream_id)
    return len(due)


@shared_task(acks_late=True, name="interstate.tasks.share_vehicle_alerts")
def share_vehicle_alerts(peer_id: int) -> int:
    """A peer registered or enabled: send it the active vehicle alerts it has not had (idempotent)."""
    from interstate.vehicles import share_active_alerts

    return share_active_alerts(peer_id=peer_id)


@shared_task(acks_late=True, name="interstate.tasks.prune")
def prune() -> dict:
    """Retention: peer audit entries older than CAD_INTERSTATE_AUDIT_RETENTION_DAYS, and nonces past the
    replay window. Hourly: beat, or cad.periodic embedded."""
    from interstate.services import prune_audit_and_nonces

    return prune_audit_and_nonces()

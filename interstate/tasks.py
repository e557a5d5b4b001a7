"""Celery wrappers over interstate delivery (tasks take ids and are idempotent: acks_late is safe).

Production path: `deliver_escalation` runs on a worker with acks_late + reject_on_worker_lost (a killed worker's
task is redelivered, not lost) and retries while the peer is unavailable — exponential backoff with jitter,
capped at CAD_INTERSTATE_RETRY_BACKOFF_MAX_S (well below the broker visibility timeout), never giving up.
Embedded default: the same body on cad.tasks' local thread runner; there the sweeper does the retrying.
"""

from celery import shared_task
from django.conf import settings

from interstate.delivery import PeerUnavailable


@shared_task(
    bind=True,
    name="interstate.tasks.deliver_escalation",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(PeerUnavailable,),
    retry_backoff=1,
    retry_backoff_max=settings.CAD_INTERSTATE_RETRY_BACKOFF_MAX_S,
    retry_jitter=True,
    max_retries=None,
)
def deliver_escalation(self, escalation_id: int) -> int:
    """Drain one escalation's outbox in order. Retries keep the task id, so a retry chain keeps its lease."""
    from interstate.delivery import drain_escalation

    in_worker = not self.request.called_directly
    try:
        return drain_escalation(
            escalation_id=escalation_id,
            owner=self.request.id if in_worker else None,
            hold_lease_on_failure=in_worker,
        )
    except PeerUnavailable:
        if in_worker:
            raise  # autoretry
        return 0  # embedded: the outbox sweeper tries again when the message is due


@shared_task(acks_late=True, name="interstate.tasks.sweep_outbox")
def sweep_outbox() -> int:
    """Re-enqueue escalations whose pending messages are due and unleased (a crash between commit and enqueue,
    a lost retry, the embedded retry). Every CAD_INTERSTATE_SWEEP_EVERY_S: beat, or cad.periodic embedded."""
    from cad.tasks import enqueue
    from interstate.delivery import due_escalations

    due = due_escalations()
    for escalation_id in due:
        enqueue(deliver_escalation, escalation_id=escalation_id)
    return len(due)

"""Periodic sensor jobs (Celery beat on the production path, cad.periodic embedded). Idempotent."""

from celery import shared_task


@shared_task(acks_late=True)
def check_heartbeats() -> int:
    from sensors.supervision import declare_silent_offline

    return declare_silent_offline()


@shared_task(acks_late=True)
def purge_lpr_reads() -> int:
    from sensors.lpr import purge_reads

    return purge_reads()
